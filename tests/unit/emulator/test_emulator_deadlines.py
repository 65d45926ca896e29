"""Deadlines: many call_at callbacks on one loop timer, in time order, cancellable."""

from __future__ import annotations

import asyncio
from typing import Any

from iotnotify_emulator.deadlines import Deadlines


async def test_callbacks_run_at_their_time_in_time_order() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    ran: list[tuple[str, float]] = []
    done = asyncio.Event()
    start = loop.time()

    def note(name: str) -> None:
        ran.append((name, loop.time()))
        if len(ran) == 3:
            done.set()

    # Given three entries added out of order (the earliest last)
    deadlines.call_at(start + 0.06, lambda: note("c"))
    deadlines.call_at(start + 0.04, lambda: note("b"))
    deadlines.call_at(start + 0.02, lambda: note("a"))
    # When their times come
    await asyncio.wait_for(done.wait(), 5)
    # Then each ran once, in time order, not before its time
    assert [name for name, _ in ran] == ["a", "b", "c"]
    for (_, at), due in zip(ran, (0.02, 0.04, 0.06), strict=True):
        assert at >= start + due - 0.001  # the loop's clock has millisecond steps
    assert len(deadlines) == 0


async def test_a_cancelled_callback_never_runs_and_is_released_at_once() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    ran: list[str] = []
    done = asyncio.Event()
    cancelled = deadlines.call_at(loop.time() + 0.01, lambda: ran.append("cancelled"))
    deadlines.call_at(loop.time() + 0.03, lambda: (ran.append("kept"), done.set()))
    deadlines.cancel(cancelled)
    deadlines.cancel(cancelled)  # twice: nothing
    assert len(deadlines) == 1
    await asyncio.wait_for(done.wait(), 5)
    assert ran == ["kept"]


async def test_a_callback_may_add_the_next_deadline() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    ticks: list[float] = []
    done = asyncio.Event()

    def tick() -> None:
        ticks.append(loop.time())
        if len(ticks) < 3:
            deadlines.call_at(loop.time() + 0.01, tick)
        else:
            done.set()

    deadlines.call_at(loop.time() + 0.01, tick)
    await asyncio.wait_for(done.wait(), 5)
    assert len(ticks) == 3


async def test_a_failing_callback_is_reported_and_the_others_still_run() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        deadlines = Deadlines()
        done = asyncio.Event()
        when = loop.time() + 0.01

        def fail() -> None:
            raise RuntimeError("boom")

        deadlines.call_at(when, fail)
        deadlines.call_at(when, done.set)
        await asyncio.wait_for(done.wait(), 5)
    finally:
        loop.set_exception_handler(None)
    assert [str(context["exception"]) for context in reported] == ["boom"]


async def test_clear_forgets_everything() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    ran: list[str] = []
    deadlines.call_at(loop.time() + 0.01, lambda: ran.append("x"))
    deadlines.clear()
    assert len(deadlines) == 0
    later = asyncio.Event()
    deadlines.call_at(loop.time() + 0.03, later.set)  # still usable afterwards
    await asyncio.wait_for(later.wait(), 5)
    assert ran == []
