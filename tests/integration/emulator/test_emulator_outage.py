"""Fault injection: POST /_emulator/restart drops everyone, then listens again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from iotnotify_emulator import EmulatorConfig, InMemoryCredentialStore, start_emulator
from iotnotify_emulator.server import ADMIN_HEADER, Emulator
from iotnotify_emulator.testing import Harness, RawMqttClient


@pytest.fixture
async def faulty() -> AsyncIterator[Harness]:
    store = InMemoryCredentialStore()
    config = EmulatorConfig(region="us-east-1", account_id="123456789012", fault_injection=True)
    async with start_emulator(config, credentials=store) as emulator:
        harness = Harness(emulator=emulator, store=store)
        yield harness
        await harness.aclose()


async def restart(emulator: Emulator, down: str, secret: str | None = None) -> tuple[int, dict]:
    headers = {ADMIN_HEADER: emulator.admin_secret if secret is None else secret}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{emulator.data_url}/_emulator/restart",
            params={"downSeconds": down},
            headers=headers,
        ) as response,
    ):
        return response.status, await response.json()


async def test_an_outage_drops_clients_refuses_new_ones_then_recovers(faulty: Harness) -> None:
    emulator = faulty.emulator
    credential = faulty.subscriber("alice")
    client = await faulty.connect(credential, "alice.a")
    ws_port = emulator.ws_port
    # When an outage of 1 s is injected
    status, body = await restart(emulator, "1")
    assert (status, body["downSeconds"]) == (202, 1.0)
    # Then the connected client is dropped
    await client.wait_closed(within=5)
    # And a new connection is refused while the emulator is down
    with pytest.raises(aiohttp.ClientConnectorError):
        await RawMqttClient.connect(faulty.url(credential), client_id="alice.b", within=2)
    # And it listens again on the same port afterwards
    for _ in range(100):
        if emulator.restarts == 1:
            break
        await asyncio.sleep(0.05)  # the outage task's own timer; nothing to await from here
    assert emulator.ws_port == ws_port
    again = await faulty.connect(credential, "alice.c")
    await again.disconnect()


async def test_restart_is_off_unless_asked_for(world: Harness) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{world.emulator.data_url}/_emulator/restart") as response,
    ):
        assert response.status in (404, 405)


async def test_bad_outage_lengths_are_refused(faulty: Harness) -> None:
    assert (await restart(faulty.emulator, "nope"))[0] == 400
    assert (await restart(faulty.emulator, "301"))[0] == 400


async def test_restart_needs_the_per_start_secret(faulty: Harness) -> None:
    # Given fault injection on: a caller without the secret is refused
    for secret in ("", "guess", faulty.emulator.admin_secret + "x", "é"):
        status, body = await restart(faulty.emulator, "0", secret=secret)
        assert status == 403, body
        assert "message" in body
    assert faulty.emulator.restarts == 0
    # and another emulator's secret is another value
    async with start_emulator(
        EmulatorConfig(fault_injection=True, wss_port=None), credentials=faulty.store
    ) as other:
        assert other.admin_secret != faulty.emulator.admin_secret
        assert (await restart(faulty.emulator, "0", secret=other.admin_secret))[0] == 403
