"""The MQTT 5 codec (both directions), beside the 3.1.1 one in :mod:`.mqtt`.

Source: OASIS MQTT Version 5.0 (07 March 2019), sections 1.5 (data
representation), 2.2.2 (properties), 2.4 (reason codes) and 3 (packets).
Framing (fixed header, remaining length) is the same as 3.1.1, so
:class:`~iotnotify_emulator.mqtt.StreamDecoder` splits the stream and calls
:func:`decode_packet` here once a CONNECT for level 5 has gone through it.
The packet dataclasses are shared with 3.1.1 (they carry ``properties`` and
reason codes that 3.1.1 leaves empty), so the broker handles one set of types.

What the codec enforces (each violation is :class:`MqttProtocolError`, whose
``reason_code`` the broker sends in DISCONNECT before closing):

* property lengths and variable byte integers (at most 4 bytes, section 1.5.5);
* a property only in the packets section 2.2.2.2's table allows it in;
* no property twice except User Property and (in PUBLISH) Subscription
  Identifier (sections 3.x.2.x: "It is a Protocol Error to include ... more
  than once");
* value ranges: byte flags 0/1, Receive Maximum / Maximum Packet Size /
  Topic Alias / Subscription Identifier not 0, Maximum QoS 0/1;
* subscription options: reserved bits 6-7 zero, QoS < 3, Retain Handling < 3.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Final

from iotnotify_emulator.mqtt import (
    _REQUIRED_FLAGS as _V311_REQUIRED_FLAGS,
)
from iotnotify_emulator.mqtt import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    MqttProtocolError,
    Packet,
    PacketType,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
    _binary,
    _frame,
    _QosTwoFlow,
    _Reader,
    _string,
    _varint,
    check_publish_dup,
)

__all__ = [
    "PROTOCOL_LEVEL",
    "Properties",
    "PropertyId",
    "ReasonCode",
    "decode_connect_after_level",
    "decode_packet",
    "decode_properties",
    "encode",
    "encode_properties",
]

PROTOCOL_LEVEL: Final = 5


class ReasonCode(IntEnum):
    """MQTT 5 reason codes (section 2.4) the emulator sends or reads."""

    SUCCESS = 0x00
    GRANTED_QOS_1 = 0x01
    DISCONNECT_WITH_WILL = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USERNAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


class PropertyId(IntEnum):
    """Property identifiers (section 2.2.2.2)."""

    PAYLOAD_FORMAT_INDICATOR = 0x01
    MESSAGE_EXPIRY_INTERVAL = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_IDENTIFIER = 0x0B
    SESSION_EXPIRY_INTERVAL = 0x11
    ASSIGNED_CLIENT_IDENTIFIER = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTHENTICATION_METHOD = 0x15
    AUTHENTICATION_DATA = 0x16
    REQUEST_PROBLEM_INFORMATION = 0x17
    WILL_DELAY_INTERVAL = 0x18
    REQUEST_RESPONSE_INFORMATION = 0x19
    RESPONSE_INFORMATION = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


@dataclass(frozen=True, slots=True)
class Properties:
    """Every MQTT 5 property; None (or empty) means absent.

    Units: intervals in seconds, sizes in bytes. ``user_properties`` keeps
    order and repeats (section 3.3.2.3.7: "the order ... MUST be maintained").
    ``subscription_identifiers`` may repeat in PUBLISH only.
    """

    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_identifiers: tuple[int, ...] = ()
    session_expiry_interval: int | None = None
    assigned_client_identifier: str | None = None
    server_keep_alive: int | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    request_problem_information: int | None = None
    will_delay_interval: int | None = None
    request_response_information: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int | None = None
    topic_alias: int | None = None
    maximum_qos: int | None = None
    retain_available: int | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    maximum_packet_size: int | None = None
    wildcard_subscription_available: int | None = None
    subscription_identifier_available: int | None = None
    shared_subscription_available: int | None = None

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) not in (None, ()) for f in fields(self))


_EMPTY: Final = Properties()

# Wire type of each property (section 2.2.2.2).
_BYTE, _U16, _U32, _VARINT, _STRING, _BINARY, _PAIR = range(7)

_C, _CA, _P, _PA, _PR, _S, _SA, _U, _UA, _D, _AU, _W = (
    PacketType.CONNECT,
    PacketType.CONNACK,
    PacketType.PUBLISH,
    PacketType.PUBACK,
    PacketType.PUBREC,  # stands for PUBREC/PUBREL/PUBCOMP
    PacketType.SUBSCRIBE,
    PacketType.SUBACK,
    PacketType.UNSUBSCRIBE,
    PacketType.UNSUBACK,
    PacketType.DISCONNECT,
    PacketType.AUTH,
    0,  # will properties (part of CONNECT's payload)
)
_ACKS: Final = frozenset({_PA, _PR, _SA, _UA})
_ALL: Final = frozenset({_C, _CA, _P, _PA, _PR, _S, _SA, _U, _UA, _D, _AU, _W})


@dataclass(frozen=True, slots=True)
class _Spec:
    field: str
    kind: int
    allowed: frozenset[int]


_SPECS: Final[dict[int, _Spec]] = {
    PropertyId.PAYLOAD_FORMAT_INDICATOR: _Spec(
        "payload_format_indicator", _BYTE, frozenset({_P, _W})
    ),
    PropertyId.MESSAGE_EXPIRY_INTERVAL: _Spec("message_expiry_interval", _U32, frozenset({_P, _W})),
    PropertyId.CONTENT_TYPE: _Spec("content_type", _STRING, frozenset({_P, _W})),
    PropertyId.RESPONSE_TOPIC: _Spec("response_topic", _STRING, frozenset({_P, _W})),
    PropertyId.CORRELATION_DATA: _Spec("correlation_data", _BINARY, frozenset({_P, _W})),
    PropertyId.SUBSCRIPTION_IDENTIFIER: _Spec(
        "subscription_identifiers", _VARINT, frozenset({_P, _S})
    ),
    PropertyId.SESSION_EXPIRY_INTERVAL: _Spec(
        "session_expiry_interval", _U32, frozenset({_C, _CA, _D})
    ),
    PropertyId.ASSIGNED_CLIENT_IDENTIFIER: _Spec(
        "assigned_client_identifier", _STRING, frozenset({_CA})
    ),
    PropertyId.SERVER_KEEP_ALIVE: _Spec("server_keep_alive", _U16, frozenset({_CA})),
    PropertyId.AUTHENTICATION_METHOD: _Spec(
        "authentication_method", _STRING, frozenset({_C, _CA, _AU})
    ),
    PropertyId.AUTHENTICATION_DATA: _Spec(
        "authentication_data", _BINARY, frozenset({_C, _CA, _AU})
    ),
    PropertyId.REQUEST_PROBLEM_INFORMATION: _Spec(
        "request_problem_information", _BYTE, frozenset({_C})
    ),
    PropertyId.WILL_DELAY_INTERVAL: _Spec("will_delay_interval", _U32, frozenset({_W})),
    PropertyId.REQUEST_RESPONSE_INFORMATION: _Spec(
        "request_response_information", _BYTE, frozenset({_C})
    ),
    PropertyId.RESPONSE_INFORMATION: _Spec("response_information", _STRING, frozenset({_CA})),
    PropertyId.SERVER_REFERENCE: _Spec("server_reference", _STRING, frozenset({_CA, _D})),
    PropertyId.REASON_STRING: _Spec("reason_string", _STRING, frozenset({_CA, _D, _AU}) | _ACKS),
    PropertyId.RECEIVE_MAXIMUM: _Spec("receive_maximum", _U16, frozenset({_C, _CA})),
    PropertyId.TOPIC_ALIAS_MAXIMUM: _Spec("topic_alias_maximum", _U16, frozenset({_C, _CA})),
    PropertyId.TOPIC_ALIAS: _Spec("topic_alias", _U16, frozenset({_P})),
    PropertyId.MAXIMUM_QOS: _Spec("maximum_qos", _BYTE, frozenset({_CA})),
    PropertyId.RETAIN_AVAILABLE: _Spec("retain_available", _BYTE, frozenset({_CA})),
    PropertyId.USER_PROPERTY: _Spec("user_properties", _PAIR, _ALL),
    PropertyId.MAXIMUM_PACKET_SIZE: _Spec("maximum_packet_size", _U32, frozenset({_C, _CA})),
    PropertyId.WILDCARD_SUBSCRIPTION_AVAILABLE: _Spec(
        "wildcard_subscription_available", _BYTE, frozenset({_CA})
    ),
    PropertyId.SUBSCRIPTION_IDENTIFIER_AVAILABLE: _Spec(
        "subscription_identifier_available", _BYTE, frozenset({_CA})
    ),
    PropertyId.SHARED_SUBSCRIPTION_AVAILABLE: _Spec(
        "shared_subscription_available", _BYTE, frozenset({_CA})
    ),
}
_BY_FIELD: Final = {spec.field: (pid, spec) for pid, spec in _SPECS.items()}
# Byte properties whose only legal values are 0 and 1 (Maximum QoS included:
# section 3.2.2.3.4, "a value of 0 or 1").
_FLAGS: Final = frozenset(
    {
        PropertyId.PAYLOAD_FORMAT_INDICATOR,
        PropertyId.REQUEST_PROBLEM_INFORMATION,
        PropertyId.REQUEST_RESPONSE_INFORMATION,
        PropertyId.MAXIMUM_QOS,
        PropertyId.RETAIN_AVAILABLE,
        PropertyId.WILDCARD_SUBSCRIPTION_AVAILABLE,
        PropertyId.SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        PropertyId.SHARED_SUBSCRIPTION_AVAILABLE,
    }
)
# "It is a Protocol Error to include ... a value of 0."
_NONZERO: Final = frozenset(
    {
        PropertyId.RECEIVE_MAXIMUM,
        PropertyId.MAXIMUM_PACKET_SIZE,
        PropertyId.TOPIC_ALIAS,
        PropertyId.SUBSCRIPTION_IDENTIFIER,
    }
)


# --- properties -----------------------------------------------------------------


def _read_varint(reader: _Reader) -> int:
    """A variable byte integer (section 1.5.5): at most 4 bytes."""
    value = 0
    for shift in (0, 7, 14, 21):
        byte = reader.u8()
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
    raise MqttProtocolError("variable byte integer longer than 4 bytes")


def _u32(reader: _Reader) -> int:
    value: int = struct.unpack("!I", reader.take(4))[0]
    return value


def decode_properties(reader: _Reader, packet: int) -> Properties:
    """Read a property length and the properties of ``packet`` (a PacketType, 0 for will).

    Raises :class:`MqttProtocolError` (0x81 malformed, 0x82 protocol error).
    """
    length = _read_varint(reader)
    end = reader.pos + length
    if end > len(reader.data):
        raise MqttProtocolError("property length runs past the packet")
    values: dict[str, object] = {}
    pairs: list[tuple[str, str]] = []
    identifiers: list[int] = []
    allowed_type = _PR if packet in (PacketType.PUBREL, PacketType.PUBCOMP) else packet
    while reader.pos < end:
        pid = _read_varint(reader)
        spec = _SPECS.get(pid)
        if spec is None:
            raise MqttProtocolError(f"unknown property identifier {pid:#x}")
        if allowed_type not in spec.allowed:
            raise MqttProtocolError(
                f"property {PropertyId(pid).name} is not allowed here", reason_code=0x82
            )
        value: object
        match spec.kind:
            case 0:  # _BYTE
                value = reader.u8()
            case 1:  # _U16
                value = reader.u16()
            case 2:  # _U32
                value = _u32(reader)
            case 3:  # _VARINT
                value = _read_varint(reader)
            case 4:  # _STRING
                value = reader.string()
            case 5:  # _BINARY
                value = reader.binary()
            case _:  # _PAIR
                pairs.append((reader.string(), reader.string()))
                continue
        if pid in _FLAGS and value not in (0, 1):
            raise MqttProtocolError(
                f"property {PropertyId(pid).name} must be 0 or 1, got {value!r}", reason_code=0x82
            )
        if pid in _NONZERO and value == 0:
            raise MqttProtocolError(
                f"property {PropertyId(pid).name} must not be 0", reason_code=0x82
            )
        if pid == PropertyId.SUBSCRIPTION_IDENTIFIER:
            assert isinstance(value, int)
            if identifiers and packet != PacketType.PUBLISH:
                raise MqttProtocolError("Subscription Identifier twice", reason_code=0x82)
            identifiers.append(value)
            continue
        if spec.field in values:
            raise MqttProtocolError(
                f"property {PropertyId(pid).name} included twice", reason_code=0x82
            )
        values[spec.field] = value
    if reader.pos != end:
        raise MqttProtocolError("a property runs past the property length")
    if not values and not pairs and not identifiers:
        return _EMPTY
    return Properties(
        **values,  # type: ignore[arg-type]  # keys and types come from _SPECS
        user_properties=tuple(pairs),
        subscription_identifiers=tuple(identifiers),
    )


def encode_properties(properties: Properties | None) -> bytes:
    """Property length plus properties, in identifier order (user properties in order)."""
    if properties is None:
        return b"\x00"
    out = bytearray()
    for name, (pid, spec) in _BY_FIELD.items():
        value = getattr(properties, name)
        if value is None or value == ():
            continue
        ident = _varint(pid)
        match spec.kind:
            case 0:
                out += ident + bytes([value])
            case 1:
                out += ident + struct.pack("!H", value)
            case 2:
                out += ident + struct.pack("!I", value)
            case 3:
                for number in value:
                    out += ident + _varint(number)
            case 4:
                out += ident + _string(value)
            case 5:
                out += ident + _binary(value)
            case _:
                for key, text in value:
                    out += ident + _string(key) + _string(text)
    return _varint(len(out)) + bytes(out)


# --- encoding -------------------------------------------------------------------


def _ack(
    kind: PacketType, flags: int, packet_id: int, reason: int, props: Properties | None
) -> bytes:
    # Sections 3.4.2.1/3.4.2.2: reason 0 and no properties may be left out.
    body = struct.pack("!H", packet_id)
    if reason or props:
        body += bytes([reason])
        if props:
            body += encode_properties(props)
    return _frame(kind, flags, body)


def _short(kind: PacketType, reason: int, props: Properties | None) -> bytes:
    # DISCONNECT/AUTH (sections 3.14.2.1, 3.15.2.1): empty body means reason 0.
    if not reason and not props:
        return _frame(kind, 0, b"")
    return _frame(kind, 0, bytes([reason]) + (encode_properties(props) if props else b""))


def encode(packet: Packet) -> bytes:
    """The MQTT 5 wire bytes of one packet.

    Raises ValueError for values the wire cannot carry (QoS>0 PUBLISH
    without a packet id, strings over 65535 bytes).
    """
    match packet:
        case Publish():
            flags = (packet.dup << 3) | (packet.qos << 1) | int(packet.retain)
            body = _string(packet.topic)
            if packet.qos:
                if not packet.packet_id:
                    raise ValueError("a QoS>0 PUBLISH needs a packet id")
                body += struct.pack("!H", packet.packet_id)
            body += encode_properties(packet.properties)
            return _frame(PacketType.PUBLISH, flags, body + packet.payload)
        case Connect():
            flags = int(packet.clean_session) << 1
            payload = _string(packet.client_id)
            if packet.will is not None:
                will = packet.will
                flags |= 0x04 | (will.qos << 3) | (int(will.retain) << 5)
                payload += (
                    encode_properties(will.properties) + _string(will.topic) + _binary(will.payload)
                )
            if packet.username is not None:
                flags |= 0x80
                payload += _string(packet.username)
            if packet.password is not None:
                flags |= 0x40
                payload += _binary(packet.password)
            header = (
                _string(packet.protocol_name)
                + bytes([packet.protocol_level, flags])
                + struct.pack("!H", packet.keepalive)
                + encode_properties(packet.properties)
            )
            return _frame(PacketType.CONNECT, 0, header + payload)
        case Connack():
            body = bytes([int(packet.session_present), packet.return_code])
            return _frame(PacketType.CONNACK, 0, body + encode_properties(packet.properties))
        case Puback():
            return _ack(
                PacketType.PUBACK, 0, packet.packet_id, packet.reason_code, packet.properties
            )
        case Subscribe():
            options = packet.options or (0,) * len(packet.topics)
            body = struct.pack("!H", packet.packet_id) + encode_properties(packet.properties)
            body += b"".join(
                _string(name) + bytes([qos | extra])
                for (name, qos), extra in zip(packet.topics, options, strict=True)
            )
            return _frame(PacketType.SUBSCRIBE, 2, body)
        case Suback():
            body = struct.pack("!H", packet.packet_id) + encode_properties(packet.properties)
            return _frame(PacketType.SUBACK, 0, body + bytes(packet.return_codes))
        case Unsubscribe():
            body = struct.pack("!H", packet.packet_id) + encode_properties(packet.properties)
            body += b"".join(_string(name) for name in packet.topics)
            return _frame(PacketType.UNSUBSCRIBE, 2, body)
        case Unsuback():
            body = struct.pack("!H", packet.packet_id) + encode_properties(packet.properties)
            return _frame(PacketType.UNSUBACK, 0, body + bytes(packet.reason_codes))
        case Pingreq():
            return _frame(PacketType.PINGREQ, 0, b"")
        case Pingresp():
            return _frame(PacketType.PINGRESP, 0, b"")
        case Disconnect():
            return _short(PacketType.DISCONNECT, packet.reason_code, packet.properties)
        case Auth():
            return _short(PacketType.AUTH, packet.reason_code, packet.properties)
        case _QosTwoFlow():
            flags = 2 if packet.kind == PacketType.PUBREL else 0
            return _frame(packet.kind, flags, struct.pack("!H", packet.packet_id))
    raise TypeError(f"cannot encode {packet!r}")  # pragma: no cover - exhaustive match


# --- decoding -------------------------------------------------------------------

# Fixed-header flag bits (section 2.1.3; PUBLISH is free): 3.1.1's, plus AUTH.
_REQUIRED_FLAGS: Final = {**_V311_REQUIRED_FLAGS, PacketType.AUTH: 0}


def decode_connect_after_level(reader: _Reader, protocol_name: str) -> Connect:
    """The rest of a level-5 CONNECT (section 3.1), after name and level.

    Unlike 3.1.1, a password without a username is allowed (section 3.1.2.9).
    """
    flags = reader.u8()
    if flags & 0x01:
        raise MqttProtocolError("CONNECT reserved flag is set")
    keepalive = reader.u16()
    properties = decode_properties(reader, PacketType.CONNECT)
    client_id = reader.string()
    will: Will | None = None
    will_qos = (flags >> 3) & 0x03
    if flags & 0x04:
        if will_qos == 3:
            raise MqttProtocolError("will QoS 3 is invalid")
        will_properties = decode_properties(reader, 0)
        topic = reader.string()
        payload = reader.binary()
        will = Will(
            topic=topic,
            payload=payload,
            qos=will_qos,
            retain=bool(flags & 0x20),
            properties=will_properties,
        )
    elif flags & 0x38:
        raise MqttProtocolError("will QoS/retain set without the will flag")
    username = reader.string() if flags & 0x80 else None
    password = reader.binary() if flags & 0x40 else None
    reader.finish()
    return Connect(
        client_id=client_id,
        keepalive=keepalive,
        clean_session=bool(flags & 0x02),
        username=username,
        password=password,
        will=will,
        protocol_name=protocol_name,
        protocol_level=PROTOCOL_LEVEL,
        properties=properties,
    )


def _reason_and_properties(reader: _Reader, kind: PacketType) -> tuple[int, Properties | None]:
    if reader.done:
        return 0, None
    reason = reader.u8()
    if reader.done:
        return reason, None
    return reason, decode_properties(reader, kind)


def _subscribe(reader: _Reader, max_filters: int | None) -> Subscribe:
    packet_id = reader.packet_id()
    properties = decode_properties(reader, PacketType.SUBSCRIBE)
    topics: list[tuple[str, int]] = []
    options: list[int] = []
    while not reader.done:
        if max_filters is not None and len(topics) > max_filters:
            break  # over the broker's limit already (see mqtt.decode_packet)
        name = reader.string()
        byte = reader.u8()
        # Section 3.8.3.1: bits 6-7 reserved; QoS 3 and Retain Handling 3 malformed.
        if byte & 0xC0 or byte & 0x03 == 3 or (byte >> 4) & 0x03 == 3:
            raise MqttProtocolError(f"SUBSCRIBE options byte {byte:#x} is malformed")
        topics.append((name, byte & 0x03))
        options.append(byte & 0x3C)
    if not topics:
        raise MqttProtocolError("SUBSCRIBE without topic filters", reason_code=0x82)
    return Subscribe(packet_id, tuple(topics), tuple(options), properties)


def decode_packet(first_byte: int, body: bytes, *, max_filters: int | None = None) -> Packet:
    """Decode one MQTT 5 packet from its first byte and its body (after the length).

    ``max_filters`` as in :func:`iotnotify_emulator.mqtt.decode_packet`.
    """
    kind = PacketType(first_byte >> 4) if first_byte >> 4 else None
    if kind is None:
        raise MqttProtocolError("reserved packet type 0")
    flags = first_byte & 0x0F
    required = _REQUIRED_FLAGS.get(kind)
    if required is not None and flags != required:
        raise MqttProtocolError(f"{kind.name} with invalid fixed-header flags {flags:#x}")
    reader = _Reader(body)
    packet: Packet
    match kind:
        case PacketType.CONNECT:
            name = reader.string()
            level = reader.u8()
            if level != PROTOCOL_LEVEL:
                raise MqttProtocolError("second CONNECT", reason_code=0x82)
            return decode_connect_after_level(reader, name)
        case PacketType.PUBLISH:
            qos = (flags >> 1) & 0x03
            if qos == 3:
                raise MqttProtocolError("PUBLISH with QoS 3")
            check_publish_dup(flags)  # 0x81 (section 3.3.1.1, [MQTT-3.3.1-2])
            topic = reader.string()
            packet_id = reader.packet_id() if qos else None
            properties = decode_properties(reader, PacketType.PUBLISH)
            return Publish(
                topic=topic,
                payload=reader.rest(),
                qos=qos,
                retain=bool(flags & 0x01),
                dup=bool(flags & 0x08),
                packet_id=packet_id,
                properties=properties,
            )
        case PacketType.SUBSCRIBE:
            return _subscribe(reader, max_filters)
        case PacketType.UNSUBSCRIBE:
            packet_id = reader.packet_id()
            properties = decode_properties(reader, PacketType.UNSUBSCRIBE)
            names: list[str] = []
            while not reader.done:
                names.append(reader.string())
            if not names:
                raise MqttProtocolError("UNSUBSCRIBE without topic filters", reason_code=0x82)
            return Unsubscribe(packet_id, tuple(names), properties)
        case PacketType.CONNACK:
            ack_flags = reader.u8()
            if ack_flags & 0xFE:
                raise MqttProtocolError("CONNACK reserved flags set")
            code = reader.u8()
            properties = decode_properties(reader, PacketType.CONNACK)
            packet = Connack(code, bool(ack_flags & 1), properties)
        case PacketType.PUBACK:
            packet_id = reader.packet_id()
            reason, props = _reason_and_properties(reader, PacketType.PUBACK)
            packet = Puback(packet_id, reason, props)
        case PacketType.SUBACK:
            packet_id = reader.packet_id()
            properties = decode_properties(reader, PacketType.SUBACK)
            return Suback(packet_id, tuple(reader.rest()), properties)
        case PacketType.UNSUBACK:
            packet_id = reader.packet_id()
            properties = decode_properties(reader, PacketType.UNSUBACK)
            return Unsuback(packet_id, tuple(reader.rest()), properties)
        case PacketType.PUBREC | PacketType.PUBREL | PacketType.PUBCOMP:
            packet_id = reader.packet_id()
            _reason_and_properties(reader, kind)
            packet = _QosTwoFlow(kind, packet_id)
        case PacketType.PINGREQ:
            packet = Pingreq()
        case PacketType.PINGRESP:
            packet = Pingresp()
        case PacketType.DISCONNECT:
            reason, props = _reason_and_properties(reader, PacketType.DISCONNECT)
            packet = Disconnect(reason, props)
        case PacketType.AUTH:
            reason, props = _reason_and_properties(reader, PacketType.AUTH)
            packet = Auth(reason, props)
    reader.finish()
    return packet
