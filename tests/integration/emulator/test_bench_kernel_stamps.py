"""The fixed load's socket-level latency (``bench/bench_loadgen.py``, ``_KernelStamps``)
against a stand-in broker on loopback: plain MQTT over TCP, no emulator needed."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _loadgen(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # The bench's scripts import each other (benchlib) from their folder.
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    return importlib.import_module("bench_loadgen")


@contextlib.contextmanager
def _kernel_stamping_on() -> Iterator[None]:
    """Holds a TCP socket with receive timestamps on until a packet came stamped.

    Linux turns receive timestamping on for the whole machine lazily: the
    first socket that asks (SO_TIMESTAMPNS) only schedules the switch on a
    workqueue (``net_enable_timestamp``), and a segment that arrives before
    that work ran carries no timestamp. On a loaded machine the test's two
    deliveries could come first (seen once in a CI run). The bench counts
    such deliveries as unstamped; this test is about the stamps, so it waits
    for the switch, bounded, and keeps it on while the test runs.
    """
    with socket.create_server(("127.0.0.1", 0)) as server:
        sender = socket.create_connection(server.getsockname())
        receiver, _ = server.accept()
        with sender, receiver:
            receiver.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_TIMESTAMPNS", 35), 1)
            deadline = time.monotonic() + 10
            while True:
                sender.sendall(b"x")
                _, ancillary, _, _ = receiver.recvmsg(16, socket.CMSG_SPACE(16))
                if ancillary:
                    break
                assert time.monotonic() < deadline, "the kernel never stamped a packet"
                time.sleep(0.01)  # the kernel's own workqueue: no event to wait on
            yield


async def test_a_subscriber_closed_before_the_stamps_start_counts_as_lost_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with _kernel_stamping_on():
        await _a_subscriber_closed_before_the_stamps_start(monkeypatch)


async def _a_subscriber_closed_before_the_stamps_start(monkeypatch: pytest.MonkeyPatch) -> None:
    lg = _loadgen(monkeypatch)
    # Given three subscribers of a stand-in broker, the second of which the
    # broker closed after it subscribed (while the connect storm went on)
    writers: list[asyncio.StreamWriter] = []
    accepted = asyncio.Event()

    async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        if len(writers) == 3:
            accepted.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    deliveries = lg._Deliveries()
    clients = []
    lost = asyncio.Event()

    class Watched(lg.MqttClient):  # type: ignore[misc]
        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            lost.set()

    try:
        for _ in range(3):
            _, client = await loop.create_connection(
                lambda: Watched(ws=False, host="127.0.0.1", path="/", on_publish=deliveries),
                "127.0.0.1",
                port,
            )
            clients.append(client)
        await asyncio.wait_for(accepted.wait(), 10)
        writers[1].close()
        await asyncio.wait_for(lost.wait(), 10)
        assert clients[1].closed

        # When the generator starts reading them with kernel timestamps
        stamps = lg._KernelStamps(clients, deliveries)
        try:
            # and the broker delivers one QoS 0 PUBLISH to each open one
            now = time.monotonic_ns()
            body = b"\x00\x01t" + lg._STAMP.pack(now, now, 0)
            for writer in (writers[0], writers[2]):
                writer.write(bytes([0x30, len(body)]) + body)
            deliveries.waiting = True  # each delivery sets deliveries.progress
            async with asyncio.timeout(10):
                while deliveries.count < 2:
                    deliveries.progress.clear()
                    await deliveries.progress.wait()
        finally:
            stamps.close()

        # Then both were read, each with the kernel's receive timestamp between
        # the send and the read, and the closed one simply delivered nothing
        assert deliveries.count == 2
        assert len(deliveries.socket_latencies_us) == 2
        assert all(value >= 0 for value in deliveries.socket_latencies_us)
        assert all(
            socket <= read
            for socket, read in zip(
                deliveries.socket_latencies_us, deliveries.broker_latencies_us, strict=True
            )
        )
    finally:
        for client in clients:
            client.abort()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_clock_pair_read_across_a_pause_does_not_shift_the_stamps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lg = _loadgen(monkeypatch)
    # Given the kernel-stamp reader (no subscribers) and clocks whose
    # realtime is 1,000 s ahead of monotonic
    stamps = lg._KernelStamps([], lg._Deliveries())
    monotonic = iter([100, 200, 5_000, 5_000 + 3_000_000, 9_000, 9_100])
    realtime = iter([1_000_000_000_150, 1_000_000_003_000, 1_000_000_009_050])
    monkeypatch.setattr(lg.time, "monotonic_ns", lambda: next(monotonic))
    monkeypatch.setattr(lg.time, "time_ns", lambda: next(realtime))

    # When the offset is read with both monotonic readings close together,
    # then once with a 3 ms pause between them, then close together again
    first = stamps._clock_offset()
    paused = stamps._clock_offset()
    third = stamps._clock_offset()

    # Then the pair across the pause is not used: the last good offset stands
    assert first == 1_000_000_000_000
    assert paused == first
    assert third == 1_000_000_000_000
    stamps.close()
