"""paho-mqtt (Eclipse) over ws:// and wss:// with a URL presigned the IoT way."""

from __future__ import annotations

import queue
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest

from iotnotify_emulator.testing import Harness

WAIT = 10.0


def _paho(harness: Harness, url: str, client_id: str, *, tls: bool) -> tuple[mqtt.Client, Any]:
    parts = urlsplit(url)
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        transport="websockets",
        protocol=mqtt.MQTTv311,
    )
    client.ws_set_options(path=f"{parts.path}?{parts.query}")
    if tls:
        client.tls_set(ca_certs=str(harness.emulator.ca_file))
    client.on_connect = lambda c, u, flags, rc, props: events.put(("connect", rc))
    client.on_subscribe = lambda c, u, mid, rcs, props: events.put(("subscribe", rcs))
    client.on_message = lambda c, u, msg: events.put(("message", msg))
    client.on_disconnect = lambda c, u, flags, rc, props: events.put(("disconnect", rc))
    assert parts.hostname is not None
    assert parts.port is not None
    client.connect(parts.hostname, parts.port, keepalive=60)
    return client, events


def _next(events: queue.Queue[tuple[str, Any]], kind: str) -> Any:
    while True:
        got, value = events.get(timeout=WAIT)
        if got == kind:
            return value


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_paho_subscribes_and_receives(harness: Harness, tls: bool) -> None:
    # Given alice's presigned URL (token appended after signing)
    url = harness.url(harness.subscriber("alice"), tls=tls)
    client, events = _paho(harness, url, "alice.paho", tls=tls)
    client.loop_start()
    try:
        assert _next(events, "connect") == 0
        # When she subscribes to her topic and the backend publishes
        client.subscribe(harness.topic_of("alice"), qos=1)
        (granted,) = _next(events, "subscribe")
        assert granted == 1
        harness.iot_data(harness.publisher()).publish(
            topic=harness.topic_of("alice"), qos=1, payload=b'{"v":1}'
        )
        # Then paho delivers the message
        message = _next(events, "message")
        assert message.topic == harness.topic_of("alice")
        assert message.payload == b'{"v":1}'
        # And a forbidden subscription closes the (MQTT 3.1.1) connection, as on AWS
        client.subscribe(harness.topic_of("bob"), qos=0)
        assert _next(events, "disconnect") != 0
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_paho_with_the_token_inside_the_signature_gets_403(harness: Harness, tls: bool) -> None:
    url = harness.url(harness.subscriber("alice"), tls=tls, sign_token=True)
    with pytest.raises(mqtt.WebsocketConnectionError):
        _paho(harness, url, "alice.paho", tls=tls)
    refusal = harness.emulator.stats()["recent_refusals"][-1]
    assert "signature does not match" in refusal["reason"]


def test_paho_mqtt5_gets_not_authorized_stays_and_receives_user_properties(
    harness: Harness,
) -> None:
    # Given alice's presigned URL and paho in MQTT 5 mode
    url = harness.url(harness.subscriber("alice"), tls=True)
    parts = urlsplit(url)
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id="alice.paho5",
        transport="websockets",
        protocol=mqtt.MQTTv5,
    )
    client.ws_set_options(path=f"{parts.path}?{parts.query}")
    client.tls_set(ca_certs=str(harness.emulator.ca_file))
    client.on_connect = lambda c, u, flags, rc, props: events.put(("connect", (rc, props)))
    client.on_subscribe = lambda c, u, mid, rcs, props: events.put(("subscribe", rcs))
    client.on_message = lambda c, u, msg: events.put(("message", msg))
    client.on_disconnect = lambda c, u, flags, rc, props: events.put(("disconnect", rc))
    assert parts.hostname is not None
    assert parts.port is not None
    client.connect(parts.hostname, parts.port, keepalive=60)
    client.loop_start()
    try:
        reason, props = _next(events, "connect")
        assert reason == 0
        assert props.TopicAliasMaximum == 8
        # When she subscribes to bob's topic
        client.subscribe(harness.topic_of("bob"), qos=1)
        (refused,) = _next(events, "subscribe")
        # Then paho reports Not authorized (0x87) and the connection stays
        assert refused.value == 0x87
        client.subscribe(harness.topic_of("alice"), qos=1)
        (granted,) = _next(events, "subscribe")
        assert granted.value == 1
        # And an iot-data publish arrives with its user properties
        harness.iot_data(harness.publisher()).publish(
            topic=harness.topic_of("alice"),
            qos=1,
            payload=b'{"v":1}',
            userProperties=[{"kind": "turn"}],
            responseTopic="app/test/replies/alice",
        )
        message = _next(events, "message")
        assert message.payload == b'{"v":1}'
        assert message.properties.UserProperty == [("kind", "turn")]
        assert message.properties.ResponseTopic == "app/test/replies/alice"
        assert events.empty()  # no disconnect in between
    finally:
        client.disconnect()
        client.loop_stop()


def test_paho_connecting_under_another_users_client_id_sees_the_connection_lost(
    harness: Harness,
) -> None:
    """AWS IoT developer guide, "AWS IoT differences from MQTT version 3.1.1":
    "AWS IoT returns the error code 7 instead of the CONNACK error code 5 when
    a connection is refused because the client isn't authorized to connect";
    7 is paho's MQTT_ERR_CONN_LOST."""
    # Given alice's URL and a client id her session policy does not allow
    url = harness.url(harness.subscriber("alice"))
    client, events = _paho(harness, url, "bob.paho", tls=False)
    # When paho sends CONNECT, the server closes the connection: no CONNACK
    result = mqtt.MQTT_ERR_SUCCESS
    for _ in range(int(WAIT / 0.1)):
        result = client.loop(timeout=0.1)
        if result != mqtt.MQTT_ERR_SUCCESS:
            break
    assert result == mqtt.MQTT_ERR_CONN_LOST
    got = []
    while not events.empty():
        got.append(events.get_nowait()[0])
    assert got == ["disconnect"]  # never "connect" (which CONNACK 5 would give)
    assert harness.emulator.stats()["connects_refused"] == 1
