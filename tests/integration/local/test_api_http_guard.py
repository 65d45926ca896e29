"""Issue 10, denial of service on the local API's port: half-sent requests are closed,
others are still served, and accept() failures are logged once per interval.

In-process and bounded: the API app with shrunk timeouts on a free loopback
port, a few dozen sockets; the tests wait for events, never time anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from iotnotify_emulator.http_guard import ServerLimits, install_accept_error_throttle
from iotnotify_local.api import LocalApi, build_runner
from iotnotify_local.authorizer import CognitoAuthorizer

HALF_REQUEST = b"GET /config.json HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


@pytest.fixture
async def api_url() -> AsyncIterator[str]:
    api = LocalApi(
        routes=[],
        authorizer=CognitoAuthorizer(
            jwks_url="http://127.0.0.1:9/jwks.json", issuer="unused", audience="unused"
        ),
        web_dir=None,
        config={"apiUrl": "here"},
        limits=ServerLimits(header_timeout=0.5, idle_timeout=0.5, max_connections=50),
    )
    runner = build_runner(api)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(65536), timeout=30)
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return data == b""


async def test_half_sent_requests_are_closed_and_others_still_served(api_url: str) -> None:
    port = int(api_url.rsplit(":", 1)[1])
    # Given 30 connections that sent half a request and went silent
    sockets = []
    for _ in range(30):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HALF_REQUEST)
        await writer.drain()
        sockets.append((reader, writer))
    # When a normal client calls the API, Then it is served
    async with aiohttp.ClientSession() as http, http.get(api_url + "/config.json") as response:
        assert response.status == 200
        assert (await response.json())["apiUrl"] == "here"
    # And the server closes every half-open connection itself
    closed = await asyncio.gather(*(closed_by_server(reader) for reader, _ in sockets))
    assert all(closed), closed.count(False)
    for _, writer in sockets:
        writer.close()


async def test_idle_keep_alive_connections_are_closed(api_url: str) -> None:
    port = int(api_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /config.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    assert head.startswith(b"HTTP/1.1 200")
    # the connection then idles: the server must end it, not keep it for an hour
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    await reader.readexactly(length)
    assert await closed_by_server(reader)
    writer.close()


async def test_accept_failures_are_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    try:
        install_accept_error_throttle(loop, interval=3600)
        install_accept_error_throttle(loop, interval=3600)  # idempotent
        caplog.set_level(logging.WARNING, logger="iotnotify_emulator.http")
        # When asyncio reports 500 failed accept() calls (EMFILE), as it does
        # once a second per listening socket while descriptors are exhausted
        for _ in range(500):
            loop.call_exception_handler(
                {
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(24, "Too many open files"),
                }
            )
        # Then one line is logged, without a traceback
        lines = [r for r in caplog.records if "accept() failed" in r.getMessage()]
        assert len(lines) == 1
        assert lines[0].exc_info is None
        # and unrelated loop errors still reach the previous handler
        seen: list[dict] = []
        loop.set_exception_handler(lambda _l, ctx: seen.append(ctx))
        install_accept_error_throttle(loop, interval=3600)
        loop.call_exception_handler({"message": "something else"})
        assert [ctx["message"] for ctx in seen] == ["something else"]
    finally:
        loop.set_exception_handler(previous)
