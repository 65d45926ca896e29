"""Process-wide tuning for a process whose main job is serving the emulator.

CPython's cyclic garbage collector walks every tracked object in a full
collection; with thousands of connections that pause reached 64-92 ms in
the fan-out benchmark and set the emulator's p99 delivery latency. After
start-up the long-lived objects (modules, the app, certificates) are moved
out of the collector's view with ``gc.freeze()``, and young collections run
less often. Measured with ``bench/emulator_bench.py --only fan-out``: p99
from 42-82 ms to 12-15 ms at the same throughput. This is a process-wide
setting, so only entry points call it (never the library on import).

The event loop is uvloop's (libuv) when it is installed (the ``[local]``
extra installs it where it exists: not on Windows), asyncio's otherwise:
each delivery is a WebSocket write and a wake-up of the loop, and uvloop
does both in C. :func:`new_event_loop` is what the emulator's own loops
(``EmulatorThread`` in ``iotnotify local`` and tests, ``python -m
iotnotify_emulator``) are made with.
"""

from __future__ import annotations

import asyncio
import gc
import math
import sys
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

__all__ = [
    "SERVING_SWITCH_INTERVAL",
    "LoopMonitor",
    "event_loop_name",
    "new_event_loop",
    "run",
    "shorten_switch_interval",
    "tune_gc_for_serving",
]

_T = TypeVar("_T")

# How long a thread waiting for the GIL lets the holder run before asking it
# to let go (CPython's default is 5 ms).
SERVING_SWITCH_INTERVAL: Final = 0.0005

# Young-generation threshold: CPython's default of 700 allocations triggers a
# collection every few hundred messages under load.
_GEN0_THRESHOLD: Final = 10_000


def tune_gc_for_serving() -> None:
    """Freeze what exists now and collect less often; call once after start-up."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(_GEN0_THRESHOLD, gen1, gen2)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when installed, else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run(main: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run`` on a loop from :func:`new_event_loop`."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


def event_loop_name() -> str:
    """Which loop :func:`new_event_loop` gives (``uvloop`` or ``asyncio``), for reports."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def shorten_switch_interval(seconds: float = SERVING_SWITCH_INTERVAL) -> None:
    """Let a thread waiting for the GIL in after ``seconds`` instead of CPython's 5 ms.

    For a process where a latency-sensitive thread shares the interpreter
    with other busy threads (``iotnotify local``: the threads answering the
    emulator process's credential lookups and rule actions, beside moto's
    server, the API, the SQS poller and the data directory's autosave).
    Each time such a thread wakes from waiting it needs the GIL back; while
    another thread runs Python code, CPython makes it wait the switch
    interval before asking that thread to let go, so every wake-up could
    add up to 5 ms. Process-wide: entry points call it, never the library.
    """
    sys.setswitchinterval(seconds)


class LoopMonitor:
    """Measures how late the event loop runs a timer: the stalls every message waits out.

    A callback is scheduled every ``interval`` seconds; how much later than
    asked it runs is time the loop spent on something else in one go (a
    long callback, a garbage collection, the GIL held by another thread,
    the process descheduled). Lateness over ``threshold`` counts as a stall.
    :meth:`snapshot` gives the counters and the most recent stalls with
    their wall-clock time, so a benchmark can take the stalls of its own
    window (``GET /_emulator/stats`` -> ``loop``). Costs one timer callback
    per ``interval`` (200/s by default) while it runs.

    It runs only while watched: :meth:`watch` (each ``GET
    /_emulator/stats``) starts it, or keeps it going, for ``watch_seconds``
    (10 minutes by default); :meth:`start` runs it until :meth:`stop`. An
    emulator nobody measures then wakes for nothing (200 wake-ups a second
    kept an idle ``iotnotify local`` at about 1 % of a CPU).
    """

    def __init__(
        self,
        *,
        interval: float = 0.005,
        threshold: float = 0.005,
        keep: int = 512,
        watch_seconds: float = 600.0,
    ) -> None:
        self.interval = interval
        self.threshold = threshold
        self.watch_seconds = watch_seconds
        self._watched_until = math.inf  # loop time; start() runs until stop()
        self.stalls = 0
        self.stalled_seconds = 0.0
        self.max_lag = 0.0
        self.recent: deque[tuple[float, float]] = deque(maxlen=keep)  # (unix time, seconds)
        # A Handle, not always a TimerHandle: uvloop's call_at runs a timer
        # due within half a millisecond through call_soon, whose Handle has
        # no when(); so the monitor keeps the due time itself.
        self._handle: asyncio.Handle | None = None
        self._due = 0.0

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Measure on ``loop`` (call on it) until :meth:`stop`."""
        self._watched_until = math.inf
        if self._handle is None:
            self._schedule(loop)

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Measure on ``loop`` (call on it) for the next ``watch_seconds``:
        starts the monitor if it is stopped; never shortens a :meth:`start`."""
        if self._handle is None:
            self._watched_until = loop.time() + self.watch_seconds
            self._schedule(loop)
        elif self._watched_until != math.inf:
            self._watched_until = loop.time() + self.watch_seconds

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due = loop.time() + self.interval
        self._handle = loop.call_at(self._due, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        lag = loop.time() - self._due
        if lag > self.threshold:
            self.stalls += 1
            self.stalled_seconds += lag
            self.max_lag = max(self.max_lag, lag)
            self.recent.append((time.time(), lag))
        if loop.time() >= self._watched_until:
            self._handle = None  # nobody is looking: stop waking the loop
            return
        self._schedule(loop)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def snapshot(self) -> dict[str, object]:
        """Counters (milliseconds) and ``recent``: ``[unix time, lag ms]`` of the last stalls."""
        return {
            "interval_ms": self.interval * 1000,
            "threshold_ms": self.threshold * 1000,
            "stalls": self.stalls,
            "stalled_ms": round(self.stalled_seconds * 1000, 1),
            "max_lag_ms": round(self.max_lag * 1000, 2),
            "recent": [[round(at, 3), round(lag * 1000, 2)] for at, lag in self.recent],
            # False: not measuring (nobody asked lately); the counters are
            # those of the times it was.
            "running": self.running,
            # Collections so far per generation (a full one walks every live object).
            "gc_collections": [generation["collections"] for generation in gc.get_stats()],
        }
