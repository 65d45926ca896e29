"""A seeded MQTT-over-WebSocket fuzzer for the emulator (issue 10, "Fuzzing in CI").

Each fuzz *connection* opens the WebSocket with a valid presigned URL (so
the bytes reach the MQTT decoder and the broker, not the SigV4 check), sends
a CONNECT (mostly valid, sometimes mutated), then a run of packets drawn
from a corpus of valid MQTT 3.1.1 packets and mutated: bit flips, random
bytes, truncation, extension, spliced packets, a corrupted fixed header or
remaining length, pure noise, text frames. Frames are split and joined at
random so packet and frame boundaries do not line up. The connection ends
with a DISCONNECT, a plain close or an abort, whichever the seed picks, or
earlier if the server closes it.

Everything is derived from ``seed`` (:class:`random.Random`), so a failing
run is replayed with the same seed. The fuzzer never asserts anything; it
returns :class:`FuzzTotals` and the caller (``tests/integration/emulator/
test_emulator_fuzz.py``, ``bench/emulator_fuzz.py``) judges the emulator:
still answering, back to zero connections, memory flat.

Bounded by construction: ``packets`` in total, at most ``per_connection``
per connection, ``concurrency`` connections at once, each step under
``step_timeout`` seconds (a step that times out is counted as a hang).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import aiohttp

from iotnotify_emulator import mqtt5
from iotnotify_emulator.mqtt import (
    Auth,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    Pingreq,
    Puback,
    Publish,
    Subscribe,
    Unsubscribe,
    Will,
    encode,
)
from iotnotify_emulator.mqtt5 import Properties

__all__ = ["FuzzTotals", "corpus", "fuzz", "mutate"]

_SUBPROTOCOLS: Final = ("mqtt",)


@dataclass(slots=True)
class FuzzTotals:
    """What a fuzz run did; ``hangs`` counts steps that exceeded ``step_timeout``."""

    connections: int = 0
    packets: int = 0
    mutated: int = 0
    bytes_sent: int = 0
    frames: int = 0
    closed_by_server: int = 0
    upgrades_refused: int = 0
    hangs: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def corpus(client_id: str, protocol_level: int = 4) -> list[bytes]:
    """Valid MQTT 3.1.1 packets (wire bytes) the mutations start from.

    ``protocol_level=5``: the same packets in MQTT 5, plus properties, topic
    aliases, subscription options and an AUTH.
    """
    if protocol_level == 5:
        return _corpus_v5(client_id)
    packets: list[Packet] = [
        Subscribe(packet_id=1, topics=(("fuzz/a", 0),)),
        Subscribe(packet_id=2, topics=(("fuzz/+/b", 1), ("fuzz/#", 0))),
        Subscribe(packet_id=3, topics=(("fuzz/q2", 2),)),
        Subscribe(packet_id=4, topics=(("$aws/events/presence/connected/+", 0),)),
        Unsubscribe(packet_id=5, topics=("fuzz/a", "fuzz/#")),
        Publish(topic="fuzz/a", payload=b'{"v":1}'),
        Publish(topic="fuzz/x/b", payload=b"hello", qos=1, packet_id=7),
        Publish(topic="fuzz/r", payload=b"retained", retain=True),
        Publish(topic="fuzz/r", payload=b"", retain=True),
        Publish(topic="$aws/things/x/shadow/update", payload=b"{}"),
        Puback(packet_id=9),
        Pingreq(),
        Connect(client_id=client_id),
        Disconnect(),
    ]
    raw = [encode(p) for p in packets]
    # Packets the codec has no encoder for: PUBREC/PUBREL/PUBCOMP and a reserved type.
    raw += [
        bytes([PacketType.PUBREC << 4, 2, 0, 1]),
        bytes([(PacketType.PUBREL << 4) | 2, 2, 0, 1]),
        bytes([0xF0, 0]),
    ]
    return raw


def _corpus_v5(client_id: str) -> list[bytes]:
    user = (("k", "v"), ("k", "w"))
    packets: list[Packet] = [
        Subscribe(1, (("fuzz/a", 0),), (0,), Properties(user_properties=user)),
        Subscribe(2, (("fuzz/+/b", 1), ("fuzz/#", 2)), (0x04, 0x2C)),
        Subscribe(3, (("fuzz/s", 0),), (0,), Properties(subscription_identifiers=(5,))),
        Unsubscribe(5, ("fuzz/a", "fuzz/#"), Properties(user_properties=user)),
        Publish(
            topic="fuzz/a",
            payload=b'{"v":1}',
            properties=Properties(
                content_type="application/json",
                response_topic="fuzz/reply",
                correlation_data=b"\x00\x01",
                message_expiry_interval=30,
                payload_format_indicator=1,
                user_properties=user,
            ),
        ),
        Publish(topic="fuzz/x/b", payload=b"hello", qos=1, packet_id=7),
        Publish(topic="fuzz/t", payload=b"a", properties=Properties(topic_alias=1)),
        Publish(topic="", payload=b"b", properties=Properties(topic_alias=1)),
        Publish(topic="fuzz/r", payload=b"retained", retain=True),
        Publish(topic="fuzz/q2", payload=b"2", qos=2, packet_id=8),
        Puback(9, 0x10, Properties(reason_string="fine")),
        Pingreq(),
        Connect(client_id=client_id, protocol_level=5),
        Disconnect(0x04, Properties(session_expiry_interval=0)),
        Auth(0x18),
    ]
    return [mqtt5.encode(p) for p in packets]


def _connect_packet(rng: random.Random, client_id: str, protocol_level: int = 4) -> bytes:
    will = Will(topic="fuzz/will", payload=b"gone") if rng.random() < 0.3 else None
    packet = Connect(
        client_id=client_id,
        keepalive=rng.choice([0, 1, 30, 60, 1200, 65535]),
        clean_session=rng.random() < 0.8,
        username=rng.choice([None, "?SDK=fuzz&Version=1"]),
        will=will,
    )
    if protocol_level == 5:
        properties = Properties(
            session_expiry_interval=rng.choice([None, 0, 1, 3600]),
            receive_maximum=rng.choice([None, 1, 100]),
            maximum_packet_size=rng.choice([None, 64, 1 << 20]),
            topic_alias_maximum=rng.choice([None, 0, 8]),
        )
        will_properties = Properties(will_delay_interval=rng.choice([None, 0, 1]))
        if will is not None:
            will = Will(will.topic, will.payload, properties=will_properties)
        return mqtt5.encode(
            Connect(
                client_id=packet.client_id,
                keepalive=packet.keepalive,
                clean_session=packet.clean_session,
                username=packet.username,
                will=will,
                protocol_level=5,
                properties=properties,
            )
        )
    return encode(packet)


def mutate(rng: random.Random, data: bytes, others: Sequence[bytes]) -> bytes:
    """One mutation of ``data`` (``others`` feeds splicing)."""
    buf = bytearray(data)
    choice = rng.randrange(10)
    if choice == 0 and buf:  # flip bits
        for _ in range(rng.randint(1, 4)):
            index = rng.randrange(len(buf))
            buf[index] ^= 1 << rng.randrange(8)
    elif choice == 1 and buf:  # overwrite bytes
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    elif choice == 2:  # truncate
        del buf[rng.randrange(len(buf) + 1) :]
    elif choice == 3:  # extend with noise
        buf += rng.randbytes(rng.randint(1, 64))
    elif choice == 4:  # splice with another packet
        other = rng.choice(others)
        buf = buf[: rng.randrange(len(buf) + 1)] + other[rng.randrange(len(other) + 1) :]
    elif choice == 5 and buf:  # new packet type / flags
        buf[0] = rng.randrange(256)
    elif choice == 6 and len(buf) > 1:  # corrupt the remaining length
        varint = rng.choice([b"\xff\xff\xff\x7f", b"\xff\xff\xff\xff\x01", b"\x80", b"\x00"])
        buf = buf[:1] + bytearray(varint) + buf[2:]
    elif choice == 7:  # noise
        buf = bytearray(rng.randbytes(rng.randint(0, 96)))
    elif choice == 8 and len(buf) > 4:  # lengths inside the body
        index = rng.randrange(2, len(buf) - 1)
        buf[index : index + 2] = rng.choice([b"\xff\xff", b"\x00\x00", b"\x7f\xff"])
    else:  # repeat a slice
        start = rng.randrange(len(buf) + 1)
        buf = buf[:start] + buf[start:] * rng.randint(2, 4)
    return bytes(buf)


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _message in ws:
        pass


async def _one_connection(
    http: aiohttp.ClientSession,
    url: str,
    rng: random.Random,
    budget: int,
    totals: FuzzTotals,
    step_timeout: float,
    client_id: str,
    protocol_level: int = 4,
) -> int:
    """One fuzz connection; returns the packets it sent."""
    try:
        async with asyncio.timeout(step_timeout):
            ws = await http.ws_connect(url, protocols=_SUBPROTOCOLS, max_msg_size=0)
    except aiohttp.WSServerHandshakeError:
        totals.upgrades_refused += 1
        return 0
    except TimeoutError:
        totals.hangs += 1
        return 0
    totals.connections += 1
    reader = asyncio.ensure_future(_drain(ws))
    seeds = corpus(client_id, protocol_level)
    sent = 0
    try:
        first = _connect_packet(rng, client_id, protocol_level)
        if rng.random() < 0.15:
            first = mutate(rng, first, seeds)
            totals.mutated += 1
        pending = [first]
        sent = 1
        # Some connections mutate rarely, so valid packets reach deep broker
        # states (subscribed, publishing, taken over) before a bad one ends them.
        rate = rng.choice([0.03, 0.1, 0.3, 0.7])
        while sent < budget:
            packet = rng.choice(seeds)
            if rng.random() < rate:
                packet = mutate(rng, packet, seeds)
                totals.mutated += 1
            pending.append(packet)
            sent += 1
        stream = b"".join(pending)
        position = 0
        while position < len(stream):
            if ws.closed or reader.done():
                totals.closed_by_server += 1
                break
            size = rng.choice([1, 2, 7, 64, 512, len(stream)])
            chunk = stream[position : position + size]
            position += size
            async with asyncio.timeout(step_timeout):
                if rng.random() < 0.01:
                    await ws.send_str(chunk.decode("latin-1"))
                else:
                    await ws.send_bytes(chunk)
            totals.frames += 1
            totals.bytes_sent += len(chunk)
        ending = rng.random()
        async with asyncio.timeout(step_timeout):
            if ending < 0.3 and not ws.closed:
                await ws.send_bytes(encode(Disconnect()))
            if ending < 0.9:
                await ws.close()
    except TimeoutError:
        totals.hangs += 1
    except (aiohttp.ClientError, ConnectionError):
        totals.closed_by_server += 1
    finally:
        # An abort (no close handshake) is one of the endings too.
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError, ConnectionError):
            await reader
        if not ws.closed:
            with contextlib.suppress(aiohttp.ClientError, ConnectionError, TimeoutError):
                async with asyncio.timeout(step_timeout):
                    await ws.close()
    totals.packets += sent
    return sent


async def fuzz(
    url_for: Callable[[], str],
    *,
    seed: int,
    packets: int,
    per_connection: int = 40,
    concurrency: int = 8,
    step_timeout: float = 10.0,
    client_ids: Sequence[str] = ("fuzz.0", "fuzz.1", "fuzz.2", "fuzz.3"),
    protocol_level: int = 4,
) -> FuzzTotals:
    """Send about ``packets`` fuzzed packets over as many connections as that takes.

    ``url_for()`` returns a presigned ``ws://.../mqtt`` URL (called once per
    connection). Client ids are drawn from ``client_ids``, so takeovers of
    one id by another fuzz connection happen too. ``protocol_level=5``
    fuzzes MQTT 5 (CONNECT, corpus and mutations in the v5 encoding).
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible fuzzing, not secrets
    totals = FuzzTotals()
    remaining = packets
    async with aiohttp.ClientSession() as http:
        while remaining > 0:
            batch = []
            for _ in range(concurrency):
                if remaining <= 0:
                    break
                budget = min(remaining, rng.randint(1, per_connection))
                remaining -= budget
                child = random.Random(rng.getrandbits(64))  # noqa: S311
                client_id = rng.choice(client_ids)
                batch.append(
                    _one_connection(
                        http,
                        url_for(),
                        child,
                        budget,
                        totals,
                        step_timeout,
                        client_id,
                        protocol_level,
                    )
                )
            await asyncio.gather(*batch)
    return totals
