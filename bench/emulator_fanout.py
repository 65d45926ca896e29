"""Fan-out throughput and publish latency of the emulator, with mosquitto as a reference.

Run: ``.venv/bin/python bench/emulator_fanout.py [--idle 1000,5000] [--active 10]``.

For each idle count N: N idle subscribers (one unrelated topic each) and
``--active`` subscribers on one fan-out topic; one publisher sends
``--messages`` QoS 0 messages. Prints delivered messages/s and the publish ->
delivery latency (p50/p99) seen by the active subscribers. Clients and
server share this process (one event loop), so figures are conservative.
When ``mosquitto`` is on PATH (``apt-get install -y mosquitto``), the same
run against mosquitto gives a reference ratio. mosquitto is driven over
plain MQTT/TCP here, so the emulator pays WebSocket framing the reference
does not; ``bench/emulator_bench.py`` (issue 3's benchmark, separate
processes) drives mosquitto's WebSocket listener, which mosquitto 2.0 starts
only beside a plain listener (see its docstring).
Everything binds 127.0.0.1 and is stopped at the end; runs are bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp

from iotnotify_emulator import EmulatorConfig, InMemoryCredentialStore, start_emulator
from iotnotify_emulator.mqtt import (
    Connack,
    Connect,
    Packet,
    Publish,
    StreamDecoder,
    Suback,
    Subscribe,
    encode,
)
from iotnotify_emulator.testing import ALLOW_ALL, RawMqttClient, presign_url

FANOUT_TOPIC = "bench/fanout"
CONNECT_BATCH = 200


@dataclass
class Result:
    target: str
    idle: int
    active: int
    messages: int
    seconds: float
    deliveries: int
    latencies_ms: list[float]

    def line(self) -> str:
        rate = self.deliveries / self.seconds if self.seconds else 0.0
        lat = sorted(self.latencies_ms) or [0.0]
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        return (
            f"{self.target:10s} idle={self.idle:5d} active={self.active:3d} "
            f"msgs={self.messages:5d} deliveries={self.deliveries:6d} "
            f"rate={rate:10.0f} msg/s  latency p50={statistics.median(lat):7.2f} ms "
            f"p99={p99:7.2f} ms"
        )


class TcpMqttClient:
    """The bench's subset of RawMqttClient over plain TCP (mosquitto's websockets
    listener does not start in every environment, plain MQTT always does)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = StreamDecoder()
        self._pending: list[Packet] = []

    @classmethod
    async def connect(cls, port: int, client_id: str) -> TcpMqttClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        writer.write(encode(Connect(client_id=client_id, keepalive=600)))
        reply = await client._next()
        if not isinstance(reply, Connack) or reply.return_code:
            raise RuntimeError(f"mosquitto refused: {reply!r}")
        return client

    async def _next(self) -> Packet:
        while not self._pending:
            data = await self._reader.read(65536)
            if not data:
                raise EOFError
            self._pending.extend(self._decoder.feed(data))
        return self._pending.pop(0)

    async def subscribe(self, topic: str) -> None:
        self._writer.write(encode(Subscribe(packet_id=1, topics=((topic, 0),))))
        if not isinstance(await self._next(), Suback):
            raise RuntimeError("expected SUBACK")

    async def publish(self, topic: str, payload: bytes) -> None:
        self._writer.write(encode(Publish(topic=topic, payload=payload)))
        await self._writer.drain()

    async def next_publish(self, within: float) -> Publish:
        async with asyncio.timeout(within):
            packet = await self._next()
        assert isinstance(packet, Publish)
        return packet

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Client(Protocol):
    async def subscribe(self, topic: str) -> object: ...

    async def publish(self, topic: str, payload: bytes) -> object: ...

    async def next_publish(self, within: float) -> Publish: ...

    async def close(self) -> None: ...


Connector = Callable[[str], Awaitable[_Client]]


async def _connect_many(connect: Connector, count: int, prefix: str) -> list[_Client]:
    clients: list[_Client] = []
    for start in range(0, count, CONNECT_BATCH):
        batch = range(start, min(start + CONNECT_BATCH, count))
        clients.extend(await asyncio.gather(*(connect(f"{prefix}{i}") for i in batch)))
    return clients


async def _run(
    target: str, connect: Connector, idle: int, active: int, messages: int, size: int
) -> Result:
    idlers = await _connect_many(connect, idle, "idle")
    await asyncio.gather(*(c.subscribe(f"idle/{i}") for i, c in enumerate(idlers)))
    actives = await _connect_many(connect, active, "active")
    await asyncio.gather(*(c.subscribe(FANOUT_TOPIC) for c in actives))
    (publisher,) = await _connect_many(connect, 1, "publisher")
    latencies: list[float] = []

    async def consume(client: _Client) -> int:
        got = 0
        while got < messages:
            message = await client.next_publish(within=30)
            sent = float(message.payload[:20].decode())
            latencies.append((time.perf_counter() - sent) * 1000)
            got += 1
        return got

    consumers = [asyncio.create_task(consume(c)) for c in actives]
    padding = b" " * max(0, size - 20)
    started = time.perf_counter()
    for index in range(messages):
        stamp = f"{time.perf_counter():20.6f}".encode()
        await publisher.publish(FANOUT_TOPIC, stamp + padding)
        if index % 50 == 0:
            await asyncio.sleep(0)  # yield so deliveries flow, as a paced publisher would
    delivered = sum(await asyncio.gather(*consumers))
    elapsed = time.perf_counter() - started
    for client in [*idlers, *actives, publisher]:
        await client.close()
    return Result(target, idle, active, messages, elapsed, delivered, latencies)


@contextlib.asynccontextmanager
async def _emulator() -> AsyncIterator[Connector]:
    store = InMemoryCredentialStore()
    credential = store.issue([ALLOW_ALL], expires_in=None)
    config = EmulatorConfig(wss_port=None, outbound_queue_bytes=1 << 30, publish_rate_limit=None)
    async with (
        start_emulator(config, credentials=store) as emulator,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
    ):

        async def connect(client_id: str) -> _Client:
            url = presign_url(emulator.ws_url, credential, region=config.region)
            return await RawMqttClient.connect(url, client_id=client_id, session=http)

        yield connect


@contextlib.asynccontextmanager
async def _mosquitto(binary: str) -> AsyncIterator[Connector]:
    port = _free_port()
    with tempfile.TemporaryDirectory() as directory:
        conf = Path(directory) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n"
        )
        process = await asyncio.create_subprocess_exec(
            binary, "-c", str(conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            await _wait_for_port(port, process)

            async def connect(client_id: str) -> _Client:
                return await TcpMqttClient.connect(port, client_id)

            yield connect
        finally:
            process.terminate()
            await process.wait()


async def _wait_for_port(port: int, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError("mosquitto exited at start-up")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        await asyncio.sleep(0.05)  # a foreign process: polling its port is the only signal
    raise RuntimeError("mosquitto did not open its port")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", default="1000,5000", help="comma-separated idle counts")
    parser.add_argument("--active", type=int, default=10)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=256, help="payload bytes (>= 20)")
    parser.add_argument("--no-mosquitto", action="store_true")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    idles = [int(x) for x in args.idle.split(",") if x]
    needed = 2 * (max(idles) + args.active + 1) + 100
    if needed > hard:
        raise SystemExit(f"needs {needed} file descriptors, the limit is {hard}")
    mosquitto = None if args.no_mosquitto else shutil.which("mosquitto")
    print(f"file descriptors: {soft} -> {hard}; mosquitto: {mosquitto or 'not found'}")
    for idle in idles:
        async with _emulator() as connect:
            emu = await _run("emulator", connect, idle, args.active, args.messages, args.size)
        print(emu.line(), flush=True)
        if mosquitto:
            async with _mosquitto(mosquitto) as connect:
                ref = await _run("mosquitto", connect, idle, args.active, args.messages, args.size)
            print(ref.line(), flush=True)
            ratio = (emu.deliveries / emu.seconds) / (ref.deliveries / ref.seconds)
            print(f"{'':10s} emulator/mosquitto throughput ratio: {ratio:.2f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
