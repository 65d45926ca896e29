"""A small MQTT 3.1.1 codec (both directions), written by hand; MQTT 5 is in
:mod:`iotnotify_emulator.mqtt5`, which shares these packet types and framing.

Why hand-written: the emulator has to act on every packet the way AWS IoT
Core does (authorise CONNECT, SUBSCRIBE and PUBLISH, refuse QoS 2, enforce
IoT's limits) inside an aiohttp WebSocket handler. amqtt was evaluated and
rejected (its broker owns the transport and the auth plugins cannot see the
WebSocket upgrade), mosquitto offers no hook on the upgrade, and the client
libraries (paho, gmqtt) only encode the client side. MQTT 3.1.1 framing is
small: a fixed header, a variable-length "remaining length" and a handful of
packet bodies, so a typed codec of a few hundred lines is cheaper to trust
than an adapter around someone else's broker.

The codec is strict about what the spec calls malformed (reserved flag bits,
packet id 0, bad UTF-8, NUL in strings): the broker closes the connection on
:class:`MqttProtocolError`, as MQTT 3.1.1 section 4.8 requires. Encoders for
every packet let tests and benchmarks speak raw MQTT to the emulator.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # mqtt5 imports this module; the property type is only annotated here
    from iotnotify_emulator.mqtt5 import Properties

__all__ = [
    "MAX_REMAINING_LENGTH",
    "SUBACK_FAILURE",
    "Auth",
    "Connack",
    "ConnackCode",
    "Connect",
    "Disconnect",
    "MqttProtocolError",
    "Packet",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "Puback",
    "Publish",
    "StreamDecoder",
    "Suback",
    "Subscribe",
    "Unsuback",
    "Unsubscribe",
    "Will",
    "check_publish_dup",
    "decode_packet",
    "encode",
]

# The largest remaining length the 4-byte varint can express (spec 2.2.3).
MAX_REMAINING_LENGTH: Final = 268_435_455
SUBACK_FAILURE: Final = 0x80


class MqttProtocolError(Exception):
    """The peer sent something MQTT calls malformed; close the connection.

    ``reason_code`` is the MQTT 5 reason code a v5 peer is told in DISCONNECT
    before the close (0x81 Malformed Packet, 0x82 Protocol Error, 0x95 Packet
    too large, ...); a 3.1.1 peer is just disconnected.
    """

    def __init__(self, message: str, reason_code: int = 0x81) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15  # MQTT 5 only


class ConnackCode(IntEnum):
    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USERNAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties | None = None  # MQTT 5 will properties


@dataclass(frozen=True, slots=True)
class Connect:
    client_id: str
    keepalive: int = 60
    clean_session: bool = True
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    protocol_name: str = "MQTT"
    protocol_level: int = 4
    # MQTT 5: ``clean_session`` carries the Clean Start bit (same flag bit).
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Connack:
    """``return_code`` is the 3.1.1 return code, or the MQTT 5 reason code."""

    return_code: int = ConnackCode.ACCEPTED
    session_present: bool = False
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: Properties | None = None
    # Not on the wire: when the broker received a message with an MQTT 5
    # Message Expiry Interval (time.monotonic()), so a copy that waits (in a
    # persistent session, behind the in-flight limit) is sent with the time
    # left, or not at all once expired.
    received_at: float | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Puback:
    packet_id: int
    reason_code: int = 0  # MQTT 5
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Subscribe:
    """``topics`` are (filter, QoS); MQTT 5 puts the other option bits
    (No Local 0x04, Retain As Published 0x08, Retain Handling 0x30) in
    ``options``, one int per filter (empty for 3.1.1)."""

    packet_id: int
    topics: tuple[tuple[str, int], ...]
    options: tuple[int, ...] = ()
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Suback:
    """``return_codes``: 3.1.1 return codes, or MQTT 5 reason codes."""

    packet_id: int
    return_codes: tuple[int, ...]
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    packet_id: int
    topics: tuple[str, ...]
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Unsuback:
    packet_id: int
    reason_codes: tuple[int, ...] = ()  # MQTT 5 only
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Pingreq:
    pass


@dataclass(frozen=True, slots=True)
class Pingresp:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason_code: int = 0  # MQTT 5 only (both directions there)
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Auth:
    """MQTT 5 enhanced authentication; decoded only so the broker can refuse it."""

    reason_code: int = 0
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class _QosTwoFlow:
    """PUBREC/PUBREL/PUBCOMP: decoded only so the broker can refuse them."""

    kind: PacketType
    packet_id: int


Packet = (
    Connect
    | Connack
    | Publish
    | Puback
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
    | Auth
    | _QosTwoFlow
)

# Fixed-header flag bits the spec mandates (section 2.2.2); PUBLISH is free.
_REQUIRED_FLAGS: Final = {
    PacketType.CONNECT: 0,
    PacketType.CONNACK: 0,
    PacketType.PUBACK: 0,
    PacketType.PUBREC: 0,
    PacketType.PUBREL: 2,
    PacketType.PUBCOMP: 0,
    PacketType.SUBSCRIBE: 2,
    PacketType.SUBACK: 0,
    PacketType.UNSUBSCRIBE: 2,
    PacketType.UNSUBACK: 0,
    PacketType.PINGREQ: 0,
    PacketType.PINGRESP: 0,
    PacketType.DISCONNECT: 0,
}


# --- encoding -----------------------------------------------------------------


def _varint(value: int) -> bytes:
    if not 0 <= value <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {value} out of range")
    out = bytearray()
    while True:
        byte = value % 128
        value //= 128
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _binary(raw)


def _binary(raw: bytes) -> bytes:
    if len(raw) > 0xFFFF:
        raise ValueError("MQTT strings are at most 65535 bytes")
    return struct.pack("!H", len(raw)) + raw


def _frame(kind: PacketType, flags: int, body: bytes) -> bytes:
    return bytes([(kind << 4) | flags]) + _varint(len(body)) + body


def encode(packet: Packet) -> bytes:
    """The wire bytes of one packet."""
    match packet:
        case Publish():
            flags = (packet.dup << 3) | (packet.qos << 1) | int(packet.retain)
            body = _string(packet.topic)
            if packet.qos:
                if not packet.packet_id:
                    raise ValueError("a QoS>0 PUBLISH needs a packet id")
                body += struct.pack("!H", packet.packet_id)
            return _frame(PacketType.PUBLISH, flags, body + packet.payload)
        case Connect():
            flags = int(packet.clean_session) << 1
            payload = _string(packet.client_id)
            if packet.will is not None:
                flags |= 0x04 | (packet.will.qos << 3) | (int(packet.will.retain) << 5)
                payload += _string(packet.will.topic) + _binary(packet.will.payload)
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
            )
            return _frame(PacketType.CONNECT, 0, header + payload)
        case Connack():
            return _frame(
                PacketType.CONNACK, 0, bytes([int(packet.session_present), packet.return_code])
            )
        case Puback():
            return _frame(PacketType.PUBACK, 0, struct.pack("!H", packet.packet_id))
        case Subscribe():
            body = struct.pack("!H", packet.packet_id) + b"".join(
                _string(topic) + bytes([qos]) for topic, qos in packet.topics
            )
            return _frame(PacketType.SUBSCRIBE, 2, body)
        case Suback():
            body = struct.pack("!H", packet.packet_id) + bytes(packet.return_codes)
            return _frame(PacketType.SUBACK, 0, body)
        case Unsubscribe():
            body = struct.pack("!H", packet.packet_id) + b"".join(
                _string(topic) for topic in packet.topics
            )
            return _frame(PacketType.UNSUBSCRIBE, 2, body)
        case Unsuback():
            return _frame(PacketType.UNSUBACK, 0, struct.pack("!H", packet.packet_id))
        case Pingreq():
            return _frame(PacketType.PINGREQ, 0, b"")
        case Pingresp():
            return _frame(PacketType.PINGRESP, 0, b"")
        case Disconnect():
            return _frame(PacketType.DISCONNECT, 0, b"")
        case _QosTwoFlow():
            flags = 2 if packet.kind == PacketType.PUBREL else 0
            return _frame(packet.kind, flags, struct.pack("!H", packet.packet_id))
    raise TypeError(f"cannot encode {packet!r}")  # pragma: no cover - exhaustive match


# --- decoding -----------------------------------------------------------------


def check_publish_dup(flags: int) -> None:
    """Refuse a QoS 0 PUBLISH whose fixed header sets DUP (bit 3).

    MQTT 3.1.1 section 3.3.1.1 and MQTT 5 section 3.3.1.1: "The DUP flag MUST
    be set to 0 for all QoS 0 messages [MQTT-3.3.1-2]". Like the other bad
    fixed-header flags (MQTT 3.1.1 section 2.2.2 "If invalid flags are
    received, the receiver MUST close the Network Connection"; MQTT 5 section
    2.1.3 "If invalid flags are received it is a Malformed Packet"), it raises
    :class:`MqttProtocolError` with reason 0x81 Malformed Packet: the broker
    closes a 3.1.1 connection, and sends an MQTT 5 peer DISCONNECT 0x81 first.
    """
    if flags & 0x08 and not flags & 0x06:
        raise MqttProtocolError("QoS 0 PUBLISH with the DUP flag set [MQTT-3.3.1-2]")


@dataclass(slots=True)
class _Reader:
    data: bytes
    pos: int = 0

    def take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            raise MqttProtocolError("packet is shorter than its fields")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = struct.unpack("!H", self.take(2))[0]
        return value

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        raw = self.binary()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MqttProtocolError("string is not valid UTF-8") from exc
        # Spec 1.5.3: U+0000 must not appear in an MQTT string.
        if "\x00" in text:
            raise MqttProtocolError("string contains U+0000")
        return text

    def packet_id(self) -> int:
        value = self.u16()
        if value == 0:
            raise MqttProtocolError("packet id 0 is not allowed")
        return value

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)

    def finish(self) -> None:
        if not self.done:
            raise MqttProtocolError("packet has trailing bytes")


def _decode_connect(reader: _Reader) -> Connect:
    protocol_name = reader.string()
    protocol_level = reader.u8()
    if protocol_level == 5:
        from iotnotify_emulator.mqtt5 import decode_connect_after_level

        return decode_connect_after_level(reader, protocol_name)
    if protocol_level not in (3, 4):
        # A level this codec does not know may lay out the rest differently:
        # keep what is needed to answer it (CONNACK 0x01 or reason 0x84, MQTT
        # 3.1.1 section 3.1.2.2 / MQTT 5 section 3.1.2.2) rather than failing
        # to decode, which would be a silent close.
        return Connect(client_id="", protocol_name=protocol_name, protocol_level=protocol_level)
    flags = reader.u8()
    if flags & 0x01:
        raise MqttProtocolError("CONNECT reserved flag is set")
    keepalive = reader.u16()
    client_id = reader.string()
    will: Will | None = None
    will_qos = (flags >> 3) & 0x03
    if flags & 0x04:
        if will_qos == 3:
            raise MqttProtocolError("will QoS 3 is invalid")
        topic = reader.string()
        payload = reader.binary()
        will = Will(topic=topic, payload=payload, qos=will_qos, retain=bool(flags & 0x20))
    elif flags & 0x38:
        raise MqttProtocolError("will QoS/retain set without the will flag")
    username = reader.string() if flags & 0x80 else None
    if flags & 0x40 and not flags & 0x80:
        raise MqttProtocolError("password flag without username flag")
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
        protocol_level=protocol_level,
    )


def decode_packet(first_byte: int, body: bytes, *, max_filters: int | None = None) -> Packet:
    """Decode one packet from its first byte and its body (after the length).

    ``max_filters``: a SUBSCRIBE is decoded only up to ``max_filters + 1``
    filters, enough for the broker to see it is over its limit; a 128 KB
    SUBSCRIBE of 32,000 filters would otherwise cost ~50 ms of decoding.
    """
    try:
        kind = PacketType(first_byte >> 4)
    except ValueError as exc:
        raise MqttProtocolError(f"reserved packet type {first_byte >> 4}") from exc
    flags = first_byte & 0x0F
    required = _REQUIRED_FLAGS.get(kind)
    if required is not None and flags != required:
        raise MqttProtocolError(f"{kind.name} with invalid fixed-header flags {flags:#x}")
    reader = _Reader(body)
    packet: Packet
    match kind:
        case PacketType.CONNECT:
            return _decode_connect(reader)
        case PacketType.PUBLISH:
            qos = (flags >> 1) & 0x03
            if qos == 3:
                raise MqttProtocolError("PUBLISH with QoS 3")
            check_publish_dup(flags)
            topic = reader.string()
            packet_id = reader.packet_id() if qos else None
            return Publish(
                topic=topic,
                payload=reader.rest(),
                qos=qos,
                retain=bool(flags & 0x01),
                dup=bool(flags & 0x08),
                packet_id=packet_id,
            )
        case PacketType.SUBSCRIBE:
            packet_id = reader.packet_id()
            topics: list[tuple[str, int]] = []
            while not reader.done:
                if max_filters is not None and len(topics) > max_filters:
                    break  # over the limit already: the rest is never looked at
                topic = reader.string()
                qos = reader.u8()
                if qos > 2:
                    raise MqttProtocolError(f"SUBSCRIBE requested QoS byte {qos:#x}")
                topics.append((topic, qos))
            if not topics:
                raise MqttProtocolError("SUBSCRIBE without topic filters")
            return Subscribe(packet_id=packet_id, topics=tuple(topics))
        case PacketType.UNSUBSCRIBE:
            packet_id = reader.packet_id()
            names: list[str] = []
            while not reader.done:
                names.append(reader.string())
            if not names:
                raise MqttProtocolError("UNSUBSCRIBE without topic filters")
            return Unsubscribe(packet_id=packet_id, topics=tuple(names))
        case PacketType.CONNACK:
            session_present = reader.u8()
            code = reader.u8()
            reader.finish()
            return Connack(return_code=code, session_present=bool(session_present & 1))
        case PacketType.PUBACK:
            packet = Puback(reader.packet_id())
        case PacketType.SUBACK:
            packet_id = reader.packet_id()
            return Suback(packet_id=packet_id, return_codes=tuple(reader.rest()))
        case PacketType.UNSUBACK:
            packet = Unsuback(reader.packet_id())
        case PacketType.PUBREC | PacketType.PUBREL | PacketType.PUBCOMP:
            packet = _QosTwoFlow(kind, reader.packet_id())
        case PacketType.PINGREQ:
            packet = Pingreq()
        case PacketType.PINGRESP:
            packet = Pingresp()
        case PacketType.DISCONNECT:
            packet = Disconnect()
        case PacketType.AUTH:
            raise MqttProtocolError("AUTH is an MQTT 5 packet")
    reader.finish()
    return packet


@dataclass(slots=True)
class StreamDecoder:
    """Splits a byte stream into packets; WebSocket frames need not align with them.

    ``max_packet_size`` bounds memory: a peer announcing a larger packet is
    cut off before its bytes are buffered (reason code 0x95 for MQTT 5). It
    counts the whole packet, fixed header included, as MQTT 5's Maximum
    Packet Size does (section 3.1.2.11.4: "the total number of bytes in an
    MQTT Control Packet"), so a server advertising N in its CONNACK refuses
    a packet of N + 1 bytes [MQTT-3.2.2-15] even when its Remaining Length
    is below N.
    ``max_subscribe_filters`` bounds the work spent on one SUBSCRIBE (see
    :func:`decode_packet`).

    ``protocol_level`` picks the body codec: 4 (3.1.1) until a CONNECT for
    level 5 goes through the decoder, which switches it to 5 for every
    later packet (a client-side decoder is built with 5).
    """

    # The largest packet the encoding allows: 1 + 4 header bytes + body.
    max_packet_size: int = MAX_REMAINING_LENGTH + 5
    max_subscribe_filters: int | None = None
    protocol_level: int = 4
    _buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Packet]:
        """Every complete packet in the buffer after ``data``; raises on the first bad one."""
        return list(self.packets(data))

    def packets(self, data: bytes) -> Iterator[Packet]:
        """Like :meth:`feed`, one packet at a time: the packets before a malformed
        one are acted on (a stream broker reads them first, AWS included), and
        nothing after a packet that ends the connection is decoded."""
        self._buffer.extend(data)
        while True:
            header = self._header()
            if header is None:
                return
            first, length, offset = header
            if len(self._buffer) < offset + length:
                return
            body = bytes(self._buffer[offset : offset + length])
            del self._buffer[: offset + length]
            limit = self.max_subscribe_filters
            if self.protocol_level == 5:
                from iotnotify_emulator.mqtt5 import decode_packet as decode_v5

                packet = decode_v5(first, body, max_filters=limit)
            else:
                packet = decode_packet(first, body, max_filters=limit)
                if isinstance(packet, Connect) and packet.protocol_level == 5:
                    self.protocol_level = 5
            yield packet

    def _header(self) -> tuple[int, int, int] | None:
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        length = 0
        multiplier = 1
        for index in range(1, 5):
            if index >= len(buffer):
                return None
            byte = buffer[index]
            length += (byte & 0x7F) * multiplier
            if not byte & 0x80:
                size = index + 1 + length  # fixed header + Remaining Length
                if size > self.max_packet_size:
                    raise MqttProtocolError(
                        f"packet of {size} bytes exceeds the limit of {self.max_packet_size}",
                        reason_code=0x95,
                    )
                return buffer[0], length, index + 1
            multiplier *= 128
        raise MqttProtocolError("remaining length longer than 4 bytes")
