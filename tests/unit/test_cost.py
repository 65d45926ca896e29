"""The cost model follows IoT Core's metering rules."""

from __future__ import annotations

import pytest

from iotnotify.cost import Load, estimate


def test_an_idle_connected_user_costs_only_connection_minutes() -> None:
    idle = estimate(Load(users=1, notifications_per_user_per_day=0, connects_per_user_per_day=0))
    assert idle.iot_messaging_usd == 0
    assert idle.connection_minutes == 30 * 24 * 60
    assert idle.total_usd == pytest.approx(43_200 * 0.08 / 1e6)


def test_messages_are_metered_in_5kb_units_and_count_both_directions() -> None:
    small = estimate(Load(users=1, notifications_per_user_per_day=1, message_bytes=5 * 1024))
    large = estimate(Load(users=1, notifications_per_user_per_day=1, message_bytes=5 * 1024 + 1))
    assert small.iot_messages == 30 * 2
    assert large.iot_messages == 30 * 2 * 2


def test_part_time_connections_cost_proportionally_less() -> None:
    full = estimate(Load(users=100, notifications_per_user_per_day=0))
    half = estimate(Load(users=100, notifications_per_user_per_day=0, connected_hours_per_day=12))
    assert half.iot_connectivity_usd == pytest.approx(full.iot_connectivity_usd / 2)


def test_impossible_loads_are_refused() -> None:
    with pytest.raises(ValueError):
        estimate(Load(users=-1, notifications_per_user_per_day=0))
    with pytest.raises(ValueError):
        estimate(Load(users=1, notifications_per_user_per_day=0, connected_hours_per_day=25))
