"""Issue 10, "Fuzzing in CI": a seeded, bounded MQTT-over-WebSocket fuzz run.

A few thousand mutated packets over valid presigned URLs (so they reach the
decoder and the broker), then: nothing crashed (no unhandled exception on
the loop, no error logged), nothing hung (every step finished in its
timeout), every connection is gone, memory did not grow with the packet
count, and a normal client is still served. The longer run is
``bench/emulator_fuzz.py``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from iotnotify_emulator import EmulatorConfig, InMemoryCredentialStore, start_emulator
from iotnotify_emulator.fuzz import fuzz
from iotnotify_emulator.testing import ALLOW_ALL, Harness

SEED = 20261129
WARM_UP_PACKETS = 1000
PACKETS = 3000
# Memory the second, larger round may add over the warm-up round: a leak of
# even 1 KB per packet or 10 KB per connection would exceed it.
RSS_SLACK = 24 * 1024 * 1024


def _rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
async def fuzz_world() -> AsyncIterator[Harness]:
    store = InMemoryCredentialStore()
    # A short CONNECT timeout so half-sent CONNECTs do not outlive the run,
    # and persistent sessions (cleanSession=0 CONNECTs) that end soon after.
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
            await asyncio.sleep(0.05)


async def test_fuzzed_packets_neither_crash_nor_hang_nor_leak(
    fuzz_world: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    world = fuzz_world
    caplog.set_level(logging.WARNING)
    loop_errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    # Half the connections hold the product's subscriber rights, half allow everything.
    subscriber = world.subscriber("fuzz")
    everything = world.store.issue([ALLOW_ALL])
    turn = [0]

    def url() -> str:
        turn[0] += 1
        return world.url(subscriber if turn[0] % 2 else everything)

    try:
        # Given a warm-up round (imports, caches, allocator arenas)
        warm = await fuzz(url, seed=SEED, packets=WARM_UP_PACKETS)
        await _until_no_connections(world)
        before = _rss()
        # When a few thousand mutated packets are sent
        totals = await asyncio.wait_for(fuzz(url, seed=SEED + 1, packets=PACKETS), timeout=60)
        stats = await _until_no_connections(world)
        after = _rss()
    finally:
        loop.set_exception_handler(None)
    # Then the run did what it says, and nothing hung or crashed
    assert totals.packets == PACKETS
    assert totals.connections > 100
    assert totals.mutated > PACKETS // 10
    assert warm.hangs == totals.hangs == 0
    assert totals.upgrades_refused == 0
    assert loop_errors == []
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    # and the server saw and refused malformed input
    assert stats["protocol_errors"] > 0
    # And every connection is gone, with its subscriptions
    assert stats["connections_current"] == 0
    assert stats["subscriptions_current"] == 0
    # And memory stayed flat
    assert after - before < RSS_SLACK, f"RSS grew by {(after - before) / 2**20:.1f} MB"
    # And a normal client is still served
    alice = await world.connect(world.subscriber("alice"), "alice.after-fuzz")
    await alice.subscribe(world.topic_of("alice"))
    iot = world.iot_data(world.publisher())
    await asyncio.to_thread(iot.publish, topic=world.topic_of("alice"), payload=b"still here")
    assert (await alice.next_publish()).payload == b"still here"
    await alice.disconnect()
