"""A caller's mistake in an SDK option is :class:`InvalidArgument`: one
exception hierarchy, so ``except IotNotifyError`` catches it as it catches
every other SDK error, and ``except ValueError`` still does too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from iotnotify.backoff import Backoff
from iotnotify.contract import TopicScheme, id_lower_bound, new_notification_id
from iotnotify.cost import Load, estimate
from iotnotify.errors import InvalidArgument, IotNotifyError
from iotnotify.publisher import Publisher
from iotnotify.subscriber import Subscriber, clamp_keepalive

SCHEME = TopicScheme("iotnotify", "test")


def _subscriber(**options: Any) -> Callable[[], object]:
    def make() -> object:
        return Subscriber(tokens=object(), on_message=print, **options)  # type: ignore[arg-type]

    return make


def _publisher(**options: Any) -> Callable[[], object]:
    return lambda: Publisher(scheme=SCHEME, iot_data=object(), **options)


MISTAKES: dict[str, Callable[[], object]] = {
    "backoff initial 0": lambda: Backoff(initial=0.0),
    "backoff cap below initial": lambda: Backoff(initial=2.0, cap=1.0),
    "subscriber connect_timeout 0": _subscriber(connect_timeout=0),
    "subscriber max_connection_age 0": _subscriber(max_connection_age=0),
    "subscriber catch_up_lookback -1": _subscriber(catch_up_lookback=-1.0),
    "subscriber keepalive -1": _subscriber(keepalive=-1),
    "keepalive floor 0": lambda: clamp_keepalive(60, floor=0),
    "publisher max_workers 0": _publisher(max_workers=0),
    "publisher skip_offline without presence": _publisher(skip_offline=True),
    "look-back -1 s": lambda: id_lower_bound(new_notification_id(), lookback_seconds=-1),
    "cost of a negative load": lambda: estimate(Load(users=-1, notifications_per_user_per_day=1)),
}


@pytest.mark.parametrize("mistake", MISTAKES.values(), ids=MISTAKES.keys())
def test_an_sdk_option_out_of_range_is_invalid_argument(mistake: Callable[[], object]) -> None:
    with pytest.raises(InvalidArgument) as raised:
        mistake()
    # caught by the SDK's base class, and still a ValueError for older callers
    assert isinstance(raised.value, IotNotifyError)
    assert isinstance(raised.value, ValueError)
    assert str(raised.value)


def test_a_publisher_without_the_table_a_call_needs_says_so() -> None:
    publisher = Publisher(scheme=SCHEME, iot_data=object())  # type: ignore[arg-type]
    try:
        with pytest.raises(InvalidArgument, match="no presence table"):
            publisher.presence(["alice"])
    finally:
        publisher.close()
