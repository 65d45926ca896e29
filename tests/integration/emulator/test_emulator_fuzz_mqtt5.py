"""The seeded fuzz run of test_emulator_fuzz.py, in MQTT 5: properties, topic
aliases, subscription options, AUTH, mutated. Bounded (1,500 packets)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from iotnotify_emulator import EmulatorConfig, InMemoryCredentialStore, start_emulator
from iotnotify_emulator.fuzz import fuzz
from iotnotify_emulator.mqtt5 import Properties
from iotnotify_emulator.testing import ALLOW_ALL, Harness

SEED = 5_2026
PACKETS = 1500


@pytest.fixture
async def fuzz_world() -> AsyncIterator[Harness]:
    store = InMemoryCredentialStore()
    config = EmulatorConfig(wss_port=None, connect_timeout=2.0, persistent_session_expiry=0.5)
    async with start_emulator(config, credentials=store) as emulator:
        harness = Harness(emulator=emulator, store=store)
        yield harness
        await harness.aclose()


async def _until_no_connections(world: Harness, within: float = 15.0) -> dict[str, Any]:
    emulator = world.emulator
    async with asyncio.timeout(within):
        while True:
            stats = emulator.stats()
            gone = not emulator._live and not len(emulator.broker.offline)  # type: ignore[union-attr]
            if stats["connections_current"] == 0 and gone:
                return stats
            await asyncio.sleep(0.05)  # polling a counter: there is no event to await


async def test_fuzzed_mqtt5_packets_neither_crash_nor_hang(
    fuzz_world: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    world = fuzz_world
    caplog.set_level(logging.WARNING)
    loop_errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    everything = world.store.issue([ALLOW_ALL])
    subscriber = world.subscriber("fuzz")
    turn = [0]

    def url() -> str:
        turn[0] += 1
        return world.url(subscriber if turn[0] % 2 else everything)

    try:
        # When mutated MQTT 5 packets are sent over valid presigned URLs
        totals = await asyncio.wait_for(
            fuzz(url, seed=SEED, packets=PACKETS, protocol_level=5), timeout=60
        )
        stats = await _until_no_connections(world)
    finally:
        loop.set_exception_handler(None)
    # Then nothing hung or crashed, and malformed input was refused
    assert totals.packets == PACKETS
    assert totals.mutated > PACKETS // 10
    assert totals.hangs == 0
    assert loop_errors == []
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert stats["protocol_errors"] > 0
    assert stats["connections_current"] == 0
    assert stats["subscriptions_current"] == 0
    # And a normal MQTT 5 client is still served, properties included
    alice = await world.connect(world.subscriber("alice"), "alice.after-fuzz", protocol_level=5)
    await alice.subscribe(world.topic_of("alice"))
    iot = world.iot_data(world.publisher())
    await asyncio.to_thread(
        iot.publish,
        topic=world.topic_of("alice"),
        payload=b"still here",
        userProperties=[{"after": "fuzz"}],
    )
    message = await alice.next_publish()
    assert message.payload == b"still here"
    assert message.properties == Properties(user_properties=(("after", "fuzz"),))
    await alice.disconnect()
