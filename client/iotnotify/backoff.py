"""Reconnect delays: exponential backoff with full jitter and a cap.

Full jitter (a uniform draw between 0 and the exponential bound, as in the
AWS Architecture Blog's "Exponential Backoff and Jitter") spreads the
reconnects of many clients that lost the same server at the same moment,
so a restarted endpoint is not hit by all of them in one instant.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from iotnotify.errors import InvalidArgument

__all__ = ["Backoff"]


@dataclass
class Backoff:
    """Delays for attempt 1, 2, 3...: ``uniform(0, min(cap, initial * 2**(n-1)))``."""

    initial: float = 0.5
    cap: float = 60.0
    # Injected so tests can pin the draw; production uses a private Random.
    rand: Callable[[], float] = field(default_factory=lambda: random.Random().random)  # noqa: S311
    attempts: int = 0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.cap < self.initial:
            raise InvalidArgument(
                f"backoff needs 0 < initial <= cap, not initial={self.initial!r} cap={self.cap!r}"
            )

    def bound(self, attempt: int) -> float:
        """The upper bound of the draw for the ``attempt``-th retry (1-based)."""
        # Capped exponent so a client that retried for weeks cannot overflow.
        exponent = min(max(attempt - 1, 0), 62)
        return float(min(self.cap, self.initial * (2**exponent)))

    def next_delay(self) -> float:
        """Record one more failed attempt and return how long to wait before the next."""
        self.attempts += 1
        return self.rand() * self.bound(self.attempts)

    def reset(self) -> None:
        """A connection worked: the next failure starts from the smallest delay again."""
        self.attempts = 0
