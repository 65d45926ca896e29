"""iot-data GetRetainedMessage, ListRetainedMessages and DeleteConnection, through boto3."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from iotnotify_emulator.mqtt import Will
from iotnotify_emulator.mqtt5 import Properties
from iotnotify_emulator.testing import ALLOW_ALL, Harness


def _code(call: Any, **kwargs: Any) -> str:
    try:
        call(**kwargs)
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "OK"


async def test_get_and_list_retained_messages(world: Harness) -> None:
    admin = world.iot_data(world.store.issue([ALLOW_ALL]))
    # Given three retained messages, one of them later cleared
    for topic, payload in (("cfg/b", b"bee"), ("cfg/a", b"ay"), ("cfg/c", b"sea")):
        await asyncio.to_thread(admin.publish, topic=topic, payload=payload, retain=True, qos=1)
    await asyncio.to_thread(admin.publish, topic="cfg/c", payload=b"", retain=True)
    # When one is read back
    got = await asyncio.to_thread(admin.get_retained_message, topic="cfg/a")
    # Then it has its payload, QoS and a modification time
    assert (got["topic"], got["payload"], got["qos"]) == ("cfg/a", b"ay", 1)
    assert got["lastModifiedTime"] > 1_700_000_000_000
    # And the listing pages through the two that remain, in order
    first = await asyncio.to_thread(admin.list_retained_messages, maxResults=1)
    assert [t["topic"] for t in first["retainedTopics"]] == ["cfg/a"]
    assert first["retainedTopics"][0]["payloadSize"] == 2
    second = await asyncio.to_thread(
        admin.list_retained_messages, maxResults=1, nextToken=first["nextToken"]
    )
    assert [t["topic"] for t in second["retainedTopics"]] == ["cfg/b"]
    assert "nextToken" not in second
    # And a topic with nothing retained is a 404
    assert await asyncio.to_thread(_code, admin.get_retained_message, topic="cfg/c") == (
        "ResourceNotFoundException"
    )


async def test_retained_message_apis_need_their_iot_actions(world: Harness) -> None:
    subscriber = world.iot_data(world.subscriber("alice"))
    topic = world.topic_of("alice")
    assert await asyncio.to_thread(_code, subscriber.get_retained_message, topic=topic) == (
        "ForbiddenException"
    )
    assert await asyncio.to_thread(_code, subscriber.list_retained_messages) == (
        "ForbiddenException"
    )
    assert await asyncio.to_thread(_code, subscriber.delete_connection, clientId="alice.1") == (
        "ForbiddenException"
    )


@pytest.mark.parametrize("prevent_will", [False, True])
async def test_delete_connection_disconnects_the_client(world: Harness, prevent_will: bool) -> None:
    credential = world.store.issue([ALLOW_ALL])
    watcher = await world.connect(credential, "watcher")
    await watcher.subscribe("$aws/events/presence/disconnected/+", "wills/device")
    device = await world.connect(credential, "device", will=Will("wills/device", b"gone"))
    admin = world.iot_data(credential)
    # When an admin disconnects the device through iot-data
    await asyncio.to_thread(
        admin.delete_connection, clientId="device", preventWillMessage=prevent_will
    )
    # Then the device's connection is closed and announced as API-initiated
    await device.wait_closed()
    seen = {}
    for _ in range(1 if prevent_will else 2):
        message = await watcher.next_publish()
        seen[message.topic] = message.payload
    event = json.loads(seen["$aws/events/presence/disconnected/device"])
    assert event["disconnectReason"] == "API_INITIATED_DISCONNECT"
    assert event["clientInitiatedDisconnect"] is False
    # And the will is published unless the caller prevented it
    assert ("wills/device" in seen) is not prevent_will
    # And a client that is not connected is a 404
    assert await asyncio.to_thread(_code, admin.delete_connection, clientId="device") == (
        "ResourceNotFoundException"
    )
    await watcher.disconnect()


def _publish_signed_at(world: Harness, signed_at: datetime) -> int:
    """Status of an iot-data Publish signed by botocore's SigV4Auth, its clock at ``signed_at``."""
    credential = world.store.issue([ALLOW_ALL])
    request = AWSRequest(
        method="POST", url=f"{world.emulator.data_url}/topics/t%2Fskew?qos=0", data=b"x"
    )
    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda: signed_at.replace(tzinfo=None)
    try:
        SigV4Auth(
            Credentials(
                credential.access_key_id, credential.secret_access_key, credential.session_token
            ),
            "iotdata",
            world.region,
        ).add_auth(request)
    finally:
        botocore.auth.get_current_datetime = original
    prepared = request.prepare()
    sent = urllib.request.Request(
        prepared.url, data=b"x", headers=dict(prepared.headers.items()), method="POST"
    )
    try:
        with urllib.request.urlopen(sent, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize(("minutes", "status"), [(4, 200), (-4, 200), (6, 401), (-6, 401)])
async def test_a_publish_signed_more_than_five_minutes_off_the_clock_is_refused(
    world: Harness, minutes: int, status: int
) -> None:
    # AWS's replay window for header-signed requests is five minutes (IAM user guide, SigV4)
    signed_at = datetime.now(UTC) + timedelta(minutes=minutes)
    assert await asyncio.to_thread(_publish_signed_at, world, signed_at) == status


def _signed(world: Harness, method: str, path: str, data: bytes = b"") -> tuple[int, Any, str]:
    """Status, JSON body and ``x-amzn-ErrorType`` of a request signed by botocore's SigV4Auth
    with ``path`` sent exactly as given (boto3 would percent-encode a ``str`` topic)."""
    credential = world.store.issue([ALLOW_ALL])
    request = AWSRequest(method=method, url=f"{world.emulator.data_url}{path}", data=data)
    SigV4Auth(
        Credentials(
            credential.access_key_id, credential.secret_access_key, credential.session_token
        ),
        "iotdata",
        world.region,
    ).add_auth(request)
    prepared = request.prepare()
    sent = urllib.request.Request(
        prepared.url, data=data or None, headers=dict(prepared.headers.items()), method=method
    )
    try:
        with urllib.request.urlopen(sent, timeout=10) as answer:
            raw = answer.read()
            return int(answer.status), json.loads(raw) if raw else None, ""
    except urllib.error.HTTPError as exc:
        error_type = exc.headers.get("x-amzn-ErrorType", "")
        return exc.code, json.loads(exc.read()), error_type


async def test_a_topic_that_is_not_utf8_after_percent_decoding_is_a_400(world: Harness) -> None:
    watcher = await world.connect(world.store.issue([ALLOW_ALL]), "watcher")
    await watcher.subscribe("+")
    # When iot-data Publish names a topic whose bytes are not UTF-8 (0xFF)
    status, body, error_type = await asyncio.to_thread(
        _signed, world, "POST", "/topics/a%FFb?qos=0", b"x"
    )
    # Then 400 InvalidRequestException in the shape of the other bad-topic errors
    assert (status, error_type) == (400, "InvalidRequestException")
    assert body.keys() == {"message", "traceId"}
    assert "UTF-8" in body["message"]
    # And nothing was published (not to "a\ufffdb" either): the next message is a later one
    assert (await asyncio.to_thread(_signed, world, "POST", "/topics/ok?qos=0", b"y"))[0] == 200
    message = await watcher.next_publish()
    assert (message.topic, message.payload) == ("ok", b"y")
    await watcher.disconnect()


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/retainedMessage/a%FFb"), ("DELETE", "/connections/a%FFb")]
)
async def test_retained_and_connection_labels_that_are_not_utf8_are_a_400(
    world: Harness, method: str, path: str
) -> None:
    status, body, error_type = await asyncio.to_thread(_signed, world, method, path)
    assert (status, error_type) == (400, "InvalidRequestException")
    assert "UTF-8" in body["message"]


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("qos=0&contentType=%FF", "contentType"),  # 0xFF is never UTF-8
        ("contentType=a%ED%A0%80b", "contentType"),  # nor is an encoded surrogate
        ("responseTopic=r%FF", "responseTopic"),
        ("messageExpiry=%FF", "messageExpiry"),
        ("qos=%FF", "qos"),
        ("retain=%FF", "retain"),
        ("contentType=%FF&contentType=ok", "contentType"),  # the first value counts
    ],
)
async def test_publish_query_values_that_are_not_utf8_are_a_400(
    world: Harness, query: str, name: str
) -> None:
    watcher = await world.connect(world.store.issue([ALLOW_ALL]), "watcher", protocol_level=5)
    await watcher.subscribe("a/+")
    # When iot-data Publish gets a query value whose bytes are not UTF-8
    status, body, error_type = await asyncio.to_thread(
        _signed, world, "POST", f"/topics/a/b?{query}", b"x"
    )
    # Then 400 InvalidRequestException in the shape of the bad-topic error, naming the value
    assert (status, error_type) == (400, "InvalidRequestException"), body
    assert body.keys() == {"message", "traceId"}
    assert f"{name} is not UTF-8 after percent-decoding" in body["message"]
    # And nothing was published (with U+FFFD in its place): the next message is a later one
    assert (await asyncio.to_thread(_signed, world, "POST", "/topics/a/ok?qos=0", b"y"))[0] == 200
    message = await watcher.next_publish()
    assert (message.topic, message.payload, message.properties) == ("a/ok", b"y", Properties())
    await watcher.disconnect()


async def test_publish_takes_the_first_of_repeated_query_parameters_and_ignores_unknown_ones(
    world: Harness,
) -> None:
    watcher = await world.connect(world.store.issue([ALLOW_ALL]), "watcher", protocol_level=5)
    await watcher.subscribe("a/+")
    # When a parameter comes twice, and one the model does not define comes too
    status, body, _ = await asyncio.to_thread(
        _signed,
        world,
        "POST",
        "/topics/a/b?retain=false&contentType=first&retain=true&contentType=second&colour=%FF",
        b"x",
    )
    # Then the first value of each counts (Smithy httpQuery) and the unknown one is ignored
    assert status == 200, body
    message = await watcher.next_publish()
    assert message.properties == Properties(content_type="first")
    admin = world.iot_data(world.store.issue([ALLOW_ALL]))
    assert await asyncio.to_thread(_code, admin.get_retained_message, topic="a/b") == (
        "ResourceNotFoundException"
    )
    await watcher.disconnect()


@pytest.mark.parametrize(
    "query", ["maxResults=%FF", "nextToken=%FF", "maxResults=%FF&maxResults=5"]
)
async def test_list_retained_query_values_that_are_not_utf8_are_a_400(
    world: Harness, query: str
) -> None:
    status, body, error_type = await asyncio.to_thread(
        _signed, world, "GET", f"/retainedMessage?{query}"
    )
    assert (status, error_type) == (400, "InvalidRequestException"), body
    assert f"{query.split('=')[0]} is not UTF-8 after percent-decoding" in body["message"]
