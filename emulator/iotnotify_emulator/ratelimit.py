"""Per-connection outbound rate limits of AWS IoT Core.

AWS general reference, "AWS IoT Core endpoints and quotas", message broker:

* "Publish requests per second per connection", 100: "AWS IoT Core restricts
  each client connection to a maximum number of inbound and outbound publish
  requests per second. Publish requests that exceed that quota are
  discarded."
* "Throughput per second per connection", 512 KiB: "Data received or sent
  over a client connection is processed at a maximum throughput rate. Data
  that exceeds the maximum throughput is delayed in processing."

Both are token buckets here with a burst of one second's worth. Over the
message rate a QoS 0 delivery is discarded (the broker counts it as
``Stats.throttled_outbound``); over the throughput it is delayed
(:meth:`OutboundLimiter.admit` reserves its bytes and says how long it must
wait, ``Stats.delayed_outbound``). QoS 1 deliveries wait in either case
(:meth:`OutboundLimiter.take`), so a resumed persistent session's stored
messages trickle out instead of being lost.
"""

from __future__ import annotations

import time

__all__ = ["OutboundLimiter"]


class OutboundLimiter:
    """Two token buckets: ``rate`` messages/s and ``byte_rate`` bytes/s (None: unlimited).

    While a delayed message waits (between :meth:`admit` returning a delay
    and :meth:`unpace`), the byte bucket is capped at 0, so every later
    message is delayed behind it rather than overtaking it: the order holds
    without any check on the path of a message that goes at once.
    """

    __slots__ = ("_at", "_byte_cap", "_byte_rate", "_bytes", "_messages", "_rate")

    def __init__(self, rate: float | None, byte_rate: float | None) -> None:
        self._rate = rate
        self._byte_rate = byte_rate
        self._byte_cap = byte_rate or 0.0
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
            self._bytes = min(self._byte_cap, self._bytes + elapsed * self._byte_rate)
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

    def admit(self, size: int) -> float:
        """Admit one QoS 0 message of ``size`` bytes, the way AWS treats it.

        Returns 0.0 when it may go now (tokens taken); a negative number when
        it is over the message rate and must be discarded (nothing taken);
        else the seconds it must wait, over the throughput: its message token
        and its bytes are taken (the byte bucket goes below 0, and stays
        capped at 0 until :meth:`unpace`).
        """
        # take() inlined: this runs for every QoS 0 delivery.
        if self.ready(size):
            if self._rate is not None:
                self._messages -= 1.0
            if self._byte_rate is not None:
                self._bytes -= size
            return 0.0
        if self._rate is not None and self._messages < 1.0:
            return -1.0
        assert self._byte_rate is not None  # only the byte bucket can be short here
        if self._rate is not None:
            self._messages -= 1.0
        self._bytes -= size
        self._byte_cap = 0.0
        return -self._bytes / self._byte_rate

    def refund(self, size: int) -> None:
        """Give back the bytes of a message :meth:`admit` delayed but that was then dropped."""
        self._bytes += size

    def unpace(self) -> None:
        """No delayed message waits any more: the byte bucket may fill up again."""
        self._byte_cap = self._byte_rate or 0.0
