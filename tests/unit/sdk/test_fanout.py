"""Publisher.notify_many and Inbox.put_many against fakes: results, failures, concurrency.

Behaviour only, no timing: one result per recipient in order, failures
reported per user (a failed publish, a failed inbox batch), inbox batches
written in parallel (a barrier only parallel callers can pass), and never
more AWS calls in flight than the publisher's bound, which follows the
clients' HTTP connection pools.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from iotnotify.contract import Notification, TopicScheme
from iotnotify.inbox import BATCH_WRITE_LIMIT, Inbox
from iotnotify.publisher import Publisher

SCHEME = TopicScheme("iotnotify", "test")
BARRIER_TIMEOUT = 10.0  # only reached when calls do not overlap: the test then fails


def _client_error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"fake {code}"}}, operation)


def _meta(pool: int) -> SimpleNamespace:
    return SimpleNamespace(config=SimpleNamespace(max_pool_connections=pool))


class InFlight:
    """Counts calls in progress and remembers the most seen at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


class FakeIotData:
    """Records publishes; fails the topics it is told to; can hold callers at a barrier."""

    def __init__(self, *, pool: int = 100, barrier: threading.Barrier | None = None) -> None:
        self.meta = _meta(pool)
        self.published: list[str] = []
        self.failing: set[str] = set()
        self.barrier = barrier
        self.in_flight = InFlight()
        self._lock = threading.Lock()

    def publish(self, *, topic: str, qos: int, payload: bytes) -> dict[str, Any]:
        with self.in_flight:
            if self.barrier is not None:
                self.barrier.wait(BARRIER_TIMEOUT)
            if topic in self.failing:
                raise _client_error("ThrottlingException", "Publish")
            with self._lock:
                self.published.append(topic)
        return {}


class FakeDynamo:
    """The low-level client of a fake table: BatchWriteItem only."""

    def __init__(self, table: FakeTable, pool: int) -> None:
        self.meta = _meta(pool)
        self._table = table

    def batch_write_item(self, *, RequestItems: dict[str, list[Any]]) -> dict[str, Any]:  # noqa: N803
        return self._table.write(RequestItems)


class FakeTable:
    """A DynamoDB table resource stand-in: stores items, fails or defers chosen users."""

    def __init__(self, *, pool: int = 100, barrier: threading.Barrier | None = None) -> None:
        self.name = "inbox"
        self.meta = SimpleNamespace(client=FakeDynamo(self, pool))
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls = 0
        self.failing_users: set[str] = set()
        self.unprocessed_once: set[str] = set()
        self.always_unprocessed: set[str] = set()
        self.barrier = barrier
        self.in_flight = InFlight()
        self._lock = threading.Lock()

    def write(self, request_items: dict[str, list[Any]]) -> dict[str, Any]:
        with self.in_flight:
            if self.barrier is not None:
                self.barrier.wait(BARRIER_TIMEOUT)
            requests = request_items[self.name]
            assert len(requests) <= BATCH_WRITE_LIMIT
            users = [r["PutRequest"]["Item"]["userId"] for r in requests]
            with self._lock:
                self.calls += 1
                if self.failing_users.intersection(users):
                    raise _client_error("InternalServerError", "BatchWriteItem")
                left = []
                for request in requests:
                    item = request["PutRequest"]["Item"]
                    user = item["userId"]
                    if user in self.always_unprocessed or user in self.unprocessed_once:
                        self.unprocessed_once.discard(user)
                        left.append(request)
                        continue
                    self.items[(user, item["id"])] = item
            return {"UnprocessedItems": {self.name: left} if left else {}}


def _topic(user: str) -> str:
    return SCHEME.user_notifications(user).value


@pytest.fixture
def users() -> list[str]:
    return [f"player-{n:03d}" for n in range(60)]


@pytest.fixture
def closing() -> Iterator[list[Publisher]]:
    made: list[Publisher] = []
    yield made
    for publisher in made:
        publisher.close()


def _publisher(closing: list[Publisher], **kwargs: Any) -> Publisher:
    publisher = Publisher(scheme=SCHEME, **kwargs)
    closing.append(publisher)
    return publisher


def test_one_result_per_user_in_order_and_every_user_stored_then_published(
    users: list[str], closing: list[Publisher]
) -> None:
    # Given a publisher with an inbox
    iot, table = FakeIotData(), FakeTable()
    publisher = _publisher(closing, iot_data=iot, inbox=Inbox(table, sleep=lambda _: None))

    # When it fans out to 60 users, one duplicate and one invalid id
    results = publisher.notify_many([*users, users[3], "bad/id"], title="Your turn")

    # Then there is one result per distinct recipient, in the order given
    assert [r.user_id for r in results] == [*users, "bad/id"]
    assert all(r.ok for r in results[:-1])
    assert not results[-1].ok
    assert "invalid user id" in (results[-1].error or "")
    # and every valid user was published to once and has the item in the inbox,
    # written in batches of 25
    assert sorted(iot.published) == sorted(_topic(u) for u in users)
    assert sorted(user for user, _ in table.items) == sorted(users)
    assert table.calls == 3
    assert len({r.notification_id for r in results[:-1]}) == 1


def test_a_failed_publish_fails_only_its_user(users: list[str], closing: list[Publisher]) -> None:
    # Given an iot-data endpoint that throttles one user's topic
    iot = FakeIotData()
    iot.failing.add(_topic(users[7]))
    publisher = _publisher(closing, iot_data=iot, inbox=Inbox(FakeTable()))

    # When fanning out
    results = {r.user_id: r for r in publisher.notify_many(users, title="t")}

    # Then that user's result says why, with the notification id; everyone else is ok
    assert not results[users[7]].ok
    assert "throttled" in (results[users[7]].error or "")
    assert results[users[7]].notification_id is not None
    assert all(r.ok for user, r in results.items() if user != users[7])
    # and it says the notification is in that user's inbox all the same
    assert all(r.stored for r in results.values())


def test_an_ephemeral_notification_is_never_said_to_be_stored(
    users: list[str], closing: list[Publisher]
) -> None:
    iot = FakeIotData()
    iot.failing.add(_topic(users[7]))
    publisher = _publisher(closing, iot_data=iot, inbox=Inbox(FakeTable()))
    results = {r.user_id: r for r in publisher.notify_many(users, title="t", ephemeral=True)}
    assert not results[users[7]].ok
    assert not any(r.stored for r in results.values())


def test_a_failed_inbox_batch_fails_its_users_who_are_then_not_published(
    users: list[str], closing: list[Publisher]
) -> None:
    # Given an inbox whose second batch of 25 (users 25..49) fails
    iot, table = FakeIotData(), FakeTable()
    table.failing_users.add(users[30])
    publisher = _publisher(closing, iot_data=iot, inbox=Inbox(table))

    # When fanning out to 60 users
    results = publisher.notify_many(users, title="t")

    # Then exactly that batch's users failed, with the inbox's reason
    failed = [r.user_id for r in results if not r.ok]
    assert failed == users[25:50]
    assert all("inbox batch write failed" in (r.error or "") for r in results if not r.ok)
    assert not any(r.stored for r in results if not r.ok)
    # and nothing is live that catch-up could not find: they were not published
    assert sorted(iot.published) == sorted(_topic(u) for u in users[:25] + users[50:])


def test_inbox_batches_are_written_in_parallel(users: list[str], closing: list[Publisher]) -> None:
    # Given an inbox where a batch write returns only once another one is in flight
    # (a barrier of two: batches written one after the other would break it)
    table = FakeTable(barrier=threading.Barrier(2))
    publisher = _publisher(closing, iot_data=FakeIotData(), inbox=Inbox(table))

    # When fanning out to 50 users (exactly two batches of 25)
    results = publisher.notify_many(users[:50], title="t")

    # Then both batches went through together and everyone got the notification
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:1]
    assert table.in_flight.most == 2


@pytest.mark.parametrize(("pool", "max_workers", "bound"), [(4, 64, 4), (10, 3, 3)])
def test_calls_in_flight_never_exceed_the_smaller_of_max_workers_and_the_pool(
    users: list[str], closing: list[Publisher], pool: int, max_workers: int, bound: int
) -> None:
    # Given an iot-data client with `pool` HTTP connections whose calls each wait
    # until `bound` of them are in flight together
    iot = FakeIotData(pool=pool, barrier=threading.Barrier(bound))
    publisher = _publisher(closing, iot_data=iot, max_workers=max_workers)

    # When fanning out (no inbox: publishes only) to a multiple of the bound
    count = bound * 10
    results = publisher.notify_many(users[:count], title="t", ephemeral=True)

    # Then the bound was reached and never passed
    assert publisher.concurrency == bound
    assert all(r.ok for r in results)
    assert iot.in_flight.most == bound


def test_the_inbox_clients_pool_bounds_the_fanout_too(closing: list[Publisher]) -> None:
    # Given a DynamoDB client with a 5-connection pool beside a 50-connection iot-data one
    publisher = _publisher(
        closing, iot_data=FakeIotData(pool=50), inbox=Inbox(FakeTable(pool=5)), max_workers=64
    )

    # Then the fan-out keeps at most 5 calls in flight
    assert publisher.concurrency == 5


def test_put_many_resends_unprocessed_items_with_backoff_and_reports_what_never_landed(
    users: list[str],
) -> None:
    # Given a table that defers one item once and another one forever (throttling)
    table = FakeTable()
    table.unprocessed_once.add(users[2])
    table.always_unprocessed.add(users[40])
    pauses: list[float] = []
    inbox = Inbox(table, sleep=pauses.append)
    note = Notification.create(title="t")

    # When writing 60 users' items and one invalid user id
    failed = inbox.put_many([*((u, note) for u in users), ("bad/id", note)], max_workers=4)

    # Then the deferred item was resent and stored, and so was everyone else's
    stored = {user for user, _ in table.items}
    assert stored == set(users) - {users[40]}
    # and exactly what never landed is reported, with the invalid id
    assert set(failed) == {users[40], "bad/id"}
    assert "unprocessed" in failed[users[40]]
    # after growing pauses between attempts (never sleeping for real here)
    assert pauses == sorted(pauses)
    assert pauses[0] > 0


def test_put_batch_refuses_more_than_25_items() -> None:
    note = Notification.create(title="t")
    with pytest.raises(ValueError, match="25"):
        Inbox(FakeTable()).put_batch([(f"u{n}", note) for n in range(26)])


def test_publishes_start_while_inbox_batches_are_still_being_written(
    closing: list[Publisher],
) -> None:
    # Given 4 workers and 10 inbox batches, where every batch but the first
    # waits until some publish has happened (a gate the first publish opens)
    users = [f"player-{n:03d}" for n in range(250)]
    gate = threading.Event()
    opened_in_time: list[bool] = []

    class GatedTable(FakeTable):
        def write(self, request_items: dict[str, list[Any]]) -> dict[str, Any]:
            first = request_items[self.name][0]["PutRequest"]["Item"]["userId"]
            if first != users[0]:
                opened_in_time.append(gate.wait(BARRIER_TIMEOUT))
            return super().write(request_items)

    class GateOpeningIotData(FakeIotData):
        def publish(self, *, topic: str, qos: int, payload: bytes) -> dict[str, Any]:
            gate.set()
            return super().publish(topic=topic, qos=qos, payload=payload)

    iot, table = GateOpeningIotData(pool=4), GatedTable(pool=4)
    publisher = _publisher(closing, iot_data=iot, inbox=Inbox(table))

    # When fanning out
    results = publisher.notify_many(users, title="t")

    # Then a worker published the first batch's users while the other batches
    # waited (with every batch written first, all 4 workers would sit in
    # gated writes and the gate would only time out)
    assert all(r.ok for r in results)
    assert len(opened_in_time) == 9
    assert all(opened_in_time)
    assert sorted(iot.published) == sorted(_topic(u) for u in users)


def test_notify_many_refuses_one_string_instead_of_a_list(closing: list[Publisher]) -> None:
    # notify_many("c228f363-...") iterated the characters: 36 one-letter
    # "users" got an inbox item and a publish each.
    iot, table = FakeIotData(), FakeTable()
    publisher = _publisher(closing, iot_data=iot, inbox=Inbox(table, sleep=lambda _: None))
    from iotnotify.errors import InvalidUserId

    with pytest.raises(InvalidUserId, match="list of user ids"):
        publisher.notify_many("player-001", title="t")
    assert iot.published == []
