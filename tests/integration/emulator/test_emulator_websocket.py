"""WebSocket framing on /mqtt as an RFC 6455 server must handle it, driven over a
raw socket: client libraries (aiohttp included) always mask, so they cannot
send what these tests send."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import pytest

from iotnotify_emulator import ws_mask
from iotnotify_emulator.mqtt import (
    Connack,
    Connect,
    Packet,
    Pingreq,
    Pingresp,
    Publish,
    StreamDecoder,
    Suback,
    Subscribe,
    encode,
)
from iotnotify_emulator.testing import ALLOW_ALL, Harness

_CLOSE = 0x8
_BINARY = 0x2
_PROTOCOL_ERROR = 1002


def frame(payload: bytes, *, masked: bool = True, opcode: int = _BINARY) -> bytes:
    """One final frame (RFC 6455 section 5.2), masked with a random key unless told."""
    mask_bit = 0x80 if masked else 0
    size = len(payload)
    if size < 126:
        header = bytes([0x80 | opcode, mask_bit | size])
    elif size < 65536:
        header = bytes([0x80 | opcode, mask_bit | 126]) + struct.pack("!H", size)
    else:
        header = bytes([0x80 | opcode, mask_bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))


class RawWebSocket:
    """A WebSocket client that writes frames byte for byte as given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = StreamDecoder()
        self.pending: list[Packet] = []

    async def send(self, data: bytes, *, chunk: int | None = None) -> None:
        """Write ``data``, in writes of ``chunk`` bytes when given (each drained)."""
        step = chunk or len(data)
        for start in range(0, len(data), step):
            self.writer.write(data[start : start + step])
            await self.writer.drain()

    async def next_frame(self) -> tuple[int, bytes] | None:
        """(opcode, payload) of the server's next frame; None at end of stream."""
        try:
            first, second = await self.reader.readexactly(2)
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return first & 0x0F, await self.reader.readexactly(size)
        except asyncio.IncompleteReadError:
            return None

    async def next_packet(self) -> Packet:
        """The next MQTT packet from the server (a frame may hold several)."""
        while not self.pending:
            received = await asyncio.wait_for(self.next_frame(), 5.0)
            assert received is not None
            assert received[0] == _BINARY, received
            self.pending.extend(self.decoder.feed(received[1]))
        return self.pending.pop(0)

    async def close_code(self) -> int | None:
        """Read to the end of the stream: the code of the server's Close frame."""
        code: int | None = None
        async with asyncio.timeout(5.0):
            while (received := await self.next_frame()) is not None:
                opcode, payload = received
                assert opcode == _CLOSE, f"unexpected frame {received!r} before the close"
                (code,) = struct.unpack("!H", payload[:2])
        return code


@asynccontextmanager
async def raw_websocket(world: Harness, *, early: bytes = b"") -> AsyncIterator[RawWebSocket]:
    """An upgraded /mqtt connection (presigned, subprotocol mqtt); ``early`` is
    written in the same write as the upgrade request, before the 101."""
    url = urlsplit(world.url(world.store.issue([ALLOW_ALL])))
    assert url.hostname is not None
    assert url.port is not None
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: mqtt\r\n\r\n"
    )
    try:
        writer.write(request.encode("ascii") + early)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        assert head.startswith(b"HTTP/1.1 101 "), head
        yield RawWebSocket(reader, writer)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_an_unmasked_client_frame_fails_the_connection_with_close_1002(
    world: Harness,
) -> None:
    # RFC 6455 section 5.1: "The server MUST close the connection upon
    # receiving a frame that is not masked ... a Close frame with a status
    # code of 1002 (protocol error)".
    async with raw_websocket(world) as ws:
        # Given a connected client (masked frames)
        await ws.send(frame(encode(Connect(client_id="c1"))))
        assert await ws.next_packet() == Connack()
        # When it sends a PINGREQ without a mask
        await ws.send(frame(encode(Pingreq()), masked=False))
        # Then no PINGRESP: the server closes with 1002
        assert await ws.close_code() == _PROTOCOL_ERROR
    stats = world.emulator.stats()
    assert stats["connections_current"] == 0
    assert stats["disconnects_by_reason"] == {"CLIENT_ERROR": 1}


async def test_an_unmasked_connect_gets_no_connack(world: Harness) -> None:
    async with raw_websocket(world) as ws:
        # The header split over two writes: the check must not depend on
        # where reads split a header.
        unmasked = frame(encode(Connect(client_id="c1")), masked=False)
        await ws.send(unmasked[:1])
        await ws.send(unmasked[1:])
        assert await ws.close_code() == _PROTOCOL_ERROR
    assert world.emulator.stats()["connections_current"] == 0


async def test_an_unmasked_frame_sent_with_the_upgrade_request_is_refused(
    world: Harness,
) -> None:
    early = frame(encode(Connect(client_id="c1")), masked=False)
    async with raw_websocket(world, early=early) as ws:
        assert await ws.close_code() == _PROTOCOL_ERROR


async def test_masked_frames_of_every_length_form_split_anywhere_are_served(
    world: Harness,
) -> None:
    async with raw_websocket(world) as ws:
        # Given frames with 7-bit, 16-bit and 64-bit lengths, several in one
        # write and others split one byte per write
        await ws.send(
            frame(encode(Connect(client_id="c1")))
            + frame(encode(Subscribe(packet_id=1, topics=(("t/big", 0), ("t/mid", 0)))))
        )
        assert await ws.next_packet() == Connack()
        assert await ws.next_packet() == Suback(packet_id=1, return_codes=(0, 0))
        mid = Publish(topic="t/mid", payload=b"m" * 300)
        big = Publish(topic="t/big", payload=os.urandom(70_000))
        await ws.send(frame(encode(mid)), chunk=1)
        await ws.send(frame(encode(big)) + frame(encode(Pingreq())), chunk=4096)
        # Then every packet is acted on, in order
        assert await ws.next_packet() == mid
        assert await ws.next_packet() == big
        assert await ws.next_packet() == Pingresp()


async def test_an_aiohttp_without_the_internals_serves_unchecked_instead_of_failing(
    world: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an aiohttp whose internals the mask check relies on have moved
    monkeypatch.setattr(ws_mask, "_internals_present", lambda handler, response: False)
    monkeypatch.setattr(ws_mask, "_warned", False)
    caplog.set_level(logging.WARNING, logger="iotnotify_emulator")
    async with raw_websocket(world) as ws:
        # When a client connects with masked frames
        await ws.send(frame(encode(Connect(client_id="c1"))))
        # Then it is served as before, and the log says the check is off
        assert await ws.next_packet() == Connack()
        await ws.send(frame(encode(Pingreq())))
        assert await ws.next_packet() == Pingresp()
    assert "unmasked client frames are not refused" in caplog.text
