"""A longer fuzz run of the emulator's MQTT-over-WebSocket endpoint; prints its totals.

Run: ``.venv/bin/python bench/emulator_fuzz.py [--packets 100000] [--seed 1] [--rounds 10]``.

The same seeded fuzzer as ``tests/integration/emulator/test_emulator_fuzz.py``
(:mod:`iotnotify_emulator.fuzz`), for longer: ``--packets`` mutated MQTT
packets in ``--rounds`` rounds over presigned WebSockets against an emulator
in this process (127.0.0.1, free port, stopped at the end). After each round
it prints the totals so far, the emulator's live connections and RSS; at
the end, whether a normal client is still served. Exit status 1 when a step
hung, a connection outlived its round, an error was logged or the normal
client was not served. A failing seed is replayed with ``--seed``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import time
from typing import Any

from iotnotify_emulator import EmulatorConfig, InMemoryCredentialStore, start_emulator
from iotnotify_emulator.fuzz import FuzzTotals, fuzz
from iotnotify_emulator.testing import ALLOW_ALL, Harness


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _rss_mb() -> float:
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _settle(world: Harness, within: float = 15.0) -> int:
    """Live connections once the emulator has closed what the round left (0 = all gone)."""
    deadline = time.monotonic() + within
    while True:
        live = world.emulator.stats()["connections_current"] + len(world.emulator.broker.offline)
        if live == 0 or time.monotonic() > deadline:
            return int(live)
        await asyncio.sleep(0.05)


async def _normal_client_served(world: Harness) -> bool:
    alice = await world.connect(world.subscriber("alice"), "alice.after-fuzz")
    await alice.subscribe(world.topic_of("alice"))
    iot = world.iot_data(world.publisher())
    await asyncio.to_thread(iot.publish, topic=world.topic_of("alice"), payload=b"ok")
    served = (await alice.next_publish()).payload == b"ok"
    await alice.disconnect()
    return served


async def run(args: argparse.Namespace) -> int:
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _l, ctx: loop_errors.append(ctx))
    store = InMemoryCredentialStore()
    config = EmulatorConfig(wss_port=None, connect_timeout=2.0, persistent_session_expiry=0.5)
    totals = FuzzTotals()
    leftover = 0
    async with start_emulator(config, credentials=store) as emulator:
        world = Harness(emulator=emulator, store=store)
        credentials = [world.subscriber("fuzz"), store.issue([ALLOW_ALL])]
        turn = [0]

        def url() -> str:
            turn[0] += 1
            return world.url(credentials[turn[0] % 2])

        per_round = max(1, args.packets // args.rounds)
        rss_start = _rss_mb()
        started = time.perf_counter()
        print(f"fuzzing {args.packets} packets, seed {args.seed}, {args.rounds} rounds")
        print("round   packets  connections  mutated  hangs  live after  RSS MB")
        for index in range(args.rounds):
            part = await fuzz(
                url, seed=args.seed + index, packets=per_round, concurrency=args.concurrency
            )
            for name, value in part.as_dict().items():
                setattr(totals, name, getattr(totals, name) + value)
            leftover = await _settle(world)
            print(
                f"{index + 1:>5} {totals.packets:>9} {totals.connections:>12} "
                f"{totals.mutated:>8} {totals.hangs:>6} {leftover:>11} {_rss_mb():>7.1f}"
            )
            if leftover:
                break
        elapsed = time.perf_counter() - started
        rss_end = _rss_mb()
        stats = emulator.stats()
        served = await _normal_client_served(world)
        await world.aclose()
    print(f"elapsed {elapsed:.1f} s, {totals.packets / elapsed:,.0f} packets/s")
    print(f"RSS {rss_start:.1f} MB -> {rss_end:.1f} MB ({rss_end - rss_start:+.1f} MB)")
    print(
        f"totals: {totals.frames} frames, {totals.bytes_sent:,} bytes, "
        f"{totals.closed_by_server} closed by the server, "
        f"{totals.upgrades_refused} upgrades refused"
    )
    print(
        f"emulator: {stats['connections_total']} CONNECTs accepted, "
        f"{stats['protocol_errors']} protocol errors, {stats['denials']} denials, "
        f"disconnects {stats['disconnects_by_reason']}"
    )
    print(f"errors logged: {len(errors.messages)}, loop exceptions: {len(loop_errors)}")
    print(f"normal client served afterwards: {'yes' if served else 'NO'}")
    healthy = served and not leftover and not totals.hangs
    healthy = healthy and not errors.messages and not loop_errors
    for message in errors.messages[:5]:
        print(f"  error: {message}")
    return 0 if healthy else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
