"""Issue 10, denial of service on the emulator's HTTP/WebSocket port and its admin endpoints.

Bounded: a few dozen sockets on loopback, timeouts shrunk to fractions of a
second through configuration; the tests wait for events (EOF on a socket,
an answer), never assert durations.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from iotnotify_emulator import EmulatorConfig, InMemoryCredentialStore, start_emulator
from iotnotify_emulator.http_guard import ServerLimits
from iotnotify_emulator.server import ADMIN_HEADER
from iotnotify_emulator.testing import ALLOW_ALL, Harness

HALF_OPEN = 40
HALF_REQUEST = b"GET /_emulator/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


@pytest.fixture
async def guarded() -> AsyncIterator[Harness]:
    store = InMemoryCredentialStore()
    config = EmulatorConfig(
        wss_port=None,
        http_limits=ServerLimits(header_timeout=0.5, idle_timeout=0.5, max_connections=60),
    )
    async with start_emulator(config, credentials=store) as emulator:
        harness = Harness(emulator=emulator, store=store)
        yield harness
        await harness.aclose()


async def half_open(
    port: int, count: int
) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    sockets = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HALF_REQUEST)
        await writer.drain()
        sockets.append((reader, writer))
    return sockets


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server closes the connection (EOF or reset) within a generous bound."""
    try:
        data = await asyncio.wait_for(reader.read(65536), timeout=30)
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return data == b""


async def get_stats(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(url + "/_emulator/stats", headers=headers or {}) as response,
    ):
        return response.status, await response.json()


async def test_half_sent_requests_are_closed_and_others_still_served(guarded: Harness) -> None:
    emulator = guarded.emulator
    # Given 40 connections that each sent half a request header and stopped
    sockets = await half_open(emulator.ws_port, HALF_OPEN)
    # When a normal client asks something meanwhile, Then it is served
    status, stats = await get_stats(emulator.data_url)
    assert status == 200, stats
    # and an MQTT client still connects
    client = await guarded.connect(guarded.subscriber("alice"), "alice.ok")
    await client.disconnect()
    # And every half-open connection is closed by the server (header timeout)
    closed = await asyncio.gather(*(closed_by_server(reader) for reader, _ in sockets))
    assert all(closed), closed.count(False)
    for _, writer in sockets:
        writer.close()


async def test_connections_over_the_cap_are_closed_at_once(guarded: Harness) -> None:
    emulator = guarded.emulator
    cap = emulator.config.http_limits.max_connections
    # Given the port at its connection cap with silent connections
    sockets = await half_open(emulator.ws_port, cap + 10)
    # Then the connections beyond the cap are closed (the process keeps its descriptors)
    extra = await asyncio.gather(*(closed_by_server(reader) for reader, _ in sockets[cap:]))
    assert all(extra)
    for _, writer in sockets:
        writer.close()
    # and once the silent ones are gone, the port serves again
    await asyncio.gather(*(closed_by_server(reader) for reader, _ in sockets[:cap]))
    assert (await get_stats(emulator.data_url))[0] == 200


async def test_router_errors_are_json(guarded: Harness) -> None:
    async with aiohttp.ClientSession() as http:
        for method, path, status in (
            ("GET", "/no/such/thing", 404),
            ("DELETE", "/_emulator/stats", 405),
        ):
            async with http.request(method, guarded.emulator.data_url + path) as response:
                assert response.status == status
                assert response.content_type == "application/json"
                assert "message" in await response.json()
        async with http.get(
            guarded.emulator.data_url + "/_emulator/stats", headers={"X-Big": "a" * 9000}
        ) as response:
            assert response.status == 431
            assert "message" in await response.json()


async def test_stats_without_the_secret_name_nobody(guarded: Harness) -> None:
    emulator = guarded.emulator
    # Given a refusal that names a principal, a client id and an address
    credential = guarded.subscriber("alice")
    with pytest.raises(Exception):  # noqa: B017 - the refusal's shape is not the point
        await guarded.connect(credential, "bob.intruder")
    assert emulator.stats()["recent_refusals"], "the refusal was recorded"
    # When anyone asks for stats without the secret
    status, public = await get_stats(emulator.data_url)
    # Then counters are there but no principal, client id or address
    assert status == 200
    assert public["recent_refusals"] == []
    assert "connections_current" in public
    text = json.dumps(public)
    for secret_detail in ("bob.intruder", credential.principal_id, "127.0.0.1"):
        assert secret_detail not in text
    # While the holder of the per-start secret sees the records
    status, full = await get_stats(emulator.data_url, {ADMIN_HEADER: emulator.admin_secret})
    assert status == 200
    assert "bob.intruder" in json.dumps(full)


async def test_tls_connections_that_never_finish_the_handshake_are_closed() -> None:
    # asyncio holds an unfinished TLS handshake for 60 s by default, outside
    # the request handler's header deadline and the connection cap: silent
    # sockets on the wss:// port would pin descriptors six times longer than
    # on ws://.
    config = EmulatorConfig(
        http_limits=ServerLimits(header_timeout=0.5, idle_timeout=0.5, max_connections=60)
    )
    async with start_emulator(config, credentials=InMemoryCredentialStore()) as emulator:
        assert emulator.wss_port is not None
        # Given connections to the TLS port that send nothing, or half a ClientHello
        sockets = []
        for index in range(HALF_OPEN):
            reader, writer = await asyncio.open_connection("127.0.0.1", emulator.wss_port)
            if index % 2:
                writer.write(b"\x16\x03\x01\x02\x00")
                await writer.drain()
            sockets.append((reader, writer))
        # Then the server closes every one of them within the header timeout's bound
        closed = await asyncio.gather(*(closed_by_server(reader) for reader, _ in sockets))
        assert all(closed), closed.count(False)
        for _, writer in sockets:
            writer.close()


async def test_a_body_its_content_encoding_cannot_decode_is_a_400_not_a_500(
    guarded: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # aiohttp inflates a Content-Encoding: gzip body as it is read; one that is
    # not gzip at all raised out of the handler: a 500 and a traceback per request.
    headers = {
        "Content-Encoding": "gzip",
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAX/20260101/us-east-1/iotdata/"
        "aws4_request, SignedHeaders=host, Signature=00",
        "X-Amz-Date": "20260101T000000Z",
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            guarded.emulator.data_url + "/topics/a?qos=0", data=b"not gzip", headers=headers
        ) as response,
    ):
        assert response.status == 400
        assert "message" in json.loads(await response.text())
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


class _BrokenStore(InMemoryCredentialStore):
    """A store whose look-up fails, as a credential back end that is down would."""

    def lookup(self, access_key_id: str) -> None:
        raise RuntimeError("credential back end unavailable")


async def test_an_upgrade_that_fails_unexpectedly_is_a_json_500() -> None:
    # Given an emulator whose credential look-up raises (GET /mqtt is served
    # without the error wrapper other routes get: the protocol's error path)
    store = _BrokenStore()
    async with start_emulator(EmulatorConfig(wss_port=None), credentials=store) as emulator:
        url = Harness(emulator=emulator, store=store).url(store.issue([ALLOW_ALL]))
        # When a client asks for the WebSocket upgrade
        headers = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Protocol": "mqtt",
        }
        async with (
            aiohttp.ClientSession() as http,
            http.get(url.replace("ws://", "http://"), headers=headers) as response,
        ):
            # Then the answer is the same JSON error every other route gives
            assert response.status == 500
            assert response.content_type == "application/json"
            assert "message" in await response.json()


async def test_a_post_to_the_websocket_path_is_a_json_405(guarded: Harness) -> None:
    # POST /mqtt is routed through the error wrapper (only GET /mqtt is not)
    async with (
        aiohttp.ClientSession() as http,
        http.post(guarded.emulator.data_url + "/mqtt") as response,
    ):
        assert response.status == 405
        assert response.content_type == "application/json"
        assert response.headers["Allow"] == "GET,HEAD"
        assert "message" in await response.json()
