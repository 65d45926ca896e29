"""MQTT 5 through the emulator with the raw client: CONNACK, reason codes,
properties, topic aliases, subscription options, iot-data forwarding."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from iotnotify_emulator import EmulatorConfig, InMemoryCredentialStore, mqtt5, start_emulator
from iotnotify_emulator.mqtt import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    StreamDecoder,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
)
from iotnotify_emulator.mqtt import encode as encode_v3
from iotnotify_emulator.mqtt5 import Properties, ReasonCode
from iotnotify_emulator.session5 import MAX_PACKET_SIZE, NO_LOCAL, RETAIN_AS_PUBLISHED
from iotnotify_emulator.testing import ALLOW_ALL, ConnectionRefused, Harness, RawMqttClient

V5 = {"protocol_level": 5}


async def _still_connected(client: RawMqttClient) -> None:
    """A PINGREQ answered proves the server kept the connection."""
    await client.send(Pingreq())
    assert await client.receive() == Pingresp()


async def test_connack_carries_aws_iot_cores_mqtt5_properties(world: Harness) -> None:
    # Given a v5 client asking for keepalive 5 s and a 2-hour session
    client = await world.connect(
        world.subscriber("alice"),
        "alice.v5",
        keepalive=5,
        properties=Properties(session_expiry_interval=7200),
        **V5,
    )
    # Then CONNACK is v5-shaped with AWS's limits
    connack = client.connack
    assert connack is not None
    assert connack.return_code == ReasonCode.SUCCESS
    props = connack.properties
    assert props is not None
    assert props.server_keep_alive == 30  # AWS clamps keepalive to 30..1200 s
    assert props.session_expiry_interval == 3600
    assert props.topic_alias_maximum == 8
    assert props.maximum_packet_size == MAX_PACKET_SIZE == 149_504
    assert props.maximum_qos == 1
    assert props.retain_available == 1
    assert props.subscription_identifier_available == 0
    assert props.wildcard_subscription_available == 1
    assert props.shared_subscription_available == 1
    # Receive Maximum 100: AWS's quota of unacknowledged inbound QoS 1 publishes
    # per client, sent in a real IoT Core CONNACK (receive_maximum=100)
    assert props.receive_maximum == 100
    await client.disconnect()


async def test_connack_carries_server_keep_alive_even_when_unchanged(world: Harness) -> None:
    # Given a v5 client asking for a keepalive AWS accepts as it is
    client = await world.connect(world.subscriber("alice"), "alice.v5", keepalive=60, **V5)
    # Then CONNACK still says it: a real IoT Core CONNACK to awscrt's default
    # keepalive of 1200 s carries server_keep_alive_sec=1200
    assert client.connack is not None
    assert client.connack.properties is not None
    assert client.connack.properties.server_keep_alive == 60
    await client.disconnect()


async def test_unauthorised_subscribe_gets_0x87_and_the_connection_stays(world: Harness) -> None:
    # Given bob on MQTT 5
    bob = await world.connect(world.subscriber("bob"), "bob.v5", **V5)
    # When he subscribes to alice's topic and to his own in one packet
    suback = await bob.subscribe((world.topic_of("alice"), 1), (world.topic_of("bob"), 1))
    # Then alice's is refused with Not authorized, his own is granted
    assert suback.return_codes == (ReasonCode.NOT_AUTHORIZED, 1)
    # And the connection stays usable
    await _still_connected(bob)
    assert world.emulator.stats()["denials_by_action"] == {"iot:Subscribe": 1}
    await bob.disconnect()


async def test_unauthorised_publish_gets_puback_0x87_and_the_connection_stays(
    world: Harness,
) -> None:
    alice = await world.connect(world.subscriber("alice"), "alice.v5", **V5)
    # A subscriber may not publish (QoS 1 gets PUBACK Not authorized) ...
    puback = await alice.publish(world.topic_of("bob"), b"x", qos=1)
    assert puback is not None
    assert puback.reason_code == ReasonCode.NOT_AUTHORIZED
    assert puback.properties is not None
    assert "iot:Publish" in (puback.properties.reason_string or "")
    # ... QoS 0 is dropped without an answer, and she is still connected
    await alice.publish(world.topic_of("bob"), b"y")
    await _still_connected(alice)
    await alice.disconnect()


async def test_iot_data_publish_forwards_its_mqtt5_fields(world: Harness) -> None:
    # Given alice on MQTT 5 and on 3.1.1, both subscribed to her topic
    topic = world.topic_of("alice")
    v5 = await world.connect(world.subscriber("alice"), "alice.v5", **V5)
    v3 = await world.connect(world.subscriber("alice"), "alice.v3")
    await v5.subscribe((topic, 1))
    await v3.subscribe((topic, 1))
    # When the backend publishes with boto3 iot-data and every MQTT 5 field
    iot = world.iot_data(world.publisher())
    await asyncio.to_thread(
        iot.publish,
        topic=topic,
        qos=1,
        payload=b'{"v":1}',
        contentType="application/json",
        responseTopic="app/test/replies/1",
        correlationData=base64.b64encode(b"\x00\x01req").decode(),
        messageExpiry=600,
        payloadFormatIndicator="UTF8_DATA",
        # botocore JSON-encodes and base64-encodes this header value itself
        userProperties=[{"kind": "turn"}, {"game": "g1"}, {"kind": "again"}],
    )
    # Then the v5 subscriber gets them as PUBLISH properties, in order
    message = await v5.next_publish()
    assert message.payload == b'{"v":1}'
    assert message.properties == Properties(
        payload_format_indicator=1,
        message_expiry_interval=600,
        content_type="application/json",
        response_topic="app/test/replies/1",
        correlation_data=b"\x00\x01req",
        user_properties=(("kind", "turn"), ("game", "g1"), ("kind", "again")),
    )
    # And the 3.1.1 subscriber gets the same message without them
    plain = await v3.next_publish()
    assert (plain.topic, plain.payload, plain.properties) == (topic, b'{"v":1}', None)


async def test_iot_data_rejects_undecodable_mqtt5_fields(world: Harness) -> None:
    import botocore.exceptions

    iot = world.iot_data(world.publisher())
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        await asyncio.to_thread(
            iot.publish, topic=world.topic_of("alice"), payload=b"x", responseTopic="a/+/b"
        )
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


async def test_v5_publish_properties_and_topic_alias_reach_v5_subscribers(world: Harness) -> None:
    credential = world.store.issue([ALLOW_ALL])
    sub = await world.connect(credential, "sub", **V5)
    await sub.subscribe(("room/1", 0))
    pub = await world.connect(credential, "pub", **V5)
    # When a publisher sets topic alias 3, then publishes by alias only
    properties = Properties(topic_alias=3, user_properties=(("k", "v"),), content_type="text/plain")
    await pub.publish("room/1", b"first", properties=properties)
    await pub.publish("", b"second", properties=Properties(topic_alias=3))
    # Then both arrive on the full topic, the alias itself not forwarded
    first = await sub.next_publish()
    second = await sub.next_publish()
    assert (first.topic, first.payload) == ("room/1", b"first")
    assert first.properties == Properties(user_properties=(("k", "v"),), content_type="text/plain")
    assert (second.topic, second.payload, second.properties) == ("room/1", b"second", Properties())


@pytest.mark.parametrize(
    ("topic", "alias", "reason"),
    [
        ("room/1", 9, ReasonCode.TOPIC_ALIAS_INVALID),  # over the Topic Alias Maximum of 8
        ("", 2, ReasonCode.PROTOCOL_ERROR),  # alias never set
    ],
)
async def test_bad_topic_alias_gets_disconnect_with_its_reason(
    world: Harness, topic: str, alias: int, reason: ReasonCode
) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "pub", **V5)
    await client.publish(topic, b"x", properties=Properties(topic_alias=alias))
    assert await client.wait_closed() == [Disconnect(reason)]


async def test_malformed_property_gets_disconnect_0x82_then_close(world: Harness) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c", **V5)
    # PUBLISH "t" with Content Type twice
    props = b"\x03\x00\x01a\x03\x00\x01a"
    body = b"\x00\x01t" + bytes([len(props)]) + props
    await client.send_raw(bytes([0x30, len(body)]) + body)
    assert await client.wait_closed() == [Disconnect(ReasonCode.PROTOCOL_ERROR)]


async def test_qos0_publish_with_dup_gets_disconnect_0x81_and_is_not_delivered(
    world: Harness,
) -> None:
    """MQTT 5 section 3.3.1.1: "The DUP flag MUST be set to 0 for all QoS 0
    messages [MQTT-3.3.1-2]"; invalid fixed-header flags are a Malformed Packet
    (section 2.1.3), answered with DISCONNECT 0x81 (section 4.13)."""
    subscriber = await world.connect(world.store.issue([ALLOW_ALL]), "sub", **V5)
    await subscriber.subscribe("a/1")
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c", **V5)
    # When a QoS 0 PUBLISH arrives with the DUP bit set
    await client.send(Publish(topic="a/1", payload=b"dup", qos=0, dup=True))
    # Then DISCONNECT 0x81 Malformed Packet, then the close
    assert await client.wait_closed() == [Disconnect(ReasonCode.MALFORMED_PACKET)]
    # And nothing was delivered: the next message the subscriber sees is a later one
    other = await world.connect(world.store.issue([ALLOW_ALL]), "other", **V5)
    await other.publish("a/1", b"after")
    assert (await subscriber.next_publish()).payload == b"after"


async def test_duplicate_client_id_sends_session_taken_over(world: Harness) -> None:
    credential = world.subscriber("alice")
    first = await world.connect(credential, "alice.1", **V5)
    await world.connect(credential, "alice.1", **V5)
    assert await first.wait_closed() == [Disconnect(ReasonCode.SESSION_TAKEN_OVER)]


async def test_no_local_and_retain_as_published(world: Harness) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "me", **V5)
    # Given subscriptions with No Local on a/1 and Retain As Published on b/1
    await client.subscribe(("a/1", 0), ("b/1", 0), options=(NO_LOCAL, RETAIN_AS_PUBLISHED))
    # When it publishes to both, b/1 retained
    await client.publish("a/1", b"own")
    await client.publish("b/1", b"kept", retain=True)
    # Then only b/1 comes back, with its retain flag
    message = await client.next_publish()
    assert (message.topic, message.retain) == ("b/1", True)
    await _still_connected(client)  # nothing else was queued before the PINGRESP


async def test_retain_handling_2_sends_no_retained_message(world: Harness) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "me", **V5)
    await client.publish("r/1", b"retained", retain=True, qos=1)
    await client.subscribe(("r/1", 0), options=(0x20,))  # Retain Handling 2
    await _still_connected(client)  # no retained PUBLISH before the PINGRESP
    await client.subscribe(("r/1", 0), options=(0x00,))  # Retain Handling 0
    message = await client.next_publish()
    assert (message.payload, message.retain) == (b"retained", True)


async def test_client_maximum_packet_size_is_respected(world: Harness) -> None:
    credential = world.store.issue([ALLOW_ALL])
    small = await world.connect(
        credential, "small", properties=Properties(maximum_packet_size=64), **V5
    )
    await small.subscribe("big/#")
    pub = await world.connect(credential, "pub", **V5)
    await pub.publish("big/1", b"x" * 100)
    await pub.publish("big/1", b"tiny")
    message = await small.next_publish()
    assert message.payload == b"tiny"


async def test_disconnect_with_will_message_keeps_the_will(world: Harness) -> None:
    credential = world.store.issue([ALLOW_ALL])
    watcher = await world.connect(credential, "watcher", **V5)
    await watcher.subscribe("wills/#")
    will = Will("wills/w", b"bye", properties=Properties(content_type="text/plain"))
    leaving = await world.connect(credential, "leaving", will=will, **V5)
    await leaving.send(Disconnect(ReasonCode.DISCONNECT_WITH_WILL))
    message = await watcher.next_publish()
    assert (message.topic, message.payload) == ("wills/w", b"bye")
    assert message.properties == Properties(content_type="text/plain")


async def test_empty_client_id_is_assigned_one(world: Harness) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "", **V5)
    assert client.connack is not None
    assert client.connack.properties is not None
    assigned = client.connack.properties.assigned_client_identifier
    assert assigned
    assert assigned in world.emulator.broker.sessions


async def test_empty_client_id_still_needs_iot_connect(world: Harness) -> None:
    # The subscriber policy allows client/alice.* only: an assigned id is refused.
    with pytest.raises(ConnectionRefused) as refused:
        await world.connect(world.subscriber("alice"), "", **V5)
    assert refused.value.return_code == ReasonCode.NOT_AUTHORIZED


async def test_unauthorised_connect_gets_v5_connack_0x87(world: Harness) -> None:
    with pytest.raises(ConnectionRefused) as refused:
        await world.connect(world.subscriber("bob"), "alice.1", **V5)
    assert refused.value.return_code == ReasonCode.NOT_AUTHORIZED
    assert refused.value.connack is not None
    assert refused.value.connack.properties is not None
    assert refused.value.connack.properties.reason_string


async def test_enhanced_authentication_is_refused(world: Harness) -> None:
    with pytest.raises(ConnectionRefused) as refused:
        await world.connect(
            world.store.issue([ALLOW_ALL]),
            "c",
            properties=Properties(authentication_method="SCRAM-SHA-1"),
            **V5,
        )
    assert refused.value.return_code == ReasonCode.BAD_AUTHENTICATION_METHOD


async def test_auth_packet_is_a_protocol_error(world: Harness) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c", **V5)
    await client.send(Auth(0x18))
    assert await client.wait_closed() == [Disconnect(ReasonCode.PROTOCOL_ERROR)]


async def test_qos2_publish_gets_disconnect_qos_not_supported(world: Harness) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c", **V5)
    await client.send(Publish(topic="a", payload=b"x", qos=2, packet_id=1))
    assert await client.wait_closed() == [Disconnect(ReasonCode.QOS_NOT_SUPPORTED)]


async def test_qos2_subscribe_is_granted_qos1(world: Harness) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c", **V5)
    suback = await client.subscribe(("a/b", 2))
    assert suback.return_codes == (1,)


async def test_subscription_identifier_is_not_supported(world: Harness) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c", **V5)
    await client.send(Subscribe(1, (("a", 0),), (0,), Properties(subscription_identifiers=(7,))))
    # AWS IoT Core's DISCONNECT, as node-red/node-red issues 4115 and 4133 log it
    assert await client.wait_closed() == [
        Disconnect(
            ReasonCode.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
            Properties(reason_string="Subscription Id is not supported now"),
        )
    ]


async def test_unsuback_has_a_reason_per_filter(world: Harness) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c", **V5)
    await client.subscribe("a/1")
    await client.send(Unsubscribe(5, ("a/1", "never")))
    assert await client.receive() == Unsuback(
        5, (ReasonCode.SUCCESS, ReasonCode.NO_SUBSCRIPTION_EXISTED), Properties()
    )


async def test_unsubscribe_of_an_invalid_filter_gets_0x8f_for_that_filter(world: Harness) -> None:
    """MQTT 5 section 3.11.3: a reason code per filter [MQTT-3.11.3-2]; a filter
    that breaks section 4.7 gets 0x8F Topic Filter invalid, not 0x11."""
    watcher = await world.connect(world.store.issue([ALLOW_ALL]), "watcher", **V5)
    await watcher.subscribe("$aws/events/subscriptions/unsubscribed/c")
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c", **V5)
    await client.subscribe("a/1")
    # When one UNSUBSCRIBE names '#' not last, '+' not a whole level, an empty
    # filter, a shared filter without a share name, a subscribed and an unknown filter
    await client.send(Unsubscribe(5, ("a/#/b", "a+", "", "$share//a", "a/1", "never")))
    invalid = ReasonCode.TOPIC_FILTER_INVALID
    assert await client.receive() == Unsuback(
        5,
        (invalid,) * 4 + (ReasonCode.SUCCESS, ReasonCode.NO_SUBSCRIPTION_EXISTED),
        Properties(),
    )
    # And the connection stays; the lifecycle event names the valid filters only
    await _still_connected(client)
    event = json.loads((await watcher.next_publish()).payload)
    assert event["topics"] == ["a/1", "never"]
    assert world.emulator.stats()["subscriptions_current"] == 1  # the watcher's


async def test_payload_marked_utf8_that_is_not_gets_puback_0x99(world: Harness) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c", **V5)
    puback = await client.publish(
        "a/1", b"\xff\xfe", qos=1, properties=Properties(payload_format_indicator=1)
    )
    assert puback is not None
    assert puback.reason_code == ReasonCode.PAYLOAD_FORMAT_INVALID
    await _still_connected(client)


# --- protocol levels ------------------------------------------------------------


async def _connack_for(world: Harness, connect: bytes, *, v5_reply: bool) -> Connack:
    client = await RawMqttClient.open(world.url(world.store.issue([ALLOW_ALL])))
    world.clients.append(client)
    if v5_reply:
        client._decoder = StreamDecoder(protocol_level=5)
    await client.send_raw(connect)
    packets = await client.wait_closed()
    assert len(packets) == 1
    assert isinstance(packets[0], Connack)
    return packets[0]


async def test_mqtt_3_1_gets_connack_0x01_in_the_3_1_1_form(world: Harness) -> None:
    wire = encode_v3(Connect(client_id="c", protocol_name="MQIsdp", protocol_level=3))
    connack = await _connack_for(world, wire, v5_reply=False)
    assert connack.return_code == 0x01


async def test_unknown_higher_level_gets_reason_0x84_in_the_v5_form(world: Harness) -> None:
    wire = bytes([0x10, 0x0A, 0x00, 0x04]) + b"MQTT" + bytes([6, 0x02, 0x00, 0x3C])
    connack = await _connack_for(world, wire, v5_reply=True)
    assert connack.return_code == ReasonCode.UNSUPPORTED_PROTOCOL_VERSION


async def test_mqtt5_disabled_answers_a_v5_connect_with_0x84() -> None:
    store = InMemoryCredentialStore()
    config = EmulatorConfig(wss_port=None, mqtt5=False)
    async with start_emulator(config, credentials=store) as emulator:
        harness = Harness(emulator=emulator, store=store)
        with pytest.raises(ConnectionRefused) as refused:
            await harness.connect(harness.store.issue([ALLOW_ALL]), "c", **V5)
        assert refused.value.return_code == ReasonCode.UNSUPPORTED_PROTOCOL_VERSION
        await harness.aclose()


async def test_3_1_1_clients_are_unchanged_beside_v5_ones(world: Harness) -> None:
    # A 3.1.1 client still gets SUBACK 0x80 (not 0x87) and a 2-byte PUBACK
    v3 = await world.connect(world.store.issue([ALLOW_ALL]), "v3")
    suback = await v3.subscribe("a/+/#/b")  # invalid filter
    assert suback.return_codes == (0x80,)
    assert await v3.publish("a/1", b"x", qos=1) == Puback(2)


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (EmulatorConfig(wss_port=None, keepalive_min=1), ReasonCode.KEEP_ALIVE_TIMEOUT),
        (EmulatorConfig(wss_port=None, websocket_ttl=0.5), ReasonCode.MAXIMUM_CONNECT_TIME),
    ],
    ids=["keepalive", "websocket-ttl"],
)
async def test_server_timeouts_send_disconnect_with_a_reason(
    config: EmulatorConfig, reason: ReasonCode
) -> None:
    store = InMemoryCredentialStore()
    async with start_emulator(config, credentials=store) as emulator:
        harness = Harness(emulator=emulator, store=store)
        # A silent client (keepalive 1 s) or one outliving the WebSocket TTL
        client = await harness.connect(harness.subscriber("alice"), "alice.1", keepalive=1, **V5)
        assert await client.wait_closed() == [Disconnect(reason)]
        await harness.aclose()


async def test_emulator_shutdown_sends_server_shutting_down() -> None:
    store = InMemoryCredentialStore()
    async with start_emulator(EmulatorConfig(wss_port=None), credentials=store) as emulator:
        harness = Harness(emulator=emulator, store=store)
        client = await harness.connect(harness.subscriber("alice"), "alice.1", **V5)
        await emulator.stop()
        assert await client.wait_closed() == [Disconnect(ReasonCode.SERVER_SHUTTING_DOWN)]
        await harness.aclose()


async def _reconnect(world: Harness, client_id: str, *, clean_start: bool) -> RawMqttClient:
    client = await RawMqttClient.open(world.url(world.store.issue([ALLOW_ALL])), **V5)
    world.clients.append(client)
    await client.send(Connect(client_id=client_id, clean_session=clean_start, protocol_level=5))
    connack = await client.receive()
    assert isinstance(connack, Connack)
    assert connack.return_code == 0
    return client


@pytest.mark.parametrize("clean_start", [False, True], ids=["resumed", "new-session"])
async def test_will_delay_interval(world: Harness, clean_start: bool) -> None:
    credential = world.store.issue([ALLOW_ALL])
    watcher = await world.connect(credential, "watcher", **V5)
    await watcher.subscribe("wills/#", "$aws/events/presence/disconnected/+")
    # Given a client whose will waits 30 s and whose session outlives it
    will = Will("wills/w", b"bye", properties=Properties(will_delay_interval=30))
    client = await world.connect(
        credential, "w1", will=will, properties=Properties(session_expiry_interval=60), **V5
    )
    # When its connection drops: the disconnect event comes, the will does not yet
    await client.drop()
    event = await watcher.next_publish()
    assert event.topic == "$aws/events/presence/disconnected/w1"
    # Then reconnecting within the delay resumes the session (no will) or,
    # with Clean Start, ends it (the will is sent at once)
    await _reconnect(world, "w1", clean_start=clean_start)
    if clean_start:
        message = await watcher.next_publish()
        assert (message.topic, message.payload) == ("wills/w", b"bye")
        assert message.properties == Properties()  # the delay is not a PUBLISH property
    else:
        await _still_connected(watcher)  # the PINGRESP is the next packet: no will
        assert "w1" not in world.emulator.broker._delayed_wills


async def test_disconnect_may_not_set_session_expiry_after_0(world: Harness) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c", **V5)
    await client.send(Disconnect(0, Properties(session_expiry_interval=10)))
    assert await client.wait_closed() == [Disconnect(ReasonCode.PROTOCOL_ERROR)]


async def test_receive_maximum_bounds_unacknowledged_qos1_deliveries(world: Harness) -> None:
    credential = world.store.issue([ALLOW_ALL])
    # Given a subscriber that accepts 2 unacknowledged QoS 1 messages
    sub = await world.connect(credential, "sub", properties=Properties(receive_maximum=2), **V5)
    await sub.subscribe(("q/1", 1))
    pub = await world.connect(credential, "pub", **V5)
    for index in range(3):
        await pub.publish("q/1", b"%d" % index, qos=1)
    # When it has not acknowledged anything, only two arrive
    first, second = await sub.receive(), await sub.receive()
    await _still_connected(sub)  # the third is held: PINGRESP comes next
    assert [p.payload for p in (first, second) if isinstance(p, Publish)] == [b"0", b"1"]
    # Then acknowledging one releases the third
    assert isinstance(first, Publish)
    assert first.packet_id is not None
    await sub.send(Puback(first.packet_id))
    third = await sub.receive()
    assert isinstance(third, Publish)
    assert third.payload == b"2"


async def test_session_expiry_keeps_the_session_for_a_v5_client(world: Harness) -> None:
    credential = world.store.issue([ALLOW_ALL])
    # Given a v5 client with a session that outlives its connection
    first = await world.connect(
        credential, "keep", properties=Properties(session_expiry_interval=600), **V5
    )
    await first.subscribe(("kept/1", 1))
    await first.disconnect()
    # When it comes back with Clean Start 0
    again = await _reconnect(world, "keep", clean_start=False)
    # Then the session is present and its subscription still delivers
    pub = await world.connect(credential, "pub", **V5)
    await pub.publish("kept/1", b"still here", qos=1)
    message = await again.next_publish()
    assert message.payload == b"still here"


async def test_disconnect_can_end_the_session(world: Harness) -> None:
    credential = world.store.issue([ALLOW_ALL])
    first = await world.connect(
        credential, "gone", properties=Properties(session_expiry_interval=600), **V5
    )
    await first.subscribe(("kept/1", 1))
    # DISCONNECT with Session Expiry Interval 0: the session ends with the connection
    await first.send(Disconnect(0, Properties(session_expiry_interval=0)))
    await first.wait_closed()
    client = await RawMqttClient.open(world.url(credential), **V5)
    world.clients.append(client)
    await client.send(Connect(client_id="gone", clean_session=False, protocol_level=5))
    connack = await client.receive()
    assert isinstance(connack, Connack)
    assert connack.session_present is False


async def test_message_expiry_counts_while_a_persistent_session_is_away(world: Harness) -> None:
    credential = world.store.issue([ALLOW_ALL])
    # Given a v5 subscriber with a kept session, gone away
    first = await world.connect(
        credential, "away", properties=Properties(session_expiry_interval=600), **V5
    )
    await first.subscribe(("inbox/1", 1))
    await first.disconnect()
    # When two QoS 1 messages are stored for it, one expiring after 1 s
    iot = world.iot_data(world.store.issue([ALLOW_ALL], with_token=False))
    for payload, expiry in ((b"short", 1), (b"long", 600)):
        await asyncio.to_thread(
            iot.publish, topic="inbox/1", qos=1, payload=payload, messageExpiry=expiry
        )
    await asyncio.sleep(2.1)  # the passage of time is what is tested
    again = await _reconnect(world, "away", clean_start=False)
    # Then only the long-lived one arrives, with the time it waited taken off
    message = await again.next_publish()
    assert message.payload == b"long"
    assert message.properties is not None
    # 600 s less the 2+ s it waited (more on a loaded machine)
    assert message.properties.message_expiry_interval is not None
    assert 500 < message.properties.message_expiry_interval <= 598
    await _still_connected(again)
    assert world.emulator.stats()["expired"] == 1


async def test_delete_connection_sends_administrative_action(world: Harness) -> None:
    credential = world.store.issue([ALLOW_ALL])
    device = await world.connect(credential, "device", **V5)
    admin = world.iot_data(credential)
    await asyncio.to_thread(admin.delete_connection, clientId="device")
    assert await device.wait_closed() == [Disconnect(ReasonCode.ADMINISTRATIVE_ACTION)]


async def test_shared_subscription_in_v5_keeps_retain_as_published(world: Harness) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "me", **V5)
    suback = await client.subscribe(("$share/g/s/#", 0), options=(RETAIN_AS_PUBLISHED,))
    assert suback.return_codes == (0,)
    await client.publish("s/1", b"kept", retain=True)
    message = await client.next_publish()
    assert (message.topic, message.retain) == ("s/1", True)


async def test_no_local_on_a_shared_subscription_is_a_protocol_error(world: Harness) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "me", **V5)
    await client.send(Subscribe(1, (("$share/g/s/#", 0),), (NO_LOCAL,)))
    assert await client.wait_closed() == [Disconnect(ReasonCode.PROTOCOL_ERROR)]


async def test_invalid_will_topic_gets_connack_topic_name_invalid(world: Harness) -> None:
    with pytest.raises(ConnectionRefused) as refused:
        await world.connect(world.store.issue([ALLOW_ALL]), "c", will=Will("a/+", b"x"), **V5)
    assert refused.value.return_code == ReasonCode.TOPIC_NAME_INVALID


async def test_get_retained_message_returns_user_properties_and_honours_expiry(
    world: Harness,
) -> None:
    iot = world.iot_data(world.store.issue([ALLOW_ALL], with_token=False))
    # Given two retained messages with user properties, one expiring after 1 s
    for topic, expiry in (("cfg/long", 600), ("cfg/short", 1)):
        await asyncio.to_thread(
            iot.publish,
            topic=topic,
            retain=True,
            payload=b"{}",
            messageExpiry=expiry,
            userProperties=[{"schema": "v2"}],
        )
    got = await asyncio.to_thread(iot.get_retained_message, topic="cfg/long")
    # Then GetRetainedMessage returns the user properties (a JSON array, as Publish takes them)
    assert json.loads(got["userProperties"]) == [{"schema": "v2"}]
    # And once the short one has expired it is gone from Get and List
    await asyncio.sleep(2.1)  # the passage of time is what is tested
    listed = await asyncio.to_thread(iot.list_retained_messages)
    assert [t["topic"] for t in listed["retainedTopics"]] == ["cfg/long"]
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        await asyncio.to_thread(iot.get_retained_message, topic="cfg/short")


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("a/+/b", b"x", ReasonCode.TOPIC_NAME_INVALID),  # wildcard in a topic name
        ("/".join("t" * 9), b"x", ReasonCode.TOPIC_NAME_INVALID),  # over AWS's 7 slashes
        ("a/b", b"x" * (128 * 1024 + 1), ReasonCode.PACKET_TOO_LARGE),  # over 128 KB
    ],
    ids=["wildcard", "too-deep", "payload-over-128kb"],
)
async def test_invalid_publish_gets_disconnect_with_its_reason(
    world: Harness, topic: str, payload: bytes, reason: ReasonCode
) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c", **V5)
    await client.publish(topic, payload)
    assert await client.wait_closed() == [Disconnect(reason)]


def _publish_of_size(total: int) -> Publish:
    """A QoS 1 PUBLISH whose encoded size, fixed header included, is ``total``
    bytes, with its payload under AWS's 128 KB: the rest is Correlation Data."""
    properties = Properties(correlation_data=b"c" * 20_000)
    payload = b""
    for _ in range(2):  # the second pass absorbs a change in the length's size
        packet = Publish("big/t", payload, qos=1, packet_id=1, properties=properties)
        payload += b"p" * (total - len(mqtt5.encode(packet)))
    packet = Publish("big/t", payload, qos=1, packet_id=1, properties=properties)
    assert len(mqtt5.encode(packet)) == total
    assert len(payload) < 128 * 1024
    return packet


async def test_maximum_packet_size_counts_the_whole_packet(world: Harness) -> None:
    # Given the Maximum Packet Size of the CONNACK (AWS's 146 KB)
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c", **V5)
    assert client.connack is not None
    assert client.connack.properties is not None
    maximum = client.connack.properties.maximum_packet_size
    assert maximum == MAX_PACKET_SIZE
    # When the client sends a packet of exactly that many bytes, it is accepted
    await client.send(_publish_of_size(maximum))
    assert await client.receive() == Puback(1, ReasonCode.SUCCESS)
    # Then one byte more is Packet too large, though its Remaining Length
    # (the size less the 4-byte fixed header) is under the maximum: the size
    # is "the total number of bytes in an MQTT Control Packet" (MQTT5
    # 3.1.2.11.4) and a larger one is answered with DISCONNECT 0x95 (3.2.2.3.6)
    await client.send(_publish_of_size(maximum + 1))
    assert await client.wait_closed() == [Disconnect(ReasonCode.PACKET_TOO_LARGE)]


async def test_reason_strings_are_left_out_of_acks_over_the_clients_maximum_packet_size(
    world: Harness,
) -> None:
    # Given a client whose Maximum Packet Size (32 bytes: room for the 23-byte
    # CONNACK) leaves no room for a Reason String naming a long topic
    topic = "sensors/" + "t" * 40
    small = await world.connect(
        world.store.issue([ALLOW_ALL]),
        "small",
        properties=Properties(maximum_packet_size=32),
        **V5,
    )
    # When a publish it makes is refused (a payload marked UTF-8 that is not)
    bad = Properties(payload_format_indicator=1)
    await small.send(Publish(topic, b"\xff", qos=1, packet_id=7, properties=bad))
    # Then the PUBACK still gives the reason code, without the Reason String
    # ("The Server MUST NOT send packets exceeding Maximum Packet Size to the
    # Client" and "MUST NOT send a Reason String or User Property if their
    # addition would exceed it", MQTT5 3.1.2.11.4, [MQTT-3.1.2-24], [MQTT-3.1.2-25])
    refused = await small.receive()
    assert isinstance(refused, Puback)
    assert (refused.packet_id, refused.reason_code) == (7, ReasonCode.PAYLOAD_FORMAT_INVALID)
    assert refused.properties in (None, Properties())
    assert len(mqtt5.encode(refused)) <= 32
    await _still_connected(small)
    # And a client with room for it still gets it
    roomy = await world.connect(world.store.issue([ALLOW_ALL]), "roomy", **V5)
    await roomy.send(Publish(topic, b"\xff", qos=1, packet_id=8, properties=bad))
    puback = await roomy.receive()
    assert isinstance(puback, Puback)
    assert puback.properties is not None
    assert topic in (puback.properties.reason_string or "")


async def test_a_refusing_connack_leaves_out_a_reason_string_over_the_maximum_packet_size(
    world: Harness,
) -> None:
    with pytest.raises(ConnectionRefused) as refused:
        await world.connect(
            world.subscriber("bob"),
            "alice.1",
            properties=Properties(maximum_packet_size=32),
            **V5,
        )
    assert refused.value.return_code == ReasonCode.NOT_AUTHORIZED
    assert refused.value.connack is not None
    assert refused.value.connack.properties in (None, Properties())
