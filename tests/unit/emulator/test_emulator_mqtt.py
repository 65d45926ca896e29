"""The MQTT 3.1.1 codec: round trips, stream splitting, malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotnotify_emulator.mqtt import (
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
    encode,
)

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40,
)
_packet_id = st.integers(min_value=1, max_value=0xFFFF)


@st.composite
def _publishes(draw: st.DrawFn) -> Publish:
    qos = draw(st.sampled_from([0, 1]))
    return Publish(
        topic=draw(_text),
        payload=draw(st.binary(max_size=300)),
        qos=qos,
        retain=draw(st.booleans()),
        dup=draw(st.booleans()) if qos else False,
        packet_id=draw(_packet_id) if qos else None,
    )


_packets = st.one_of(
    _publishes(),
    st.builds(
        Connect,
        client_id=_text,
        keepalive=st.integers(0, 0xFFFF),
        clean_session=st.booleans(),
        username=st.none() | _text,
        password=st.none(),
        will=st.none()
        | st.builds(
            Will,
            topic=_text,
            payload=st.binary(max_size=50),
            qos=st.sampled_from([0, 1]),
            retain=st.booleans(),
        ),
    ),
    st.builds(Connack, return_code=st.integers(0, 5), session_present=st.booleans()),
    st.builds(Puback, packet_id=_packet_id),
    st.builds(
        Subscribe,
        packet_id=_packet_id,
        topics=st.lists(st.tuples(_text, st.sampled_from([0, 1, 2])), min_size=1, max_size=8).map(
            tuple
        ),
    ),
    st.builds(
        Suback,
        packet_id=_packet_id,
        return_codes=st.lists(st.sampled_from([0, 1, 0x80]), min_size=1, max_size=8).map(tuple),
    ),
    st.builds(
        Unsubscribe,
        packet_id=_packet_id,
        topics=st.lists(_text, min_size=1, max_size=8).map(tuple),
    ),
    st.builds(Unsuback, packet_id=_packet_id),
    st.just(Pingreq()),
    st.just(Pingresp()),
    st.just(Disconnect()),
)


@given(st.lists(_packets, min_size=1, max_size=6), st.integers(min_value=1, max_value=64))
def test_any_packet_sequence_round_trips_through_any_chunking(
    packets: list[Packet], chunk: int
) -> None:
    wire = b"".join(encode(packet) for packet in packets)
    decoder = StreamDecoder()
    decoded: list[Packet] = []
    for start in range(0, len(wire), chunk):
        decoded.extend(decoder.feed(wire[start : start + chunk]))
    assert decoded == packets


def test_connect_with_password_round_trips() -> None:
    packet = Connect(client_id="c", username="?SDK=Python&Version=1", password=b"\x00\x01")
    assert StreamDecoder().feed(encode(packet)) == [packet]


def test_large_remaining_length_uses_multi_byte_varint() -> None:
    packet = Publish(topic="t", payload=b"x" * 200_000)
    wire = encode(packet)
    assert wire[1] & 0x80
    assert wire[2] & 0x80
    assert StreamDecoder().feed(wire) == [packet]


@pytest.mark.parametrize(
    "wire",
    [
        bytes([0x00, 0x00]),  # reserved packet type 0
        bytes([0xF0, 0x00]),  # reserved packet type 15
        bytes([0x82, 0x02, 0x00, 0x01]),  # SUBSCRIBE without filters
        bytes([0x80, 0x05, 0x00, 0x01, 0x00, 0x01, 0x61]),  # SUBSCRIBE with flags 0
        bytes([0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x03]),  # QoS byte 3
        bytes([0x82, 0x06, 0x00, 0x00, 0x00, 0x01, 0x61, 0x00]),  # packet id 0
        bytes([0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01]),  # PUBLISH QoS 3
        bytes([0x38, 0x03, 0x00, 0x01, 0x61]),  # QoS 0 with DUP [MQTT-3.3.1-2]
        bytes([0x32, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00]),  # QoS 1 with packet id 0
        bytes([0x30, 0x04, 0x00, 0x02, 0xC3, 0x28]),  # invalid UTF-8 topic
        bytes([0x30, 0x03, 0x00, 0x01, 0x00]),  # NUL in topic
        bytes([0xC0, 0x01, 0x00]),  # PINGREQ with a body
        bytes([0xC1, 0x00]),  # PINGREQ with flags
        bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),  # 5-byte remaining length
        bytes([0x10, 0x0C, 0x00, 0x04]) + b"MQTT" + bytes([0x04, 0x01, 0x00, 0x3C, 0, 0]),
        bytes([0x10, 0x0C, 0x00, 0x04]) + b"MQTT" + bytes([0x04, 0x18, 0x00, 0x3C, 0, 0]),
    ],
)
def test_malformed_input_raises_protocol_error(wire: bytes) -> None:
    with pytest.raises(MqttProtocolError):
        StreamDecoder().feed(wire)


def test_oversized_packets_are_refused_before_buffering() -> None:
    decoder = StreamDecoder(max_packet_size=1000)
    with pytest.raises(MqttProtocolError):
        decoder.feed(bytes([0x30, 0xE9, 0x07]))  # announces 1001 bytes


def test_encoder_refuses_qos1_without_packet_id() -> None:
    with pytest.raises(ValueError, match="packet id"):
        encode(Publish(topic="t", qos=1))
