"""Per-connection outbound rate limits of AWS IoT Core.

AWS general reference, "AWS IoT Core endpoints and quotas", message broker:
at most 100 publish requests per second per connection, outbound as well as
inbound, and a throughput of 512 KiB per second per connection. Both are
token buckets here with a burst of one second's worth. What happens over
the limit is the caller's choice: the broker drops QoS 0 deliveries
(counted as ``Stats.throttled_outbound``) and holds QoS 1 ones until
tokens are back, so a resumed persistent session's stored messages trickle
out instead of being lost.
"""

from __future__ import annotations

import time

__all__ = ["OutboundLimiter"]


class OutboundLimiter:
    """Two token buckets: ``rate`` messages/s and ``byte_rate`` bytes/s (None: unlimited)."""

    __slots__ = ("_at", "_byte_rate", "_bytes", "_messages", "_rate")

    def __init__(self, rate: float | None, byte_rate: float | None) -> None:
        self._rate = rate
        self._byte_rate = byte_rate
        self._messages = rate or 0.0
        self._bytes = byte_rate or 0.0
        self._at = time.monotonic()

    def ready(self, size: int) -> bool:
        """Whether a message of ``size`` bytes may go now (nothing is taken)."""
        now = time.monotonic()
        elapsed, self._at = now - self._at, now
        if self._rate is not None:
            self._messages = min(self._rate, self._messages + elapsed * self._rate)
            if self._messages < 1.0:
                return False
        if self._byte_rate is not None:
            self._bytes = min(self._byte_rate, self._bytes + elapsed * self._byte_rate)
            if self._bytes < size:
                return False
        return True

    def take(self, size: int) -> bool:
        """Take the tokens for one message of ``size`` bytes; False when over a limit."""
        if not self.ready(size):
            return False
        if self._rate is not None:
            self._messages -= 1.0
        if self._byte_rate is not None:
            self._bytes -= size
        return True
