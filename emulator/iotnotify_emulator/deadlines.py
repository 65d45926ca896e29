"""Many per-connection deadlines on one event-loop timer.

Every connection waits for one deadline at a time: its CONNECT deadline,
then its next keepalive check, either capped by the WebSocket TTL
(:class:`iotnotify_emulator.broker.MqttSession`). A uvloop timer per
connection costs about 0.55 KB (the handle, libuv's timer, the bound
method, a copied context); an entry here costs about 0.2 KB, and an idle
connection is mostly its fixed costs (issue 11: 10,000 idle connections
within 20 KB each, ``bench/emulator_bench.py --only idle``).

The callbacks run when ``loop.call_at`` would run them: the loop's one
timer is always set for the earliest pending entry.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Callable

__all__ = ["Deadlines"]


class Deadlines:
    """``call_at`` for many callbacks, from one ``loop.call_at`` timer.

    :meth:`call_at` returns a token that :meth:`cancel` takes. A cancelled
    entry's callback is released at once; only its ``(time, token)`` pair
    stays in the heap until its time comes, so a cancelled entry holds no
    reference to what its callback would have touched. A callback that
    raises is reported to the loop's exception handler, as the loop does
    for its own timers, and the others still run. Use it from the loop's
    thread only.
    """

    __slots__ = ("_callbacks", "_heap", "_last_token", "_timer", "_timer_at")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._callbacks: dict[int, Callable[[], object]] = {}
        self._last_token = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def __len__(self) -> int:
        """Entries waiting and not cancelled."""
        return len(self._callbacks)

    def call_at(self, when: float, callback: Callable[[], object]) -> int:
        """Run ``callback()`` at loop time ``when`` (seconds, ``loop.time()``); a token."""
        self._last_token += 1
        token = self._last_token
        heapq.heappush(self._heap, (when, token))
        self._callbacks[token] = callback
        if when < self._timer_at:
            self._set_timer(when)
        return token

    def cancel(self, token: int) -> None:
        """Forget the callback of ``token``; nothing if it already ran or was cancelled."""
        self._callbacks.pop(token, None)

    def clear(self) -> None:
        """Forget every entry and stop the loop timer (the server is stopping)."""
        self._callbacks.clear()
        self._heap.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = math.inf

    def _set_timer(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = asyncio.get_running_loop().call_at(when, self._run_due)

    def _run_due(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        loop = asyncio.get_running_loop()
        now = loop.time()
        heap, callbacks = self._heap, self._callbacks
        while heap and heap[0][0] <= now:
            _, token = heapq.heappop(heap)
            callback = callbacks.pop(token, None)
            if callback is None:
                continue  # cancelled
            try:
                callback()
            except Exception as exc:
                loop.call_exception_handler(
                    {"message": "a deadline callback failed", "exception": exc}
                )
        # Cancelled entries at the head would only wake the loop for nothing.
        while heap and heap[0][1] not in callbacks:
            heapq.heappop(heap)
        if heap and heap[0][0] < self._timer_at:
            self._set_timer(heap[0][0])
