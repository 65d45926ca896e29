"""AWS IoT Core's keepalive clamp."""

from __future__ import annotations

import pytest

from iotnotify_emulator.broker import BrokerSettings, effective_keepalive


@pytest.mark.parametrize(
    ("requested", "effective"),
    [(0, 1200), (1, 30), (29, 30), (30, 30), (600, 600), (1200, 1200), (1201, 1200), (65535, 1200)],
)
def test_keepalive_is_clamped_like_aws(requested: int, effective: int) -> None:
    assert effective_keepalive(requested, BrokerSettings()) == effective
