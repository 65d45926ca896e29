"""A loopback TCP proxy that adds a fixed delay to every request, for ``fanout_latency.py``.

Run: ``python bench/latency_proxy.py --upstream iot=127.0.0.1:PORT --upstream
aws=127.0.0.1:PORT --delay-ms 15 --info-file INFO.json``. Each upstream gets
its own listening port on 127.0.0.1; the info file maps each name to it
(``{"iot": 41234, "aws": 41235, "pid": ...}``) once everything listens.
Stops on SIGTERM/SIGINT.

What "15 ms per call" means here: every byte a client sends is held for
``--delay-ms`` before it is forwarded, in order, and answers come back at
once. An HTTP request (headers and body, however many writes) therefore
reaches the server ``delay`` later than it was sent, and a keep-alive
connection is not reopened: the round trip of one AWS call grows by the
delay, as a client outside the region would see it. Nothing is parsed, so
the proxy costs little CPU and SigV4 signatures (which cover the ``Host``
header the client sent, proxy port included) stay valid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from collections import deque
from pathlib import Path
from typing import cast


class _Upstream(asyncio.Protocol):
    """The proxy's connection to the real server: answers go straight back."""

    def __init__(self, downstream: _Downstream) -> None:
        self._downstream = downstream
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._downstream.send_back(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._downstream.upstream_closed()


class _Downstream(asyncio.Protocol):
    """One client connection: its bytes are forwarded ``delay`` seconds later, in order."""

    def __init__(self, host: str, port: int, delay: float) -> None:
        self._host = host
        self._port = port
        self._delay = delay
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._upstream: _Upstream | None = None
        self._held: deque[tuple[float, bytes]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            _, upstream = await self._loop.create_connection(
                lambda: _Upstream(self), self._host, self._port
            )
        except OSError:
            if self._transport is not None:
                self._transport.close()
            return
        self._upstream = upstream
        self._flush()

    def data_received(self, data: bytes) -> None:
        self._held.append((self._loop.time() + self._delay, data))
        self._schedule()

    def eof_received(self) -> bool:
        self._closing = True
        self._schedule()
        return True  # keep our side open until the held bytes are out

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is None and self._held:
            self._timer = self._loop.call_at(self._held[0][0], self._flush)
        elif self._timer is None and self._closing:
            self._flush()

    def _flush(self) -> None:
        self._timer = None
        upstream = self._upstream
        if upstream is None or upstream.transport is None:
            return  # _connect flushes once connected
        now = self._loop.time()
        while self._held and self._held[0][0] <= now:
            upstream.transport.write(self._held.popleft()[1])
        if self._held:
            self._timer = self._loop.call_at(self._held[0][0], self._flush)
        elif self._closing:
            upstream.transport.close()

    def send_back(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def upstream_closed(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def serve(upstreams: dict[str, tuple[str, int]], delay: float, info_file: Path) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    ports: dict[str, int] = {}
    for name, (host, port) in upstreams.items():
        server = await loop.create_server(
            lambda host=host, port=port: _Downstream(host, port, delay),  # type: ignore[misc]
            "127.0.0.1",
            0,
        )
        servers.append(server)
        ports[name] = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    partial = info_file.with_suffix(".tmp")
    partial.write_text(json.dumps({**ports, "pid": os.getpid()}))
    partial.rename(info_file)  # atomic: the orchestrator polls for this file
    await stop.wait()
    for server in servers:
        server.close()


def _upstream(text: str) -> tuple[str, tuple[str, int]]:
    name, _, address = text.partition("=")
    host, _, port = address.rpartition(":")
    if not name or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=HOST:PORT, got {text!r}")
    return name, (host, int(port))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", type=_upstream, action="append", required=True)
    parser.add_argument("--delay-ms", type=float, default=15.0)
    parser.add_argument("--info-file", type=Path, required=True)
    args = parser.parse_args()
    runner = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop  # the proxy must not be what limits the run

        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(dict(args.upstream), args.delay_ms / 1000, args.info_file))


if __name__ == "__main__":
    main()
