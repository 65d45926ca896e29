"""The emulator's event loop is uvloop's when installed (the [local] extra installs it)."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import pytest
import uvloop

from iotnotify_emulator import EmulatorConfig, InMemoryCredentialStore
from iotnotify_emulator.runtime import (
    LoopMonitor,
    event_loop_name,
    new_event_loop,
    run,
    shorten_switch_interval,
)
from iotnotify_emulator.server import EmulatorThread


def test_new_event_loop_and_run_use_uvloop() -> None:
    loop = new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()

    async def which() -> type[asyncio.AbstractEventLoop]:
        return type(asyncio.get_running_loop())

    assert run(which()) is uvloop.Loop
    assert event_loop_name() == "uvloop"


def test_the_emulator_thread_of_iotnotify_local_serves_on_uvloop() -> None:
    # Given the emulator on its own thread, as `iotnotify local` runs it
    config = EmulatorConfig(wss_port=None)
    with EmulatorThread(config, credentials=InMemoryCredentialStore()) as emulator:

        async def which() -> type[asyncio.AbstractEventLoop]:
            return type(asyncio.get_running_loop())

        # Then its loop is uvloop's
        assert emulator._loop is not None
        found = asyncio.run_coroutine_threadsafe(which(), emulator._loop).result(timeout=10)
        assert found is uvloop.Loop
        assert emulator.stats()["connections_current"] == 0


def test_shorten_switch_interval_lets_a_waiting_thread_in_after_half_a_millisecond() -> None:
    before = sys.getswitchinterval()
    try:
        shorten_switch_interval()
        assert sys.getswitchinterval() == pytest.approx(0.0005)
        assert sys.getswitchinterval() < before
    finally:
        sys.setswitchinterval(before)


def test_the_loop_monitor_counts_a_callback_that_holds_the_loop() -> None:
    async def main() -> dict[str, Any]:
        monitor = LoopMonitor(interval=0.001, threshold=0.005)
        monitor.start(asyncio.get_running_loop())
        await asyncio.sleep(0.01)
        quiet = monitor.snapshot()
        # When a callback blocks the loop for 50 ms
        time.sleep(0.05)  # noqa: ASYNC251 - blocking the loop is the point
        await asyncio.sleep(0.01)
        monitor.stop()
        return {"quiet": quiet, "after": monitor.snapshot()}

    result = asyncio.run(main())
    after = result["after"]
    # Then it is counted as a stall of at least the time the loop was held
    assert after["stalls"] > result["quiet"]["stalls"]
    assert after["max_lag_ms"] >= 45
    assert after["recent"][-1][1] >= 45


def test_the_loop_monitor_keeps_ticking_when_uvloop_runs_a_due_timer_at_once() -> None:
    # uvloop's call_at turns a delay that rounds to 0 ms into call_soon, whose
    # Handle has no when(): the emulator's process, descheduled for 5 ms
    # between the monitor's reading of the clock and its call_at, got one.
    errors: list[dict[str, Any]] = []

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        # Given a monitor whose timer is always due at once (interval 0)
        monitor = LoopMonitor(interval=0.0, threshold=0.005)
        monitor.start(loop)
        await asyncio.sleep(0.01)
        # When a callback then holds the loop for 50 ms
        time.sleep(0.05)  # noqa: ASYNC251 - blocking the loop is the point
        await asyncio.sleep(0.01)
        monitor.stop()
        return monitor.snapshot()

    after = run(main())  # on uvloop, as the emulator runs
    # Then nothing failed in the loop, and the hold was still measured
    assert errors == []
    assert after["stalls"] >= 1
    assert after["max_lag_ms"] >= 45


def test_a_watched_loop_monitor_stops_waking_the_loop_when_nobody_asks() -> None:
    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        monitor = LoopMonitor(interval=0.001, threshold=0.005, watch_seconds=0.05)
        # Given a monitor nobody started: it schedules nothing
        idle = monitor.running
        # When someone asks for its figures
        monitor.watch(loop)
        watched = monitor.running
        time.sleep(0.02)  # noqa: ASYNC251 - a stall while watched
        await asyncio.sleep(0.01)
        counted = monitor.snapshot()["stalls"]
        # Then, once nobody has asked for longer than its watch, it stops
        await asyncio.sleep(0.1)
        after_watch = monitor.running
        # and a started one is not stopped by a watch running out
        monitor.start(loop)
        monitor.watch(loop)
        await asyncio.sleep(0.1)
        started = monitor.running
        monitor.stop()
        return {
            "idle": idle,
            "watched": watched,
            "counted": counted,
            "after_watch": after_watch,
            "started": started,
            "stopped": monitor.snapshot()["running"],
        }

    result = run(main())
    assert result.pop("counted") >= 1
    assert result == {
        "idle": False,
        "watched": True,
        "after_watch": False,
        "started": True,
        "stopped": False,
    }
