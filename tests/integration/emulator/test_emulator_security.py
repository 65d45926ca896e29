"""Who may do what: IAM enforcement on CONNECT, SUBSCRIBE, PUBLISH and every delivery."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from botocore.exceptions import ClientError

from iotnotify_emulator import EmulatorConfig, InMemoryCredentialStore, start_emulator
from iotnotify_emulator.mqtt import Pingreq, Pingresp, Subscribe
from iotnotify_emulator.testing import ALLOW_ALL, ConnectionRefused, Harness, RawMqttClient


async def test_bob_cannot_subscribe_to_alices_topic_and_is_disconnected(world: Harness) -> None:
    bob = await world.connect(world.subscriber("bob"), "bob.1")
    # When bob (MQTT 3.1.1) asks for alice's topic beside his own
    await bob.send(
        Subscribe(packet_id=1, topics=((world.topic_of("bob"), 0), (world.topic_of("alice"), 0)))
    )
    # Then AWS's 3.1.1 answer: no SUBACK, the connection is closed
    assert await bob.wait_closed() == []
    stats = world.emulator.stats()
    refusal = stats["recent_refusals"][-1]
    assert refusal["action"] == "iot:Subscribe"
    assert refusal["resource"].endswith("topicfilter/" + world.topic_of("alice"))
    assert stats["disconnects_by_reason"] == {"AUTH_ERROR": 1}
    assert stats["subscriptions_current"] == 0


async def test_bob_cannot_use_a_wildcard_filter_to_read_alices_topic(world: Harness) -> None:
    # Given a sloppy identity policy that lets bob subscribe to anything,
    # while Receive stays limited to his own topic
    arn = world.emulator.broker.arn
    sloppy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["iot:Connect", "iot:Subscribe"], "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": "iot:Receive",
                "Resource": arn("topic", world.topic_of("bob")),
            },
        ],
    }
    bob = await world.connect(world.store.issue([sloppy]), "bob.1")
    assert (await bob.subscribe("#", "app/test/user/+/notifications")).return_codes == (0, 0)
    # When the backend publishes to alice, then to bob
    iot = world.iot_data(world.publisher())
    await asyncio.to_thread(iot.publish, topic=world.topic_of("alice"), payload=b"secret")
    await asyncio.to_thread(iot.publish, topic=world.topic_of("bob"), payload=b"mine")
    # Then bob only ever sees his own message
    message = await bob.next_publish()
    assert message.payload == b"mine"
    assert world.emulator.stats()["denials_by_action"]["iot:Receive"] >= 1
    await bob.disconnect()


async def test_receive_decisions_are_per_connection(world: Harness) -> None:
    # Given alice on her own topic, and bob subscribed to it too through a
    # sloppy policy whose Receive is limited to his own topic
    arn = world.emulator.broker.arn
    sloppy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["iot:Connect", "iot:Subscribe"], "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": "iot:Receive",
                "Resource": arn("topic", world.topic_of("bob")),
            },
        ],
    }
    alice = await world.connect(world.subscriber("alice"), "alice.1")
    assert (await alice.subscribe(world.topic_of("alice"))).return_codes == (0,)
    bob = await world.connect(world.store.issue([sloppy]), "bob.1")
    assert (await bob.subscribe(world.topic_of("alice"), world.topic_of("bob"))).return_codes == (
        0,
        0,
    )
    # When the backend publishes to alice twice (the second time, each
    # connection's decision for the topic is remembered), then to bob
    iot = world.iot_data(world.publisher())
    for payload in (b"one", b"two"):
        await asyncio.to_thread(iot.publish, topic=world.topic_of("alice"), payload=payload)
    await asyncio.to_thread(iot.publish, topic=world.topic_of("bob"), payload=b"mine")
    # Then alice gets both of hers and bob only his own: one connection's
    # decision is never another's
    assert [(await alice.next_publish()).payload for _ in range(2)] == [b"one", b"two"]
    assert (await bob.next_publish()).payload == b"mine"
    await alice.disconnect()
    await bob.disconnect()


async def test_bob_cannot_connect_as_alice(world: Harness) -> None:
    """An unauthorised MQTT 3.1.1 CONNECT gets no CONNACK 5: the connection is
    closed (AWS IoT developer guide, "AWS IoT differences from MQTT version
    3.1.1": "AWS IoT returns the error code 7 instead of the CONNACK error code
    5", 7 being paho's "connection lost"; aws-iot-device-sdk-js-v2 issue 101:
    a missing iot:Connect shows as AWS_ERROR_MQTT_UNEXPECTED_HANGUP)."""
    for client_id in ("alice.1", "bob", "bob-x.1", "alice"):
        with pytest.raises(ConnectionRefused) as refused:
            await world.connect(world.subscriber("bob"), client_id)
        assert refused.value.hung_up, client_id
        assert refused.value.connack is None
    stats = world.emulator.stats()
    assert stats["connects_refused"] == 4
    assert stats["connections_current"] == 0


async def test_subscriber_may_not_publish_and_is_disconnected(world: Harness) -> None:
    alice = await world.connect(world.subscriber("alice"), "alice.1")
    await alice.publish(world.topic_of("alice"), b"x")
    await alice.wait_closed()
    assert world.emulator.stats()["disconnects_by_reason"]["AUTH_ERROR"] == 1


async def test_duplicate_client_id_kicks_the_older_connection(world: Harness) -> None:
    watcher = await world.connect(world.store.issue([ALLOW_ALL]), "watcher")
    await watcher.subscribe("$aws/events/presence/disconnected/+")
    first = await world.connect(world.subscriber("alice"), "alice.1")
    second = await world.connect(world.subscriber("alice"), "alice.1")
    await first.wait_closed()
    event = json.loads((await watcher.next_publish()).payload)
    assert event["disconnectReason"] == "DUPLICATE_CLIENTID"
    assert event["clientInitiatedDisconnect"] is False
    # The newer connection still works
    await second.ping()
    assert isinstance(await second.receive(), Pingresp)
    await second.disconnect()
    await watcher.disconnect()


async def test_expired_or_unknown_credentials_are_refused(world: Harness) -> None:
    from datetime import timedelta

    expired = world.store.issue([ALLOW_ALL], expires_in=timedelta(seconds=-1))
    with pytest.raises(ConnectionRefused) as refused:
        await world.connect(expired, "x")
    assert refused.value.status == 403
    gone = world.store.issue([ALLOW_ALL])
    world.store.remove(gone.access_key_id)
    with pytest.raises(ConnectionRefused) as refused:
        await world.connect(gone, "x")
    assert refused.value.status == 403


async def test_wrong_session_token_is_refused(world: Harness) -> None:
    from dataclasses import replace

    real = world.subscriber("alice")
    forged = replace(real, session_token="not-the-token")
    with pytest.raises(ConnectionRefused) as refused:
        await world.connect(forged, "alice.1")
    assert refused.value.status == 403


@pytest.fixture
async def fast_world() -> AsyncIterator[Harness]:
    config = EmulatorConfig(keepalive_min=1, keepalive_factor=1.5, websocket_ttl=30)
    store = InMemoryCredentialStore()
    async with start_emulator(config, credentials=store) as emulator:
        harness = Harness(emulator=emulator, store=store)
        yield harness
        await harness.aclose()


async def test_silent_client_is_dropped_after_one_and_a_half_keepalives(
    fast_world: Harness,
) -> None:
    watcher = await fast_world.connect(fast_world.store.issue([ALLOW_ALL]), "watcher")
    await watcher.subscribe("$aws/events/presence/disconnected/+")
    silent = await fast_world.connect(fast_world.subscriber("alice"), "alice.1", keepalive=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await silent.wait_closed(within=5)
    assert loop.time() - started >= 1.4
    event = json.loads((await watcher.next_publish()).payload)
    assert event["disconnectReason"] == "MQTT_KEEP_ALIVE_TIMEOUT"
    await watcher.disconnect()


async def test_pinging_client_stays_connected(fast_world: Harness) -> None:
    client = await fast_world.connect(fast_world.subscriber("alice"), "alice.1", keepalive=1)
    for _ in range(4):
        await asyncio.sleep(0.5)  # the client's own ping schedule, nothing to await
        await client.ping()
        assert isinstance(await client.receive(), Pingresp)
    await client.disconnect()


async def test_websocket_ttl_expiry() -> None:
    store = InMemoryCredentialStore()
    async with start_emulator(EmulatorConfig(websocket_ttl=0.5), credentials=store) as emulator:
        world = Harness(emulator=emulator, store=store)
        client = await world.connect(world.subscriber("alice"), "alice.1")
        await client.wait_closed(within=5)
        reasons = emulator.stats()["disconnects_by_reason"]
        assert reasons == {"WEBSOCKET_TTL_EXPIRATION": 1}


async def test_a_websocket_without_connect_is_closed_at_the_connect_deadline() -> None:
    # Given an emulator that waits 0.3 s for CONNECT (and a TTL far away)
    store = InMemoryCredentialStore()
    config = EmulatorConfig(wss_port=None, connect_timeout=0.3)
    async with start_emulator(config, credentials=store) as emulator:
        world = Harness(emulator=emulator, store=store)
        # When a client opens the WebSocket and never sends CONNECT
        client = await RawMqttClient.open(world.url(world.subscriber("alice")))
        try:
            # Then the server closes it, records why, and announces no disconnect
            assert await client.wait_closed(within=5) == []
        finally:
            await client.close()
        stats = emulator.stats()
        assert stats["recent_refusals"][-1]["reason"] == "no CONNECT before the timeout"
        assert stats["disconnects_by_reason"] == {}


async def test_a_connected_client_outlives_the_connect_deadline() -> None:
    # Given an emulator that waits 0.3 s for CONNECT
    store = InMemoryCredentialStore()
    config = EmulatorConfig(wss_port=None, connect_timeout=0.3)
    async with start_emulator(config, credentials=store) as emulator:
        world = Harness(emulator=emulator, store=store)
        client = await world.connect(world.subscriber("alice"), "alice.1")
        # When it stays quiet past the deadline (its keepalive is 60 s)
        await asyncio.sleep(0.6)
        # Then it is still served
        await client.ping()
        assert isinstance(await client.receive(), Pingresp)
        await world.aclose()
        assert emulator.stats()["recent_refusals"] == []


async def test_qos2_requests_get_no_ack(world: Harness) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c1")
    from iotnotify_emulator.mqtt import Publish, Subscribe

    await client.send(Subscribe(packet_id=7, topics=(("a/b", 2),)))
    await client.send(Publish(topic="a/b", payload=b"x", qos=2, packet_id=8))
    await client.send(Pingreq())
    # The next packet is the PINGRESP: neither SUBACK nor PUBREC/PUBACK came.
    assert isinstance(await client.receive(), Pingresp)
    assert world.emulator.stats()["qos2_ignored"] == 2
    await client.disconnect()


def _policy(*statements: dict[str, object]) -> dict[str, object]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


async def test_connect_attributes_condition_gates_persistent_sessions(world: Harness) -> None:
    """AWS IoT developer guide, "Connect policy examples": a policy can refuse
    PersistentConnect through iot:ConnectAttributes."""
    no_persistent = world.store.issue(
        [
            _policy(
                {
                    "Effect": "Allow",
                    "Action": "iot:Connect",
                    "Resource": "*",
                    "Condition": {
                        "ForAllValues:StringNotEquals": {
                            "iot:ConnectAttributes": ["PersistentConnect"]
                        }
                    },
                }
            )
        ]
    )
    clean = await world.connect(no_persistent, "device")
    await clean.disconnect()
    with pytest.raises(ConnectionRefused) as refused:
        await world.connect(no_persistent, "device", clean_session=False)
    assert refused.value.hung_up


@pytest.mark.parametrize(("network", "allowed"), [("127.0.0.0/8", True), ("10.0.0.0/8", False)])
async def test_source_ip_condition_is_evaluated(
    world: Harness, network: str, allowed: bool
) -> None:
    credential = world.store.issue(
        [
            _policy(
                {
                    "Effect": "Allow",
                    "Action": "iot:Connect",
                    "Resource": "*",
                    "Condition": {"IpAddress": {"aws:SourceIp": network}},
                }
            )
        ]
    )
    if allowed:
        client = await world.connect(credential, "device")
        await client.disconnect()
    else:
        with pytest.raises(ConnectionRefused) as refused:
            await world.connect(credential, "device")
        assert refused.value.hung_up


async def test_aws_username_policy_variable_for_an_iam_user(world: Harness) -> None:
    issued = world.store.issue(
        [
            _policy(
                {
                    "Effect": "Allow",
                    "Action": "iot:Publish",
                    "Resource": world.emulator.broker.arn("topic", "users/${aws:username}"),
                }
            )
        ],
        with_token=False,
        expires_in=None,
    )
    bob = replace(issued, principal_arn=f"arn:aws:iam::{world.account}:user/bob")
    world.store.add(bob)
    iot = world.iot_data(bob)
    await asyncio.to_thread(iot.publish, topic="users/bob", payload=b"mine")
    with pytest.raises(ClientError) as refused:
        await asyncio.to_thread(iot.publish, topic="users/alice", payload=b"hers")
    assert refused.value.response["Error"]["Code"] == "ForbiddenException"
