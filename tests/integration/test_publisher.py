"""Publisher and inbox under moto: limits, fan-out, catch-up pagination."""

from __future__ import annotations

import json
from typing import Any

import pytest

from iotnotify.contract import MAX_PAYLOAD_BYTES, Notification
from iotnotify.errors import PayloadTooLarge
from iotnotify.inbox import Inbox
from iotnotify.publisher import Publisher
from tests.conftest import APP, IOT_ENDPOINT, STAGE, FakeAccount


@pytest.fixture
def publisher(account: FakeAccount) -> Publisher:
    return Publisher.create(
        app=APP,
        stage=STAGE,
        endpoint=IOT_ENDPOINT,
        inbox_table=account.table_name,
        session=account.session,
    )


@pytest.fixture
def inbox(account: FakeAccount) -> Inbox:
    return Inbox(account.table())


def test_notify_publishes_the_envelope_to_the_users_topic_and_inbox(
    account: FakeAccount, publisher: Publisher, inbox: Inbox
) -> None:
    note = publisher.notify("alice", title="Your turn", body="Game 7", data={"game": 7})
    [(topic, payload)] = account.published()
    assert topic == "iotnotify/test/user/alice/notifications"
    assert Notification.from_json(payload) == note
    assert inbox.since("alice").notifications == (note,)
    assert inbox.since("bob").notifications == ()


def test_ephemeral_notifications_skip_the_inbox(
    account: FakeAccount, publisher: Publisher, inbox: Inbox
) -> None:
    publisher.notify("alice", title="typing...", ephemeral=True)
    assert len(account.published()) == 1
    assert inbox.since("alice").notifications == ()


def test_an_envelope_one_byte_over_128_kb_is_refused_before_any_aws_call(
    account: FakeAccount, publisher: Publisher, inbox: Inbox
) -> None:
    overhead = len(Notification.create(title="t").to_json())
    fits = "x" * (MAX_PAYLOAD_BYTES - overhead)
    publisher.notify("alice", title="t", body=fits)
    assert len(account.published()) == 1
    with pytest.raises(PayloadTooLarge):
        publisher.notify("alice", title="t", body=fits + "x")
    with pytest.raises(PayloadTooLarge):
        publisher.notify_many(["alice", "bob"], title="t", body=fits + "x")
    assert len(account.published()) == 1
    assert len(inbox.since("alice").notifications) == 1


def test_notify_many_to_1000_users_gives_one_result_per_user(
    account: FakeAccount, publisher: Publisher, inbox: Inbox
) -> None:
    users = [f"player-{n:04d}" for n in range(1000)]
    results = publisher.notify_many([*users, "bad/id", users[0]], title="Season starts")
    assert [r.user_id for r in results] == [*users, "bad/id"]
    assert all(r.ok for r in results[:-1])
    assert results[-1].ok is False
    assert "invalid user id" in (results[-1].error or "")
    topics = sorted(topic for topic, _ in account.published())
    assert topics == sorted(f"iotnotify/test/user/{u}/notifications" for u in users)
    assert len(inbox.since("player-0999").notifications) == 1


def test_broadcast_goes_to_the_broadcast_topic_only(
    account: FakeAccount, publisher: Publisher
) -> None:
    note = publisher.broadcast(title="Maintenance at 22:00")
    [(topic, payload)] = account.published()
    assert topic == "iotnotify/test/broadcast"
    assert json.loads(payload)["id"] == note.id


def test_inbox_since_returns_exactly_the_missed_notifications_across_pages(
    account: FakeAccount, publisher: Publisher, inbox: Inbox
) -> None:
    sent = [publisher.notify("alice", title=f"n{i}") for i in range(23)]
    publisher.notify("bob", title="not for alice")
    seen_before = sent[4].id  # alice last saw the fifth one
    collected: list[Notification] = []
    since: str | None = seen_before
    pages = 0
    while True:
        page = inbox.since("alice", since, limit=5)
        pages += 1
        collected.extend(page.notifications)
        if page.next_since is None:
            break
        since = page.next_since
    assert collected == sent[5:]
    assert len({n.id for n in collected}) == len(collected)
    assert pages == 4  # 18 items in pages of 5


def test_expired_inbox_items_are_not_served(account: FakeAccount) -> None:
    clock = [1_000_000.0]
    inbox = Inbox(account.table(), ttl_days=1, clock=lambda: clock[0])
    inbox.put("alice", Notification.create(title="old"))
    clock[0] += 2 * 86_400
    fresh = Notification.create(title="new")
    inbox.put("alice", fresh)
    assert inbox.since("alice").notifications == (fresh,)


class CountingSession:
    """A boto3 session that counts the clients and resources built from it."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.built: list[str] = []

    def client(self, name: str, **kwargs: Any) -> Any:
        self.built.append(name)
        return self._session.client(name, **kwargs)

    def resource(self, name: str, **kwargs: Any) -> Any:
        self.built.append(name)
        return self._session.resource(name, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def test_create_sizes_both_http_pools_to_max_workers_and_fanout_builds_no_client(
    account: FakeAccount,
) -> None:
    # Given a publisher created with 48 workers from a session that counts clients
    session = CountingSession(account.session)
    with Publisher.create(
        app=APP,
        stage=STAGE,
        endpoint=IOT_ENDPOINT,
        inbox_table=account.table_name,
        session=session,  # type: ignore[arg-type]
        max_workers=48,
    ) as publisher:
        built = list(session.built)

        # When it fans out twice
        for round_ in range(2):
            results = publisher.notify_many([f"p{n}" for n in range(60)], title=f"r{round_}")
            assert all(r.ok for r in results)

        # Then both clients got 48 pooled connections (botocore's default is 10),
        # so 48 calls really are in flight, and no client was built per call
        assert publisher.concurrency == 48
        assert publisher.inbox is not None
        assert publisher.inbox.client.meta.config.max_pool_connections == 48
        assert session.built == built
    assert len(account.published()) == 120
