"""The load generator of ``emulator_bench.py``: the same code for every broker.

Run by the orchestrator, never by hand (it prints one JSON line per result):

* ``fanout``: N subscribers, each CONNECT + SUBSCRIBE to its own topic, one
  publisher sending M QoS 0 messages round-robin over those topics. Every
  payload starts with the send time (CLOCK_MONOTONIC, shared by all
  processes of the machine), so each subscriber measures publish-to-delivery
  latency. The publisher keeps at most ``--window`` messages in flight (sent,
  not yet delivered): the broker is saturated, and latency is measured with a
  bounded queue instead of the depth of a backlog the publisher piled up.
* ``idle``: N connections, CONNECT + SUBSCRIBE each, ``--concurrency`` at a
  time; prints the time it took, then holds them open until a line arrives on
  stdin (the orchestrator reads the broker's RSS meanwhile).
* ``fixed``: a fixed offered load, open loop: N subscribers on distinct
  topics, P publisher connections, ``--rate`` messages/s in all for
  ``--duration`` seconds after a warm-up; message m goes out on publisher
  m mod P to subscriber m mod N at its scheduled time, whatever the broker
  does, so each publisher sends rate/P per second, evenly spaced (at most 90
  here: AWS allows 100 publishes/s per connection). Latency is measured from
  the scheduled send time, so a generator or broker that falls behind shows
  up as latency, not as a lower rate. The publishers run in a child process
  of their own, paced by ``clock_nanosleep``, so reading deliveries never
  delays a send; their lag behind the schedule is reported, and so is the
  latency from each message's actual send time, and the latency at the
  subscriber's socket from the kernel's receive timestamp (``_KernelStamps``:
  the broker's part alone, without this process's time to read a burst).
  Both processes keep CPython's cyclic garbage collector off while
  measuring (its pauses would count as the broker's latency).

The client is a small asyncio Protocol speaking WebSocket (RFC 6455, masked
client frames, subprotocol ``mqtt``) and the few MQTT 3.1.1 packets needed,
because aiohttp's client costs several times more CPU per message and this
process must not be what limits the broker. ``--transport tcp`` drops the
WebSocket layer (plain MQTT), for a broker without a WebSocket listener.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import os
import socket
import statistics
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from benchlib import (
    PUBLISHER_CLIENT_ID,
    REGION,
    KeyFile,
    client_id,
    cpu_seconds,
    machine_busy_seconds,
    raise_fd_limit,
    run_delay_seconds,
    topic,
)

from iotnotify.contract import TopicScheme
from iotnotify_emulator.testing import presign_url

_CONNECT: Final = 0x10
_CONNACK: Final = 2
_PUBLISH: Final = 3
_SUBACK: Final = 9
# Scheduled send time (ns), actual send time (ns), sequence number.
_STAMP: Final = struct.Struct(">qqI")
KEEPALIVE: Final = 600
MAX_RATE_PER_PUBLISHER: Final = 90.0  # AWS: 100 publishes/s per connection


class ProtocolFailure(Exception):
    """The broker refused or closed a connection."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def connect_packet(client: str) -> bytes:
    body = _string("MQTT") + bytes([4, 0x02]) + KEEPALIVE.to_bytes(2, "big") + _string(client)
    return bytes([_CONNECT]) + _varint(len(body)) + body


def subscribe_packet(topic_filter: str, packet_id: int = 1) -> bytes:
    body = packet_id.to_bytes(2, "big") + _string(topic_filter) + b"\x00"
    return b"\x82" + _varint(len(body)) + body


def publish_prefix(topic_name: str, payload_size: int) -> bytes:
    """Everything of a QoS 0 PUBLISH before its payload (fixed for a topic and size)."""
    name = _string(topic_name)
    return b"\x30" + _varint(len(name) + payload_size) + name


def _masked(data: bytes, key: bytes) -> bytes:
    size = len(data)
    mask = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(mask, "little")).to_bytes(
        size, "little"
    )


class MqttClient(asyncio.Protocol):
    """One MQTT 3.1.1 connection, over WebSocket (``ws=True``) or plain TCP."""

    def __init__(
        self, *, ws: bool, host: str, path: str, on_publish: Callable[[bytes], None] | None
    ) -> None:
        self._ws = ws
        self._host = host
        self._path = path
        self._on_publish = on_publish
        self._transport: asyncio.Transport | None = None
        self._upgraded = not ws
        self._frames = bytearray()
        self._mqtt = bytearray()
        self._control: deque[tuple[int, bytes]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.closed = False

    # --- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if not self._ws:
            self.ready.set_result(None)
            return
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET {self._path} HTTP/1.1\r\nHost: {self._host}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: mqtt\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        if not self._ws:
            self._feed_mqtt(data)
            return
        if not self._upgraded:
            self._frames += data
            end = self._frames.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self._frames[: self._frames.find(b"\r\n")])
            rest = bytes(self._frames[end + 4 :])
            self._frames.clear()
            if b" 101 " not in status:
                self._fail(ProtocolFailure(f"upgrade refused: {status.decode(errors='replace')}"))
                return
            self._upgraded = True
            self.ready.set_result(None)
            if not rest:
                return
            data = rest
        self._feed_frames(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ProtocolFailure(f"connection closed by the broker ({exc})"))

    # --- parsing -------------------------------------------------------------------

    def _fail(self, error: Exception) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(error)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        if self._transport is not None:
            self._transport.abort()

    def _feed_frames(self, data: bytes) -> None:
        if not self._frames and not self._mqtt and self._on_publish is not None:
            # Fast path, nearly every delivery: one unmasked binary frame
            # (length < 126) holding one whole QoS 0 PUBLISH (length < 128).
            size = len(data)
            if (
                size > 4
                and data[0] == 0x82
                and data[1] == size - 2
                and data[2] == 0x30
                and data[3] == size - 4
            ):
                self._on_publish(data[6 + int.from_bytes(data[4:6], "big") :])
                return
        buf = self._frames
        buf += data
        pos, size = 0, len(buf)
        while size - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            length, header = second & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, header = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, header = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if second & 0x80:
                self._fail(ProtocolFailure("masked frame from the server"))
                return
            if size - pos < header + length:
                break
            start = pos + header
            pos = start + length
            opcode = first & 0x0F
            if opcode in (0, 2):
                self._feed_mqtt(bytes(buf[start:pos]))
            elif opcode == 9:
                self._send_frame(0xA, bytes(buf[start:pos]))
            elif opcode == 8:
                self._fail(ProtocolFailure("WebSocket closed by the broker"))
                return
        del buf[:pos]

    def _feed_mqtt(self, data: bytes) -> None:
        buf = self._mqtt
        buf += data
        pos, size = 0, len(buf)
        while size - pos >= 2:
            length, multiplier, index = 0, 1, pos + 1
            while True:
                if index >= size:
                    del buf[:pos]
                    return
                byte = buf[index]
                index += 1
                length += (byte & 0x7F) * multiplier
                multiplier *= 128
                if not byte & 0x80:
                    break
            if size - index < length:
                break
            kind = buf[pos] >> 4
            flags = buf[pos] & 0x0F
            body = bytes(buf[index : index + length])
            pos = index + length
            if kind == _PUBLISH:
                offset = 2 + int.from_bytes(body[:2], "big") + (2 if flags & 0x06 else 0)
                if self._on_publish is not None:
                    self._on_publish(body[offset:])
            else:
                self._control.append((kind, body))
                if self._waiter is not None and not self._waiter.done():
                    self._waiter.set_result(None)
        del buf[:pos]

    # --- sending -------------------------------------------------------------------

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        assert self._transport is not None
        size = len(payload)
        if size < 126:
            header = bytes([0x80 | opcode, 0x80 | size])
        elif size < 65536:
            header = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
        else:
            header = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
        key = os.urandom(4)
        self._transport.write(header + key + _masked(payload, key))

    def send(self, packet: bytes) -> None:
        if self.closed:
            raise ProtocolFailure("send on a closed connection")
        if self._ws:
            self._send_frame(0x2, packet)
        else:
            assert self._transport is not None
            self._transport.write(packet)

    async def expect(self, kind: int, within: float) -> bytes:
        async with asyncio.timeout(within):
            while not self._control:
                if self.closed:
                    raise ProtocolFailure("connection closed by the broker")
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
        got, body = self._control.popleft()
        if got != kind:
            raise ProtocolFailure(f"expected packet type {kind}, got {got}")
        return body

    def abort(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()


class Target:
    """Where to connect and how each client signs its URL."""

    def __init__(self, url: str, transport: str, keys: KeyFile | None) -> None:
        parts = urlsplit(url)
        self.url = url
        self.ws = transport == "ws"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.netloc = parts.netloc
        self.keys = keys

    def path(self, index: int | None) -> str:
        """The request target; presigned (SigV4) when the broker has keys."""
        if self.keys is None:
            return urlsplit(self.url).path or "/mqtt"
        key = self.keys.publisher if index is None else self.keys.subscribers[index]
        signed = urlsplit(presign_url(self.url, key.bare_credential(), region=REGION))
        return f"{signed.path}?{signed.query}"

    async def open(
        self,
        path: str,
        client: str,
        *,
        subscribe: str | None,
        on_publish: Callable[[bytes], None] | None = None,
        within: float = 30.0,
    ) -> MqttClient:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            lambda: MqttClient(ws=self.ws, host=self.netloc, path=path, on_publish=on_publish),
            self.host,
            self.port,
        )
        try:
            async with asyncio.timeout(within):
                await protocol.ready
            protocol.send(connect_packet(client))
            connack = await protocol.expect(_CONNACK, within)
            if connack[1:2] != b"\x00":
                raise ProtocolFailure(f"CONNACK return code {connack[1:2].hex()}")
            if subscribe is not None:
                protocol.send(subscribe_packet(subscribe))
                suback = await protocol.expect(_SUBACK, within)
                if suback[2:] != b"\x00":
                    raise ProtocolFailure(f"SUBACK {suback[2:].hex()}")
        except BaseException:
            protocol.abort()
            raise
        return protocol


async def _open_many(
    target: Target,
    paths: list[str],
    concurrency: int,
    on_publish: Callable[[bytes], None] | None,
    topic_of: Callable[[int], str] = topic,
) -> tuple[list[MqttClient], list[float], list[str]]:
    """Open ``len(paths)`` subscribers, ``concurrency`` at a time; clients, latencies, errors."""
    gate = asyncio.Semaphore(concurrency)
    clients: list[MqttClient] = []
    latencies: list[float] = []
    errors: list[str] = []

    async def one(index: int) -> None:
        async with gate:
            started = time.perf_counter()
            try:
                client = await target.open(
                    paths[index],
                    client_id(index),
                    subscribe=topic_of(index),
                    on_publish=on_publish,
                )
            except (OSError, ProtocolFailure, TimeoutError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            latencies.append((time.perf_counter() - started) * 1000)
            clients.append(client)

    await asyncio.gather(*(one(index) for index in range(len(paths))))
    return clients, latencies, errors


def _loop_stats(url: str | None) -> dict[str, Any] | None:
    """The emulator's event-loop stall counters (``/_emulator/stats`` -> ``loop``), or None."""
    if not url:
        return None
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:
        loop: dict[str, Any] | None = json.load(response).get("loop")
    return loop


def _stalls_between(
    before: dict[str, Any] | None, after: dict[str, Any] | None, since: float
) -> dict[str, Any]:
    """Stalls of the emulator's loop in the measured window (from the two snapshots)."""
    if before is None or after is None:
        return {}
    window = [lag for at, lag in after["recent"] if at >= since]
    count = after["stalls"] - before["stalls"]
    return {
        "stalls": count,
        "stalled_ms": after["stalled_ms"] - before["stalled_ms"],
        # The recent list is bounded: the longest is exact while it held the window.
        "max_stall_ms": max(window, default=0.0) if len(window) >= count else float("nan"),
        "gc_collections": [
            late - early
            for early, late in zip(
                before.get("gc_collections", []), after.get("gc_collections", []), strict=True
            )
        ],
    }


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


class _CpuMeter:
    """CPU used by the broker, by this process and by everything else, over a window."""

    def __init__(self, broker_pid: int, stack_pid: int = 0, helper_pid: int = 0) -> None:
        self._pid = broker_pid
        self._stack_pid = stack_pid  # iotnotify local's own process, beside its emulator's
        self._helper_pid = helper_pid  # the load generator's publishers' process (fixed load)
        self._broker = cpu_seconds(broker_pid) if broker_pid else 0.0
        self._broker_waited = run_delay_seconds(broker_pid) if broker_pid else (0.0, 0, 0)
        self._stack = cpu_seconds(stack_pid) if stack_pid else 0.0
        self._own = self._own_seconds()
        self._machine = machine_busy_seconds()

    def _own_seconds(self) -> float:
        """This generator's CPU: this process and its publishers' process."""
        helper = cpu_seconds(self._helper_pid) if self._helper_pid else 0.0
        return time.process_time() + helper

    def shares(self, seconds: float) -> dict[str, float]:
        """Each share in cores (1.0 = one core busy all along), and how long
        the broker waited for a CPU (``broker_waited_ms``, :func:`run_delay_seconds`)."""
        broker = cpu_seconds(self._pid) - self._broker if self._pid else 0.0
        stack = cpu_seconds(self._stack_pid) - self._stack if self._stack_pid else 0.0
        own = self._own_seconds() - self._own
        machine = machine_busy_seconds() - self._machine
        waited, slices, preempted = (
            (now - before)
            for now, before in zip(
                run_delay_seconds(self._pid) if self._pid else (0.0, 0, 0),
                self._broker_waited,
                strict=True,
            )
        )
        shares = {
            # Not shares: how the broker's event loop waited for a CPU.
            "broker_waited_ms": waited * 1000,
            "broker_slices": slices,
            "broker_preempted": preempted,
            "broker_cpu": broker / seconds,
            "loadgen_cpu": own / seconds,
            "other_cpu": max(0.0, machine - broker - stack - own) / seconds,
        }
        if self._stack_pid:
            shares["stack_cpu"] = stack / seconds
        return shares


class _Deliveries:
    """Counts deliveries and their latency; wakes the publisher when the window opens."""

    def __init__(self) -> None:
        self.count = 0
        self.latencies_us: list[float] = []
        # From the moment the generator wrote the message: the broker's part
        # (and the kernel's), without the generator's own lag.
        self.broker_latencies_us: list[float] = []
        # From the actual send to the kernel's receive timestamp of the
        # subscriber's socket (SO_TIMESTAMPNS, _KernelStamps): set while a
        # kernel-stamped read is being parsed, else 0.
        self.socket_latencies_us: list[float] = []
        self.kernel_ns = 0
        # Every delivery's (actual send, kernel receive, read) ns, for --dump.
        self.record: list[tuple[int, int, int]] | None = None
        self.last_ns = 0
        self.progress = asyncio.Event()
        self.waiting = False  # the publisher waits for the window to open

    def __call__(self, payload: bytes) -> None:
        now = time.monotonic_ns()
        scheduled, sent, _ = _STAMP.unpack_from(payload)
        self.latencies_us.append((now - scheduled) / 1000)
        self.broker_latencies_us.append((now - sent) / 1000)
        if self.kernel_ns:
            self.socket_latencies_us.append((self.kernel_ns - sent) / 1000)
        if self.record is not None:
            self.record.append((sent, self.kernel_ns, now))
        self.count += 1
        self.last_ns = now
        if self.waiting:
            self.progress.set()


_SO_TIMESTAMPNS: Final = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux, socket(7)
_TIMESPEC: Final = struct.Struct("@qq")
_OFFSET_BRACKET_NS: Final = 20_000


class _KernelStamps:
    """Reads the subscribers' sockets with ``recvmsg`` and the kernel's receive timestamp.

    ``SO_TIMESTAMPNS`` (socket(7)) stamps each segment with CLOCK_REALTIME
    when the broker's write hands it to loopback, whatever this process is
    doing then; converted to CLOCK_MONOTONIC, it gives the latency at the
    subscriber's socket: the broker's part alone, without the time this
    process takes to read a burst of 1,000 sockets. The asyncio transports
    stay open (paused), so nothing about the connections changes; their
    sockets are read through a duplicate descriptor. One timestamp per read
    (that of the last segment read): at 10 messages/s per subscriber a read
    holds one message.
    """

    def __init__(self, clients: list[MqttClient], deliveries: _Deliveries) -> None:
        self._loop = asyncio.get_running_loop()
        self._deliveries = deliveries
        self._socks: list[socket.socket] = []
        self._offset = 0
        for client in clients:
            transport = client._transport
            assert transport is not None
            if client.closed or transport.is_closing():
                # Closed by the broker after it subscribed (while the rest of
                # the connect storm ran): no socket left to duplicate, and its
                # missing deliveries count as lost, as before these stamps.
                continue
            transport.pause_reading()
            fd = transport.get_extra_info("socket").fileno()
            sock = socket.socket(fileno=os.dup(fd))
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            self._socks.append(sock)
            self._loop.add_reader(sock.fileno(), self._readable, sock, client)

    def _readable(self, sock: socket.socket, client: MqttClient) -> None:
        try:
            data, ancillary, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(_TIMESPEC.size))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._loop.remove_reader(sock.fileno())
            client._fail(exc)
            return
        if not data:
            self._loop.remove_reader(sock.fileno())
            client.connection_lost(None)
            return
        kernel_ns = 0
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                seconds, nanoseconds = _TIMESPEC.unpack_from(raw)
                kernel_ns = seconds * 1_000_000_000 + nanoseconds - self._clock_offset()
        self._deliveries.kernel_ns = kernel_ns
        try:
            client.data_received(data)
        finally:
            self._deliveries.kernel_ns = 0

    def _clock_offset(self) -> int:
        """CLOCK_REALTIME minus CLOCK_MONOTONIC, ns, read between two monotonic readings.

        A pair read while this process was pre-empted between its clock calls
        would shift that delivery's stamp by the pause; such a pair (over
        20 us apart) is not used and the last good offset stands in. NTP may
        slew the two clocks apart, so the offset is read again at every read.
        """
        before = time.monotonic_ns()
        realtime = time.time_ns()
        after = time.monotonic_ns()
        if after - before <= _OFFSET_BRACKET_NS or not self._offset:
            self._offset = realtime - (before + after) // 2
        return self._offset

    def close(self) -> None:
        for sock in self._socks:
            self._loop.remove_reader(sock.fileno())
            sock.close()
        self._socks.clear()


async def _publish_windowed(
    publisher: MqttClient,
    prefixes: list[bytes],
    padding: bytes,
    messages: int,
    window: int,
    deliveries: _Deliveries,
    stall: float,
) -> tuple[int, int]:
    """Send ``messages`` round-robin, at most ``window`` undelivered; (sent, start ns)."""
    expected_base = deliveries.count
    started = time.monotonic_ns()
    sent = 0
    count = len(prefixes)
    while sent < messages:
        while sent - (deliveries.count - expected_base) >= window:
            deliveries.progress.clear()
            deliveries.waiting = True
            try:
                await asyncio.wait_for(deliveries.progress.wait(), stall)
            except TimeoutError:
                return sent, started  # messages were lost (QoS 0): stop, report
            finally:
                deliveries.waiting = False
        at = time.monotonic_ns()
        stamp = _STAMP.pack(at, at, sent)
        publisher.send(prefixes[sent % count] + stamp + padding)
        sent += 1
    deadline = time.monotonic() + stall
    deliveries.waiting = True
    while deliveries.count - expected_base < sent and time.monotonic() < deadline:
        deliveries.progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(deliveries.progress.wait(), stall)
    deliveries.waiting = False
    return sent, started


async def fanout(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    subscribers: int = args.subscribers
    paths = [target.path(index) for index in range(subscribers)]
    deliveries = _Deliveries()
    clients, _, errors = await _open_many(target, paths, args.concurrency, deliveries)
    if errors:
        for client in clients:
            client.abort()
        return {"error": f"{len(errors)} subscribers failed, first: {errors[0]}"}
    publisher = await target.open(target.path(None), PUBLISHER_CLIENT_ID, subscribe=None)
    prefixes = [publish_prefix(topic(index), args.size) for index in range(subscribers)]
    padding = b"x" * (args.size - _STAMP.size)
    try:
        # Warm-up: one message to every subscriber (caches, code paths), not measured.
        await _publish_windowed(
            publisher, prefixes, padding, subscribers, args.window, deliveries, args.stall
        )
        deliveries.count = 0
        deliveries.latencies_us.clear()
        meter = _CpuMeter(args.broker_pid)
        sent, started = await _publish_windowed(
            publisher, prefixes, padding, args.messages, args.window, deliveries, args.stall
        )
    finally:
        for client in [publisher, *clients]:
            client.abort()
    seconds = max(deliveries.last_ns - started, 1) / 1e9
    latencies_ms = [value / 1000 for value in deliveries.latencies_us]
    return {
        "subscribers": len(clients),
        "sent": sent,
        "delivered": deliveries.count,
        "seconds": seconds,
        "rate": deliveries.count / seconds,
        "p50_ms": statistics.median(latencies_ms) if latencies_ms else float("nan"),
        "p99_ms": _percentile(latencies_ms, 0.99),
        **meter.shares(seconds),
    }


async def idle(args: argparse.Namespace, target: Target) -> None:
    paths = [target.path(index) for index in range(args.count)]  # signed before the clock runs
    meter = _CpuMeter(args.broker_pid)
    started = time.perf_counter()
    clients, latencies, errors = await _open_many(target, paths, args.concurrency, None)
    seconds = time.perf_counter() - started
    result = {
        "connected": len(clients),
        "failed": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": seconds,
        "rate": len(clients) / seconds,
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": _percentile(latencies, 0.99),
        **meter.shares(seconds),
    }
    print(json.dumps(result), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # hold until told to let go
    closed = sum(not client.closed for client in clients)
    for client in clients:
        client.abort()
    print(json.dumps({"closed": closed}), flush=True)


def _send_lag_ms(lags_ns: list[int]) -> dict[str, float]:
    ordered = sorted(value / 1e6 for value in lags_ns)
    return {
        "send_lag_p50_ms": _percentile(ordered, 0.50),
        "send_lag_p90_ms": _percentile(ordered, 0.90),
        "send_lag_p99_ms": _percentile(ordered, 0.99),
    }


def _tighten_timers() -> None:
    """Linux only, best effort: end with the parent, and sleep with 1 ns of timer slack.

    ``PR_SET_PDEATHSIG``: if the generator is killed (the orchestrator's
    timeout sends SIGKILL), this process gets SIGTERM instead of offering
    its load on into the next run. ``PR_SET_TIMERSLACK``: the kernel's
    default 50 us slack would be added to every paced sleep (prctl(2)).
    """
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
        libc.prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        pass


async def fixed_publishers(args: argparse.Namespace, target: Target) -> None:
    """The publishing half of ``fixed``, in a process of its own (see :func:`fixed`).

    Connects ``--publishers`` connections, prints ``{"ready": n}``, then for
    every line ``{"seconds": s}`` on stdin offers ``--rate`` msg/s for ``s``
    seconds and prints ``{"sent", "started", "send_lag_*_ms"}``; ends at EOF.
    """
    scheme = TopicScheme("iotnotify", args.stage)
    subscribers: int = args.subscribers
    publishers: int = args.publishers
    publisher_path = target.path(None)
    gate = asyncio.Semaphore(args.concurrency)

    async def open_publisher(index: int) -> MqttClient:
        async with gate:
            return await target.open(
                publisher_path, f"{PUBLISHER_CLIENT_ID}-{index}", subscribe=None
            )

    parent = os.getppid()
    _tighten_timers()
    pubs: list[MqttClient] = []
    try:
        try:
            pubs.extend(await asyncio.gather(*(open_publisher(j) for j in range(publishers))))
        except (OSError, ProtocolFailure, TimeoutError) as exc:
            print(json.dumps({"error": f"a publisher failed: {type(exc).__name__}: {exc}"}))
            return
        print(json.dumps({"ready": len(pubs)}), flush=True)
        prefixes = [
            publish_prefix(str(scheme.user_notifications(f"u{index}")), args.size)
            for index in range(subscribers)
        ]
        padding = b"x" * (args.size - _STAMP.size)
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            with _no_garbage_collection():
                sent, started, lags = await _offer_paced(
                    args, line, pubs, prefixes, padding, parent
                )
            if os.getppid() != parent:
                return  # the generator is gone (killed on a timeout): stop the load
            print(json.dumps({"sent": sent, "started": started, **_send_lag_ms(lags)}), flush=True)
    finally:
        for client in pubs:
            client.abort()


async def _offer_paced(
    args: argparse.Namespace,
    line: str,
    pubs: list[MqttClient],
    prefixes: list[bytes],
    padding: bytes,
    parent: int,
) -> tuple[int, int, list[int]]:
    """Send ``--rate`` msg/s for the request's seconds; (sent, start ns, send lags ns)."""
    total = int(float(json.loads(line)["seconds"]) * args.rate)
    interval_ns = int(1e9 / args.rate)
    publishers, subscribers = len(pubs), len(prefixes)
    lags: list[int] = []
    started = time.monotonic_ns()
    sent = 0
    while sent < total:
        now = time.monotonic_ns()
        due = min(total, (now - started) // interval_ns + 1)
        while sent < due:
            scheduled = started + sent * interval_ns
            at = time.monotonic_ns()
            stamp = _STAMP.pack(scheduled, at, sent)
            pubs[sent % publishers].send(prefixes[sent % subscribers] + stamp + padding)
            lags.append(at - scheduled)
            sent += 1
        # The loop writes what the sockets did not take (nearly never: small
        # frames), before the sleep, so a wake-up sends at once.
        await asyncio.sleep(0)
        delay = (started + sent * interval_ns - time.monotonic_ns()) / 1e9
        if delay > 0:
            # clock_nanosleep: this process only sends, so blocking is fine,
            # and unlike the event loop's epoll timeouts (1 ms granularity) it
            # wakes within tens of microseconds (timer slack 1 ns: _tighten_timers).
            time.sleep(delay)  # noqa: ASYNC251
        if os.getppid() != parent:
            break  # the generator is gone (killed on a timeout): stop the load
    return sent, started, lags


@contextlib.contextmanager
def _no_garbage_collection() -> Iterator[None]:
    """CPython's cyclic collector off while measuring: a full collection of this
    process's heap (1,000 clients, 100,000 latencies) paused its reading for
    milliseconds, and that pause counted as the broker's latency. Reference
    counting still frees almost everything; what cycles remain wait a few seconds."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


async def fixed(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    """Open-loop fixed load: ``--rate`` msg/s over ``--publishers`` connections.

    The publishers run in a child process of their own (``fixed-publishers``)
    paced by ``clock_nanosleep``: sending from this process, whose event loop
    also reads the 1,000 subscribers' deliveries, put the generator's own lag
    into the figures (its sends waited for the loop's 1 ms timer granularity
    and for every burst of deliveries to be read: send lag p90 0.70 ms, p99
    3.2 ms against the emulator, 0.18 / 0.63 ms against mosquitto, 17:25 UTC),
    so the latency measured depended on how each broker's writes woke the
    generator. Both halves stamp and read CLOCK_MONOTONIC, which all
    processes of the machine share; the send lag is reported beside the
    latency.
    """
    scheme = TopicScheme("iotnotify", args.stage)

    def topic_of(index: int) -> str:
        return str(scheme.user_notifications(f"u{index}"))

    subscribers: int = args.subscribers
    if args.rate / args.publishers > MAX_RATE_PER_PUBLISHER:
        return {"error": f"{args.rate / args.publishers:.0f} msg/s per publisher is over 90"}
    paths = [target.path(index) for index in range(subscribers)]
    deliveries = _Deliveries()
    opening = time.perf_counter()
    clients, _, errors = await _open_many(
        target, paths, args.concurrency, deliveries, topic_of=topic_of
    )
    connect_rate = len(clients) / max(time.perf_counter() - opening, 1e-9)
    child: asyncio.subprocess.Process | None = None
    stamps: _KernelStamps | None = None
    try:
        if errors:
            return {"error": f"{len(errors)} subscribers failed, first: {errors[0]}"}
        stamps = _KernelStamps(clients, deliveries)
        loop = asyncio.get_running_loop()
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            *sys.orig_argv[1:],  # this script, with the interpreter's own options
            "--publishers-only",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdin is not None
        assert child.stdout is not None
        stdin, stdout = child.stdin, child.stdout

        async def answer() -> dict[str, Any]:
            line = await asyncio.wait_for(stdout.readline(), args.stall + 60)
            if not line:
                raise ProtocolFailure("the publishers' process ended early")
            reply: dict[str, Any] = json.loads(line)
            if "error" in reply:
                raise ProtocolFailure(reply["error"])
            return reply

        async def offer(seconds: float) -> dict[str, Any]:
            stdin.write(json.dumps({"seconds": seconds}).encode() + b"\n")
            await stdin.drain()
            return await answer()

        async def drain(expected: int) -> None:
            deadline = loop.time() + args.stall
            deliveries.waiting = True
            while deliveries.count < expected and loop.time() < deadline:
                deliveries.progress.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(deliveries.progress.wait(), args.stall)
            deliveries.waiting = False

        try:
            publishers = (await answer())["ready"]
            warm = await offer(args.warmup)
        except ProtocolFailure as exc:
            return {"error": str(exc)}
        await drain(warm["sent"])
        deliveries.count = 0
        deliveries.latencies_us.clear()
        deliveries.broker_latencies_us.clear()
        deliveries.socket_latencies_us.clear()
        if args.dump is not None:
            deliveries.record = []
        loop_before = _loop_stats(args.stats_url)
        window_start = time.time()
        meter = _CpuMeter(args.broker_pid, args.stack_pid, child.pid)
        with _no_garbage_collection():
            measured = await offer(args.duration)
            sent, started = measured["sent"], measured["started"]
            await drain(sent)
        shares = meter.shares(args.duration)
        if deliveries.record is not None:
            # CLOCK_MONOTONIC ns, as `perf record -k CLOCK_MONOTONIC` stamps
            # scheduler events: the tail can be lined up with what ran.
            args.dump.write_text(json.dumps(deliveries.record))
        stalls = _stalls_between(loop_before, _loop_stats(args.stats_url), window_start)
    finally:
        if stamps is not None:
            stamps.close()
        if child is not None and child.returncode is None:
            if child.stdin is not None:
                child.stdin.close()
            try:
                await asyncio.wait_for(child.wait(), 10)
            except TimeoutError:
                child.kill()
                await child.wait()
        for client in clients:
            client.abort()
    seconds = max(deliveries.last_ns - started, 1) / 1e9
    latencies_ms = sorted(value / 1000 for value in deliveries.latencies_us)
    broker_ms = sorted(value / 1000 for value in deliveries.broker_latencies_us)
    socket_ms = sorted(value / 1000 for value in deliveries.socket_latencies_us)
    return {
        "subscribers": len(clients),
        "connect_rate": connect_rate,
        "publishers": publishers,
        "offered_rate": args.rate,
        "sent": sent,
        "delivered": deliveries.count,
        "seconds": seconds,
        "rate": deliveries.count / seconds,
        "p50_ms": statistics.median(latencies_ms) if latencies_ms else float("nan"),
        "p90_ms": _percentile(latencies_ms, 0.90),
        "p99_ms": _percentile(latencies_ms, 0.99),
        "p999_ms": _percentile(latencies_ms, 0.999),
        "max_ms": latencies_ms[-1] if latencies_ms else float("nan"),
        "broker_p50_ms": _percentile(broker_ms, 0.50),
        "broker_p99_ms": _percentile(broker_ms, 0.99),
        "socket_stamped": len(socket_ms),
        "socket_p50_ms": _percentile(socket_ms, 0.50),
        "socket_p90_ms": _percentile(socket_ms, 0.90),
        "socket_p99_ms": _percentile(socket_ms, 0.99),
        "socket_p999_ms": _percentile(socket_ms, 0.999),
        **{key: value for key, value in measured.items() if key.startswith("send_lag")},
        **shares,
        **stalls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("fanout", "idle", "fixed"))
    parser.add_argument("--url", required=True, help="ws://host:port/mqtt or tcp://host:port")
    parser.add_argument("--transport", choices=("ws", "tcp"), default="ws")
    parser.add_argument("--keys", type=Path, help="sign URLs with these keys (SigV4)")
    parser.add_argument("--broker-pid", type=int, default=0)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--stall", type=float, default=5.0, help="seconds without progress")
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--publishers", type=int, default=400, help="fixed: connections")
    parser.add_argument("--rate", type=float, default=10000.0, help="fixed: msg/s offered")
    parser.add_argument("--duration", type=float, default=10.0, help="fixed: seconds measured")
    parser.add_argument("--warmup", type=float, default=2.0, help="fixed: seconds not measured")
    parser.add_argument("--stage", default="bench", help="fixed: topics iotnotify/{stage}/...")
    parser.add_argument("--stack-pid", type=int, default=0, help="fixed: iotnotify local's pid")
    parser.add_argument("--stats-url", help="fixed: the emulator's /_emulator/stats (loop stalls)")
    parser.add_argument(
        "--publishers-only", action="store_true", help="fixed: the publishers' child process"
    )
    parser.add_argument(
        "--dump",
        type=Path,
        help="fixed: write every measured delivery's [sent, kernel receive, read] ns here (JSON)",
    )
    args = parser.parse_args()
    if args.size < _STAMP.size:
        parser.error(f"--size must be at least {_STAMP.size}")
    raise_fd_limit()
    keys = KeyFile.read(args.keys) if args.keys else None
    target = Target(args.url, args.transport, keys)
    if args.mode == "fanout":
        print(json.dumps(asyncio.run(fanout(args, target))), flush=True)
    elif args.mode == "fixed" and args.publishers_only:
        asyncio.run(fixed_publishers(args, target))
    elif args.mode == "fixed":
        print(json.dumps(asyncio.run(fixed(args, target))), flush=True)
    else:
        asyncio.run(idle(args, target))


if __name__ == "__main__":
    main()
