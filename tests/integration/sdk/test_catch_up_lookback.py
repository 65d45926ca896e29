"""Catch-up's look-back window against ``iotnotify local`` (the API, moto's DynamoDB, the emulator).

The reviewer's gap: ``notify_many`` takes one id, then spends seconds on its
users; a user who got a newer notification from another sender meanwhile,
and was offline when the fan-out reached them, has an id in the inbox older
than the one they last saw. The reconnect's catch-up must still show it,
once, and show nothing twice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from iotnotify.api_client import ApiClient, ConnectionToken
from iotnotify.backoff import Backoff
from iotnotify.contract import Notification, id_lower_bound, new_notification_id
from iotnotify.errors import IotNotifyError
from iotnotify.publisher import Publisher
from iotnotify.sending import publisher_for_local
from iotnotify.subscriber import ConnectionState, Subscriber
from tests.integration.sdk.conftest import RunningStack
from tests.unit.sdk.fakes import Collector


@pytest.fixture
def publisher(local_stack: RunningStack) -> Iterator[tuple[Publisher, str]]:
    pub, resolve = publisher_for_local(local_stack.state_file)
    with pub:
        yield pub, resolve("alice")


class GatedTokens:
    """The API's tokens, except that a reconnect waits until the test opens the gate."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api
        self.gate = threading.Event()
        self.calls = 0

    def token(self) -> ConnectionToken:
        self.calls += 1
        if self.calls > 1:
            assert self.gate.wait(60), "the test never let the subscriber reconnect"
        return self.api.token()


def _inbox_ids(api: ApiClient, since: str) -> set[str]:
    """Every id ``GET /notifications?since=`` returns, page after page: the
    session's stack is shared, so the window may hold more than one page."""
    ids: set[str] = set()
    cursor: str | None = since
    while cursor is not None:
        page = api.notifications(since=cursor)
        ids.update(note.id for note in page.notifications)
        cursor = page.next
    return ids


def _count(collector: Collector, state: ConnectionState) -> int:
    return sum(1 for _, change in collector.states if change.state is state)


def test_a_fan_out_id_older_than_one_seen_live_is_caught_up_once_after_a_reconnect(
    local_stack: RunningStack, publisher: tuple[Publisher, str], collector: Collector
) -> None:
    pub, alice_id = publisher
    api = local_stack.api("alice")
    tokens = GatedTokens(api)
    sub = Subscriber(
        tokens=tokens,
        inbox=api,
        on_message=collector.on_message,
        on_state=collector.on_state,
        since=new_notification_id(),
        device_id="it-lookback",
        backoff=Backoff(initial=0.2, cap=1.0),
    ).start()
    try:
        collector.wait_for(lambda: _count(collector, ConnectionState.CAUGHT_UP) >= 1, 30)
        # Given a fan-out took its id, and another sender then reached alice live
        fan_out = Notification.create(title="fan-out", body="id taken at its start")
        newer = pub.notify(alice_id, title="newer, from another sender")
        assert fan_out.id < newer.id
        collector.wait_for(lambda: newer.id in collector.ids(), 15)
        # When alice is offline as the fan-out reaches her: its inbox write
        # lands, its live publish finds nobody
        local_stack.restart_emulator(down_seconds=1)
        collector.wait_for(lambda: _count(collector, ConnectionState.DISCONNECTED) >= 1, 30)
        assert pub.inbox is not None
        pub.inbox.put(alice_id, fan_out)
        # (the API accepts the look-back bound the catch-up will ask for)
        bound = id_lower_bound(newer.id, lookback_seconds=60)
        assert fan_out.id in _inbox_ids(api, bound)
        tokens.gate.set()
        collector.wait_for(lambda: _count(collector, ConnectionState.CAUGHT_UP) >= 2, 60)
        after = pub.notify(alice_id, title="after the reconnect")
        collector.wait_for(lambda: after.id in collector.ids(), 15)
        # Then the catch-up showed the fan-out once and nothing twice
        assert collector.ids() == [newer.id, fan_out.id, after.id]
        assert sub.stats.connects >= 2
    finally:
        tokens.gate.set()
        sub.stop()


def test_the_api_takes_a_look_back_bound_as_since_and_refuses_what_is_not_an_id(
    local_stack: RunningStack, publisher: tuple[Publisher, str]
) -> None:
    pub, alice_id = publisher
    api = local_stack.api("alice")
    sent = pub.notify(alice_id, title="inside the window")
    # The bound a minute before it: its random part is all "0", still a ULID for the API
    bound = id_lower_bound(sent.id, lookback_seconds=60)
    assert bound.endswith("0" * 16)
    assert sent.id in _inbox_ids(api, bound)
    for bad in (
        "01jd5z3q8w9v4x2y6z7a8b9c0d",
        "01JD5Z3Q8W9V4X2Y6Z7A8B9C0",
        "01JD5Z3Q8W9V4X2Y6Z7A8B9C0U",
    ):
        with pytest.raises(IotNotifyError, match="HTTP 400: since must be a notification id"):
            api.notifications(since=bad)
