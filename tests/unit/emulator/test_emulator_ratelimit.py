"""The outbound limiter: AWS discards publishes over 100/s, delays data over 512 KiB/s."""

from __future__ import annotations

from iotnotify_emulator.ratelimit import OutboundLimiter


def test_over_the_message_rate_a_message_is_discarded() -> None:
    limiter = OutboundLimiter(2.0, None)
    assert limiter.admit(10) == 0.0
    assert limiter.admit(10) == 0.0
    assert limiter.admit(10) < 0  # discarded, nothing taken


def test_over_the_throughput_a_message_waits_and_later_ones_queue_behind_it() -> None:
    # Given a bucket of 1,000 bytes/s, full
    limiter = OutboundLimiter(None, 1000.0)
    assert limiter.admit(900) == 0.0
    # When a message that does not fit comes
    first = limiter.admit(600)
    # Then it waits until its bytes are in the bucket (about 0.5 s)
    assert 0 < first <= 0.5
    # And a tiny one after it waits longer, rather than overtaking it,
    # although 100 bytes fitted before the big one came
    assert limiter.admit(1) > first
    assert not limiter.take(1)  # nor does a QoS 1 message overtake them
    # Until nothing waits any more
    limiter.refund(1)
    limiter.refund(600)
    limiter.unpace()
    assert limiter.admit(50) == 0.0
