"""The MQTT 5 codec: properties, round trips, malformed input, the switch from 3.1.1."""

from __future__ import annotations

import contextlib
import struct
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotnotify_emulator import mqtt5
from iotnotify_emulator.mqtt import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    MqttProtocolError,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    StreamDecoder,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
)
from iotnotify_emulator.mqtt import encode as encode_v3
from iotnotify_emulator.mqtt5 import Properties, ReasonCode, encode

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=20,
)
_packet_id = st.integers(min_value=1, max_value=0xFFFF)
_u16 = st.integers(1, 0xFFFF)
_u32 = st.integers(0, 0xFFFFFFFF)
_flag = st.sampled_from([0, 1])
_pairs = st.lists(st.tuples(_text, _text), max_size=4).map(tuple)
_maybe = st.none


def _publish_properties() -> st.SearchStrategy[Properties]:
    return st.builds(
        Properties,
        payload_format_indicator=_maybe() | _flag,
        message_expiry_interval=_maybe() | _u32,
        content_type=_maybe() | _text,
        response_topic=_maybe() | _text,
        correlation_data=_maybe() | st.binary(max_size=20),
        subscription_identifiers=st.lists(st.integers(1, 268_435_455), max_size=3).map(tuple),
        topic_alias=_maybe() | _u16,
        user_properties=_pairs,
    )


_connect_properties = st.builds(
    Properties,
    session_expiry_interval=_maybe() | _u32,
    receive_maximum=_maybe() | _u16,
    maximum_packet_size=_maybe() | st.integers(1, 0xFFFFFFFF),
    topic_alias_maximum=_maybe() | st.integers(0, 0xFFFF),
    request_response_information=_maybe() | _flag,
    request_problem_information=_maybe() | _flag,
    authentication_method=_maybe() | _text,
    authentication_data=_maybe() | st.binary(max_size=10),
    user_properties=_pairs,
)
_connack_properties = st.builds(
    Properties,
    session_expiry_interval=_maybe() | _u32,
    receive_maximum=_maybe() | _u16,
    maximum_qos=_maybe() | _flag,
    retain_available=_maybe() | _flag,
    maximum_packet_size=_maybe() | st.integers(1, 0xFFFFFFFF),
    assigned_client_identifier=_maybe() | _text,
    topic_alias_maximum=_maybe() | st.integers(0, 0xFFFF),
    reason_string=_maybe() | _text,
    wildcard_subscription_available=_maybe() | _flag,
    subscription_identifier_available=_maybe() | _flag,
    shared_subscription_available=_maybe() | _flag,
    server_keep_alive=_maybe() | st.integers(0, 0xFFFF),
    response_information=_maybe() | _text,
    server_reference=_maybe() | _text,
    user_properties=_pairs,
)
_ack_properties = st.none() | st.builds(
    Properties, reason_string=_maybe() | _text, user_properties=_pairs
)
_will_properties = st.builds(
    Properties,
    will_delay_interval=_maybe() | _u32,
    payload_format_indicator=_maybe() | _flag,
    message_expiry_interval=_maybe() | _u32,
    content_type=_maybe() | _text,
    response_topic=_maybe() | _text,
    correlation_data=_maybe() | st.binary(max_size=10),
    user_properties=_pairs,
)


@st.composite
def _publishes(draw: st.DrawFn) -> Publish:
    qos = draw(st.sampled_from([0, 1]))
    return Publish(
        topic=draw(_text),
        payload=draw(st.binary(max_size=200)),
        qos=qos,
        retain=draw(st.booleans()),
        dup=draw(st.booleans()) if qos else False,
        packet_id=draw(_packet_id) if qos else None,
        properties=draw(_publish_properties()),
    )


@st.composite
def _subscribes(draw: st.DrawFn) -> Subscribe:
    count = draw(st.integers(1, 8))
    topics = tuple((draw(_text), draw(st.sampled_from([0, 1, 2]))) for _ in range(count))
    options = tuple(draw(st.sampled_from([0, 0x04, 0x08, 0x10, 0x20, 0x2C])) for _ in range(count))
    identifiers = draw(st.lists(st.integers(1, 1000), max_size=1).map(tuple))
    return Subscribe(
        packet_id=draw(_packet_id),
        topics=topics,
        options=options,
        properties=Properties(subscription_identifiers=identifiers, user_properties=draw(_pairs)),
    )


_reasons = st.sampled_from([int(code) for code in ReasonCode])

# Packets after CONNECT (the decoder is already in MQTT 5 mode).
_packets = st.one_of(
    _publishes(),
    st.builds(
        Connack,
        return_code=_reasons,
        session_present=st.booleans(),
        properties=_connack_properties,
    ),
    st.builds(Puback, packet_id=_packet_id, reason_code=_reasons, properties=_ack_properties),
    _subscribes(),
    st.builds(
        Suback,
        packet_id=_packet_id,
        return_codes=st.lists(_reasons, min_size=1, max_size=8).map(tuple),
        properties=_ack_properties.map(lambda p: p or Properties()),
    ),
    st.builds(
        Unsubscribe,
        packet_id=_packet_id,
        topics=st.lists(_text, min_size=1, max_size=8).map(tuple),
        properties=st.builds(Properties, user_properties=_pairs),
    ),
    st.builds(
        Unsuback,
        packet_id=_packet_id,
        reason_codes=st.lists(_reasons, min_size=1, max_size=8).map(tuple),
        properties=_ack_properties.map(lambda p: p or Properties()),
    ),
    st.just(Pingreq()),
    st.just(Pingresp()),
    st.builds(Disconnect, reason_code=_reasons, properties=_ack_properties),
    st.builds(Auth, reason_code=st.sampled_from([0, 0x18, 0x19])),
)

_connects = st.builds(
    Connect,
    client_id=_text,
    keepalive=st.integers(0, 0xFFFF),
    clean_session=st.booleans(),
    username=st.none() | _text,
    password=st.none() | st.binary(max_size=10),  # MQTT 5 allows a password alone
    will=st.none()
    | st.builds(
        Will,
        topic=_text,
        payload=st.binary(max_size=30),
        qos=st.sampled_from([0, 1]),
        retain=st.booleans(),
        properties=_will_properties,
    ),
    protocol_level=st.just(5),
    properties=_connect_properties,
)


def _normalise(packet: Packet) -> Packet:
    """Absent and empty property sets are the same on the wire."""
    properties = getattr(packet, "properties", None)
    if properties is not None and not properties:
        return replace(packet, properties=None)  # type: ignore[type-var]
    return packet


@given(_connects, st.lists(_packets, max_size=6), st.integers(min_value=1, max_value=64))
def test_a_v5_session_round_trips_through_any_chunking(
    connect: Connect, packets: list[Packet], chunk: int
) -> None:
    # Given a 3.1.1-mode decoder (what the server starts with) and a v5 CONNECT
    wire = encode(connect) + b"".join(encode(packet) for packet in packets)
    decoder = StreamDecoder()
    decoded: list[Packet] = []
    # When the stream arrives in arbitrary pieces
    for start in range(0, len(wire), chunk):
        decoded.extend(decoder.feed(wire[start : start + chunk]))
    # Then every packet, properties included, comes back and the decoder is in v5 mode
    assert [_normalise(p) for p in decoded] == [_normalise(p) for p in [connect, *packets]]
    assert decoder.protocol_level == 5


def test_properties_keep_user_property_order_and_repeats() -> None:
    properties = Properties(
        content_type="application/json",
        user_properties=(("b", "2"), ("a", "1"), ("b", "3")),
    )
    packet = Publish(topic="t", payload=b"{}", properties=properties)
    [decoded] = StreamDecoder(protocol_level=5).feed(encode(packet))
    assert isinstance(decoded, Publish)
    assert decoded.properties == properties


def test_property_length_is_a_variable_byte_integer() -> None:
    # Given user properties longer than 127 bytes in total
    properties = Properties(user_properties=(("k", "v" * 200),))
    wire = mqtt5.encode_properties(properties)
    # Then the length takes two bytes (section 1.5.5)
    assert wire[0] & 0x80
    assert len(wire) == 2 + 1 + 2 + 1 + 2 + 200


def test_ack_with_success_and_no_properties_is_two_bytes() -> None:
    # Sections 3.4.2.1: reason 0 and no properties may be omitted.
    assert encode(Puback(7)) == bytes([0x40, 0x02, 0x00, 0x07])
    assert encode(Disconnect()) == bytes([0xE0, 0x00])
    [short] = StreamDecoder(protocol_level=5).feed(bytes([0x40, 0x03, 0x00, 0x07, 0x87]))
    assert short == Puback(7, 0x87)


def test_a_3_1_1_connect_leaves_the_decoder_in_3_1_1_mode() -> None:
    decoder = StreamDecoder()
    wire = encode_v3(Connect(client_id="c")) + encode_v3(Publish(topic="t", payload=b"x"))
    assert decoder.feed(wire) == [Connect(client_id="c"), Publish(topic="t", payload=b"x")]
    assert decoder.protocol_level == 4


@pytest.mark.parametrize("level", [2, 6, 255])
def test_an_unknown_protocol_level_still_decodes_to_a_connect(level: int) -> None:
    # Whatever follows the level, the broker must be able to answer the CONNECT.
    wire = bytes([0x10, 0x09, 0x00, 0x04]) + b"MQTT" + bytes([level, 0xFF, 0xFF])
    [packet] = StreamDecoder().feed(wire)
    assert isinstance(packet, Connect)
    assert packet.protocol_level == level


def test_auth_is_malformed_in_3_1_1() -> None:
    with pytest.raises(MqttProtocolError):
        StreamDecoder().feed(bytes([0xF0, 0x00]))


def _props(raw: bytes) -> bytes:
    return bytes([len(raw)]) + raw


def _publish_with(raw_properties: bytes) -> bytes:
    body = b"\x00\x01t" + _props(raw_properties)
    return bytes([0x30, len(body)]) + body


_STRING_A = b"\x00\x01a"


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        # duplicate Content Type
        (_publish_with(b"\x03" + _STRING_A + b"\x03" + _STRING_A), 0x82),
        # Session Expiry Interval is not a PUBLISH property
        (_publish_with(b"\x11\x00\x00\x00\x01"), 0x82),
        # unknown property identifier 0x7F
        (_publish_with(b"\x7f\x00"), 0x81),
        # Payload Format Indicator 2
        (_publish_with(b"\x01\x02"), 0x82),
        # Topic Alias 0
        (_publish_with(b"\x23\x00\x00"), 0x82),
        # Subscription Identifier 0
        (_publish_with(b"\x0b\x00"), 0x82),
        # a string running past the property length
        (_publish_with(b"\x03\x00\x05a"), 0x81),
        # property length past the end of the packet
        (bytes([0x30, 0x05, 0x00, 0x01, 0x74, 0x09, 0x01]), 0x81),
        # variable byte integer of 5 bytes as property identifier
        (_publish_with(b"\xff\xff\xff\xff\x01"), 0x81),
        # invalid UTF-8 in a user property
        (_publish_with(b"\x26\x00\x01\xc3\x00\x01a"), 0x81),
        # SUBSCRIBE options: reserved bit 6, Retain Handling 3, QoS 3
        (bytes([0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 0x61, 0x40]), 0x81),
        (bytes([0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 0x61, 0x30]), 0x81),
        (bytes([0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 0x61, 0x03]), 0x81),
        # SUBSCRIBE with two Subscription Identifiers
        (bytes([0x82, 0x0A, 0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02, 0x00, 0x01, 0x61]), 0x82),
        # SUBSCRIBE without filters
        (bytes([0x82, 0x03, 0x00, 0x01, 0x00]), 0x82),
        # PUBACK with trailing bytes after its properties
        (bytes([0x40, 0x05, 0x00, 0x01, 0x00, 0x00, 0xAA]), 0x81),
        # DISCONNECT with flags
        (bytes([0xE1, 0x00]), 0x81),
        # QoS 0 PUBLISH with DUP set (section 3.3.1.1, [MQTT-3.3.1-2])
        (bytes([0x38, 0x04, 0x00, 0x01, 0x61, 0x00]), 0x81),
    ],
)
def test_malformed_v5_input_raises_with_its_reason_code(wire: bytes, reason: int) -> None:
    with pytest.raises(MqttProtocolError) as raised:
        StreamDecoder(protocol_level=5).feed(wire)
    assert raised.value.reason_code == reason


def test_a_v5_connect_with_receive_maximum_0_is_a_protocol_error() -> None:
    properties = _props(b"\x21\x00\x00")
    body = b"\x00\x04MQTT\x05\x02\x00\x3c" + properties + b"\x00\x01c"
    with pytest.raises(MqttProtocolError) as raised:
        StreamDecoder().feed(bytes([0x10, len(body)]) + body)
    assert raised.value.reason_code == 0x82


def test_a_second_connect_is_a_protocol_error() -> None:
    decoder = StreamDecoder()
    decoder.feed(encode(Connect(client_id="c", protocol_level=5)))
    with pytest.raises(MqttProtocolError) as raised:
        decoder.feed(encode_v3(Connect(client_id="c")))
    assert raised.value.reason_code == 0x82


def test_oversized_packets_carry_reason_packet_too_large() -> None:
    decoder = StreamDecoder(max_packet_size=1000, protocol_level=5)
    with pytest.raises(MqttProtocolError) as raised:
        decoder.feed(bytes([0x30, 0xE9, 0x07]))
    assert raised.value.reason_code == ReasonCode.PACKET_TOO_LARGE


def test_four_byte_integers_are_big_endian() -> None:
    wire = mqtt5.encode_properties(Properties(message_expiry_interval=0x01020304))
    assert wire == bytes([5, 0x02]) + struct.pack("!I", 0x01020304)


@given(st.integers(0x10, 0xFF), st.binary(max_size=64))
def test_arbitrary_bodies_decode_or_raise_protocol_error_only(first: int, body: bytes) -> None:
    # Whatever a peer sends, the v5 decoder answers with a packet or
    # MqttProtocolError (which the broker turns into DISCONNECT), never a crash.
    reason = 0x80
    try:
        mqtt5.decode_packet(first, body)
    except MqttProtocolError as exc:
        reason = exc.reason_code
    assert 0x80 <= reason <= 0xFF


@given(_packets, st.data())
def test_mutated_valid_packets_decode_or_raise_protocol_error_only(
    packet: Packet, data: st.DataObject
) -> None:
    wire = bytearray(encode(packet))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(wire) - 1))
        wire[index] = data.draw(st.integers(0, 255))
    with contextlib.suppress(MqttProtocolError):
        StreamDecoder(protocol_level=5).feed(bytes(wire))
