"""The Subscriber against a fake MQTT-over-WebSocket service (no AWS, no emulator)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from iotnotify.api_client import ApiClient, ConnectionToken
from iotnotify.auth import StaticIdToken
from iotnotify.backoff import Backoff
from iotnotify.contract import Notification, id_floor, id_lower_bound, new_notification_id
from iotnotify.errors import AuthError, Forbidden, InvalidClientId, InvalidEnvelope
from iotnotify.subscriber import SINCE_NOW, ConnectionState, Subscriber
from tests.unit.sdk.fakes import BROADCAST_TOPIC, OWN_TOPIC, Collector, FakeService

Make = Callable[..., Subscriber]


def _notes(count: int, prefix: str = "n") -> list[Notification]:
    return [Notification.create(title=f"{prefix}{i}") for i in range(count)]


def _state_seen(collector: Collector, state: ConnectionState, count: int = 1) -> None:
    collector.wait_for(lambda: sum(1 for _, c in collector.states if c.state is state) >= count)


def test_live_notifications_arrive_in_order_with_a_stable_client_id(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    # Given a connected subscriber
    sub = make_subscriber(since=new_notification_id()).start()
    session = service.wait_connections(1)
    _state_seen(collector, ConnectionState.CAUGHT_UP)
    # When five notifications are published
    sent = _notes(5)
    for note in sent:
        service.send(note)
    # Then they arrive once each, in order, as typed Notifications
    assert [n.id for n in collector.wait_notes(5)] == [n.id for n in sent]
    assert collector.notes[0].title == "n0"
    assert session.client_id == "alice.test-device"
    assert session.keepalive == 600  # the token's recommendation
    assert sub.last_id == sent[-1].id


def test_broadcast_is_delivered_but_tracked_apart_from_the_inbox_cursor(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    sub = make_subscriber(since=new_notification_id()).start()
    service.wait_subscribed()
    _state_seen(collector, ConnectionState.CAUGHT_UP)
    own, everyone = _notes(2)
    service.send(own)
    service.send(everyone, topic=BROADCAST_TOPIC)
    collector.wait_notes(2)
    assert sub.last_id == own.id
    assert sub.last_broadcast_id == everyone.id


def test_catch_up_pages_through_the_inbox_then_goes_live(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    # Given 250 notifications missed while offline (three inbox pages)
    missed = _notes(250, "missed")
    for note in missed:
        service.send(note, live=False)
    # When the subscriber connects from the beginning and one more arrives live
    make_subscriber().start()
    _state_seen(collector, ConnectionState.CAUGHT_UP)
    live = Notification.create(title="live")
    service.send(live)
    # Then it has all of them, once, in id order
    got = collector.wait_notes(251)
    assert [n.id for n in got] == [n.id for n in [*missed, live]]
    assert service.inbox_calls == 3


def test_reconnect_fetches_a_new_token_and_catches_up_without_duplicates(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    sub = make_subscriber(since=new_notification_id()).start()
    first = service.wait_connections(1)
    _state_seen(collector, ConnectionState.CAUGHT_UP)
    before = _notes(3, "before")
    for note in before:
        service.send(note)
    collector.wait_notes(3)
    # When the server drops us and two notifications are sent while we are away
    service.refuse_connections = True
    service.drop_all()
    _state_seen(collector, ConnectionState.DISCONNECTED)
    away = _notes(2, "away")
    for note in away:
        service.send(note)  # nobody is connected: only the inbox keeps them
    service.refuse_connections = False
    second = service.wait_connections(2)
    _state_seen(collector, ConnectionState.CAUGHT_UP, 2)
    after = Notification.create(title="after")
    service.send(after)
    # Then every notification arrives exactly once, in order
    got = collector.wait_notes(6)
    assert [n.id for n in got] == [n.id for n in [*before, *away, after]]
    # and the second connection used a new token (a new presigned URL)
    assert service.token_calls >= 2
    assert first.credential != second.credential
    assert sub.stats.connects >= 2


def test_live_messages_during_catch_up_are_merged_in_order(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    # Inbox and live overlap: a message both in the inbox and delivered live
    # while catch-up runs must appear once.
    missed = _notes(120, "m")
    for note in missed:
        service.send(note, live=False)
    make_subscriber().start()
    service.wait_subscribed()
    overlap = Notification.create(title="both")
    service.send(overlap)  # into the inbox and live, racing the catch-up
    got = collector.wait_notes(121)
    _state_seen(collector, ConnectionState.CAUGHT_UP)
    assert [n.id for n in got] == [n.id for n in [*missed, overlap]]


def test_failed_catch_up_is_retried_on_the_same_connection_and_live_messages_flow(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    # Given an inbox that answers 500 to the first four reads (pages of 100, 25, 6, 1)
    service.fail_inbox = 4
    missed = _notes(2, "m")
    for note in missed:
        service.send(note, live=False)
    make_subscriber().start()
    # Then the failure is reported, and a live message is delivered meanwhile
    _state_seen(collector, ConnectionState.CATCH_UP_FAILED)
    live = _notes(1, "l")[0]
    service.send(live)
    assert [n.id for n in collector.wait_notes(1)] == [live.id]
    # And the retry on the same connection delivers what was missed: no reconnect
    _state_seen(collector, ConnectionState.CAUGHT_UP)
    got = collector.wait_notes(3)
    assert sorted(n.id for n in got) == sorted([live.id, *(n.id for n in missed)])
    assert service.inbox_calls >= 5
    assert service.token_calls == 1


@pytest.mark.parametrize(
    ("requested", "token_keepalive", "on_the_wire"),
    [(None, 5000, 1200), (None, 0, 1200), (10, 600, 30), (None, None, 50), (45, 600, 45)],
)
def test_keepalive_is_clamped_to_iot_limits(
    service: FakeService,
    make_subscriber: Make,
    requested: int | None,
    token_keepalive: int | None,
    on_the_wire: int,
) -> None:
    service.keepalive = token_keepalive
    make_subscriber(keepalive=requested).start()
    assert service.wait_connections(1).keepalive == on_the_wire


def test_a_server_that_stops_answering_pings_is_detected_within_1_5_keepalive(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    # Given a server that accepts and subscribes but then never answers PINGREQ
    service.answer_pings = False
    keepalive = 2
    sub = make_subscriber(keepalive=keepalive, keepalive_floor=1, since=new_notification_id())
    sub.start()
    service.wait_subscribed()
    subscribed_at = time.monotonic()  # the SUBACK was the last inbound packet
    # When the client notices
    _state_seen(collector, ConnectionState.DISCONNECTED)
    detected_at = next(t for t, c in collector.states if c.state is ConnectionState.DISCONNECTED)
    # Then it was after one unanswered ping, and within 1.5 x keepalive
    silent = detected_at - subscribed_at
    assert keepalive < silent <= 1.5 * keepalive + 0.3
    assert sub.stats.pings_sent >= 1
    assert sub.stats.dead_server_detections == 1
    # and it reconnects by itself
    service.wait_connections(2)


def test_a_healthy_idle_connection_is_not_dropped_and_barely_wakes(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    keepalive = 1
    sub = make_subscriber(keepalive=keepalive, keepalive_floor=1, since=new_notification_id())
    sub.start()
    service.wait_subscribed()
    # Wait for four pings (answered) without a disconnect in between. Polled:
    # nothing notifies the collector when a ping goes out (its wait_for would
    # sit out the whole timeout, then pass).
    deadline = time.monotonic() + 10
    while sub.stats.pings_sent < 4:
        assert time.monotonic() < deadline, f"{sub.stats.pings_sent} pings in 10 s"
        time.sleep(0.05)
    assert not any(c.state is ConnectionState.DISCONNECTED for _, c in collector.states)
    # A handful of wake-ups per ping, not a busy loop.
    assert sub.stats.loop_wakeups <= 4 * sub.stats.pings_sent + 10


def test_planned_reconnect_happens_without_an_error(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    make_subscriber(max_connection_age=0.5, since=new_notification_id()).start()
    service.wait_connections(3)
    assert not any(c.state is ConnectionState.DISCONNECTED for _, c in collector.states)


def test_a_token_whose_every_topic_is_refused_stops_at_once_naming_them(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    service.suback_code = 0x80
    sub = make_subscriber()
    with pytest.raises(Forbidden) as refused:
        sub.run_forever()
    assert service.token_calls == 1  # a permanent refusal is not retried
    assert OWN_TOPIC in str(refused.value)
    assert collector.states[-1][1].state is ConnectionState.STOPPED


CHANNEL_TOPIC = "iotnotify/test/chat/lobby"


@pytest.mark.parametrize("refusal", ["close", "suback"])
def test_a_refused_topic_is_named_and_dropped_and_the_rest_keeps_working(
    collector: Collector,
    make_service_subscriber: Callable[..., tuple[FakeService, Subscriber]],
    refusal: str,
) -> None:
    # Issue 12 item 3. Given a token naming a channel the server does not authorise
    # (AWS IoT on MQTT 3.1.1 closes the connection; MQTT 5 answers SUBACK 0x80)
    service, sub = make_service_subscriber(topics=(OWN_TOPIC, BROADCAST_TOPIC, CHANNEL_TOPIC))
    service.refuse_topics = {CHANNEL_TOPIC}
    service.refusal = refusal
    missed = Notification.create(title="missed")
    service.send(missed, live=False)
    # When it connects
    sub.start()
    _state_seen(collector, ConnectionState.CAUGHT_UP)
    # Then what was granted works: the catch-up and live notifications arrive
    live = Notification.create(title="live")
    service.send(live)
    assert [n.title for n in collector.wait_notes(2)] == ["missed", "live"]
    # the refused topic is named to the user, and asked for once only
    connected = [c for _, c in collector.states if c.state is ConnectionState.CONNECTED]
    assert connected[-1].refused == (CHANNEL_TOPIC,)
    assert CHANNEL_TOPIC in connected[-1].describe()
    assert sub.refused_topics == (CHANNEL_TOPIC,)
    assert service.subscribe_requests.count(CHANNEL_TOPIC) == 1
    # and a refusal by close costs one reconnect, a SUBACK refusal none
    assert sub.stats.connects == (2 if refusal == "close" else 1)
    service.drop_all()
    _state_seen(collector, ConnectionState.CAUGHT_UP, 2)
    assert service.subscribe_requests.count(CHANNEL_TOPIC) == 1


def test_a_refused_id_token_is_an_auth_error(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    api = ApiClient(api_url=service.api_url, id_tokens=StaticIdToken("expired"))
    sub = make_subscriber(tokens=api)
    with pytest.raises(AuthError):
        sub.run_forever()
    assert isinstance(sub.error, AuthError)


def test_unreachable_service_is_retried_with_backoff(collector: Collector) -> None:
    # Nothing listens on the port: token fetches fail as network errors, forever.
    with FakeService() as svc:
        dead_url = svc.api_url
    api = ApiClient(api_url=dead_url, id_tokens=StaticIdToken("good"), timeout=1)
    sub = Subscriber(
        tokens=api,
        on_state=collector.on_state,
        backoff=Backoff(initial=0.01, cap=0.02),
    ).start()
    try:
        _state_seen(collector, ConnectionState.DISCONNECTED, 3)
        assert sub.state is not ConnectionState.STOPPED
    finally:
        sub.stop()
    assert sub.wait_stopped(1)


def test_stop_is_prompt_on_an_idle_connection(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    sub = make_subscriber(since=new_notification_id()).start()
    _state_seen(collector, ConnectionState.CAUGHT_UP)
    started = time.monotonic()
    sub.stop()
    assert time.monotonic() - started < 3
    assert sub.wait_stopped(0)
    assert collector.states[-1][1].state is ConnectionState.STOPPED


def test_a_failing_callback_does_not_stop_delivery(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    def flaky(note: Notification) -> None:
        collector.on_message(note)
        if note.title == "n0":
            raise RuntimeError("consumer bug")

    make_subscriber(on_message=flaky, since=new_notification_id()).start()
    _state_seen(collector, ConnectionState.CAUGHT_UP)
    for note in _notes(2):
        service.send(note)
    assert len(collector.wait_notes(2)) == 2


async def test_async_api_iterates_notifications(service: FakeService) -> None:
    api = ApiClient(api_url=service.api_url, id_tokens=StaticIdToken("good"))
    sent = _notes(3)
    for note in sent:
        service.send(note, live=False)
    got: list[str] = []
    async with Subscriber(tokens=api, device_id="async") as sub:
        async for note in sub.notifications:
            got.append(note.id)
            if len(got) == 3:
                break
    assert got == [n.id for n in sent]


async def test_async_iteration_raises_a_fatal_error(service: FakeService) -> None:
    api = ApiClient(api_url=service.api_url, id_tokens=StaticIdToken("expired"))

    async def drain() -> None:
        async with Subscriber(tokens=api) as sub:
            async for _ in sub.notifications:
                pass

    with pytest.raises(AuthError):
        await drain()


def test_resume_from_a_long_suspend_reconnects_at_once(
    service: FakeService,
    collector: Collector,
    make_subscriber: Make,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import iotnotify.subscriber as subscriber_module

    # A clock that keeps counting through a (simulated) suspend, as CLOCK_BOOTTIME does,
    # and short select() waits so the test need not wait the real 5 minutes.
    offset = [0.0]
    monkeypatch.setattr(subscriber_module, "_clock", lambda: time.monotonic() + offset[0])
    monkeypatch.setattr(subscriber_module, "_MAX_SLEEP", 0.2)
    sub = make_subscriber(since=new_notification_id()).start()
    _state_seen(collector, ConnectionState.CAUGHT_UP)
    # When the machine "sleeps" for longer than 1.5 x keepalive
    offset[0] += 1000.0
    # Then the next wake-up treats the connection as dead and reconnects
    _state_seen(collector, ConnectionState.DISCONNECTED)
    assert sub.stats.dead_server_detections == 1
    service.wait_connections(2)


@pytest.mark.parametrize(("stable_after", "attempts"), [(30.0, 3), (0.0, 1)])
def test_backoff_starts_over_only_after_a_stable_connection(
    service: FakeService,
    collector: Collector,
    make_subscriber: Make,
    monkeypatch: pytest.MonkeyPatch,
    stable_after: float,
    attempts: int,
) -> None:
    import iotnotify.subscriber as subscriber_module

    monkeypatch.setattr(subscriber_module, "_STABLE_AFTER", stable_after)
    backoff = Backoff(initial=0.01, cap=0.05)
    make_subscriber(backoff=backoff, since=new_notification_id()).start()
    # Three drops right after subscribing
    for count in (1, 2, 3):
        service.wait_subscribed(count)
        _state_seen(collector, ConnectionState.CAUGHT_UP, count)
        service.drop_all()
        _state_seen(collector, ConnectionState.DISCONNECTED, count)
    # Quick drops keep growing the delay; after a stable one it starts over.
    assert backoff.attempts == attempts


def test_since_now_with_a_fast_local_clock_still_gets_what_was_sent_during_an_outage(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    # Issue 12 item 2. Given this machine's clock is an hour fast
    service.clock_offset = -3600.0
    make_subscriber(since=SINCE_NOW).start()
    _state_seen(collector, ConnectionState.CAUGHT_UP)
    # When a notification is sent (by the service's clock) while the client is offline
    service.refuse_connections = True
    service.drop_all()
    _state_seen(collector, ConnectionState.DISCONNECTED)
    missed = Notification(id=service.server_id(), title="sent during the outage")
    service.send(missed, live=False)
    service.refuse_connections = False
    # Then the catch-up after the reconnect delivers it
    assert [n.title for n in collector.wait_notes(1)] == ["sent during the outage"]


def test_since_now_with_a_slow_local_clock_replays_nothing_old(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    # Given this machine's clock is an hour slow and the inbox holds older ones
    service.clock_offset = 3600.0
    for minutes in (30, 10, 1):
        old = id_floor(time.time() + 3600 - 60 * minutes)
        service.send(Notification(id=old[:10] + "0123456789ABCDEF", title="old"), live=False)
    # When listening from "now"
    make_subscriber(since=SINCE_NOW).start()
    _state_seen(collector, ConnectionState.CAUGHT_UP)
    service.send(Notification(id=service.server_id(), title="new"))
    # Then only the new one arrives
    collector.wait_notes(1)
    assert [n.title for n in collector.notes] == ["new"]


def test_stop_from_the_callback_delivers_nothing_more(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    # The README's example stops after one notification; with five waiting in the
    # inbox, the rest of the caught-up batch was already queued and kept coming.
    for note in _notes(5, "missed"):
        service.send(note, live=False)
    subscribers: list[Subscriber] = []

    def first_only(note: Notification) -> None:
        collector.on_message(note)
        subscribers[0].stop()

    subscribers.append(make_subscriber(on_message=first_only))
    subscribers[0].start()
    assert subscribers[0].wait_stopped(10)
    assert [n.title for n in collector.notes] == ["missed0"]


def _reconnect_after(
    service: FakeService, collector: Collector, count: int, offline: Callable[[], None]
) -> None:
    """Drop the connection, run ``offline`` while nobody is connected, let it reconnect."""
    service.refuse_connections = True
    service.drop_all()
    _state_seen(collector, ConnectionState.DISCONNECTED, count)
    offline()
    service.refuse_connections = False
    _state_seen(collector, ConnectionState.CAUGHT_UP, count + 1)


def test_an_older_id_that_reached_the_inbox_while_offline_is_caught_up_exactly_once(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    # The reviewer's gap: notify_many takes one id, then spends seconds on its
    # users; meanwhile another sender reaches this user live with a newer id.
    make_subscriber(since=new_notification_id()).start()
    _state_seen(collector, ConnectionState.CAUGHT_UP)
    fan_out = Notification.create(title="fan-out, id taken at its start")
    newer = Notification.create(title="newer, from another sender")
    assert fan_out.id < newer.id
    service.send(newer)
    assert collector.wait_notes(1)[0].id == newer.id
    # When the fan-out reaches the user's inbox while the user is offline
    _reconnect_after(service, collector, 1, lambda: service.send(fan_out, live=False))
    after = Notification.create(title="after the reconnect")
    service.send(after)
    # Then the reconnect's catch-up delivers it, once, and shows nothing again
    collector.wait_for(lambda: after.id in collector.ids())
    assert collector.ids() == [newer.id, fan_out.id, after.id]


def test_reconnects_within_the_look_back_window_show_nothing_twice(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    # Given notifications delivered live and from the inbox, over three connections
    make_subscriber(since=id_floor(time.time() - 1)).start()
    _state_seen(collector, ConnectionState.CAUGHT_UP)
    first = _notes(3, "live")
    for note in first:
        service.send(note)
    collector.wait_notes(3)
    away = _notes(2, "away")
    _reconnect_after(service, collector, 1, lambda: [service.send(n, live=False) for n in away])
    collector.wait_notes(5)
    late = Notification(id=first[0].id[:10] + "0" * 15 + "1", title="late, oldest id of all")
    _reconnect_after(service, collector, 2, lambda: service.send(late, live=False))
    after = Notification.create(title="after")
    service.send(after)
    collector.wait_for(lambda: after.id in collector.ids())
    # Then each was shown once: the look-back re-read the inbox twice and
    # dropped what it had already delivered
    ids = collector.ids()
    assert len(ids) == len(set(ids)) == 7
    assert ids == [*(n.id for n in [*first, *away]), late.id, after.id]
    assert service.inbox_calls == 3


def test_catch_up_never_asks_below_the_callers_since(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    # Given the caller already has everything up to `since` (a restarted app)
    older = Notification.create(title="the caller has this one")
    since = new_notification_id()
    service.send(older, live=False)
    # When it starts, and again after a reconnect before anything new arrived
    make_subscriber(since=since).start()
    _state_seen(collector, ConnectionState.CAUGHT_UP)
    missed = Notification.create(title="missed")
    _reconnect_after(service, collector, 1, lambda: service.send(missed, live=False))
    # Then only what is newer than `since` arrives, even within the look-back
    assert [n.title for n in collector.wait_notes(1)] == ["missed"]
    service.send(last := Notification.create(title="last"))
    collector.wait_for(lambda: last.id in collector.ids())
    assert collector.ids() == [missed.id, last.id]


def test_a_negative_look_back_is_refused(make_subscriber: Make) -> None:
    with pytest.raises(ValueError, match="catch_up_lookback"):
        make_subscriber(catch_up_lookback=-1.0)
    with pytest.raises(ValueError, match="catch_up_lookback"):
        make_subscriber(catch_up_lookback=float("nan"))


def _id_at(seconds: float, tail: str = "0123456789ABCDEF") -> str:
    return id_floor(seconds)[:10] + tail


def test_delivered_ids_are_forgotten_once_no_catch_up_can_return_them() -> None:
    from iotnotify.subscriber import _Sequencer

    t0 = 1_700_000_000.0
    shown: list[str] = []
    seq = _Sequencer(since=id_floor(t0), lookback=60.0, emit=lambda n: shown.append(n.id))
    seq.skip_catch_up()
    # Given live notifications spread over 200 s
    for offset in (1, 30, 100, 200):
        seq.live(Notification(id=_id_at(t0 + offset), title=str(offset)), own=True)
    # Then only the ones a catch-up from 60 s before the newest could return are kept
    assert seq.delivered_remembered == 1
    generation, since = seq.begin()
    assert since == id_floor(t0 + 140)
    # and that catch-up, returning the newest again plus a late older one, adds only the latter
    late = Notification(id=_id_at(t0 + 150), title="late")
    again = Notification(id=_id_at(t0 + 200), title="200")
    assert seq.page(generation, [late, again], last=True)
    assert shown == [_id_at(t0 + o) for o in (1, 30, 100, 200)] + [late.id]


def test_a_failed_catch_up_resumes_near_where_it_stopped_and_repeats_nothing() -> None:
    from iotnotify.subscriber import _Sequencer

    t0 = 1_700_000_000.0
    shown: list[str] = []
    seq = _Sequencer(since=id_floor(t0), lookback=60.0, emit=lambda n: shown.append(n.id))
    inbox = [Notification(id=_id_at(t0 + o), title=str(o)) for o in (10, 100, 300)]
    generation, since = seq.begin()
    assert since == id_floor(t0)
    # Given the first page arrives and the second fails, while live ones flow
    assert seq.page(generation, inbox[:2], last=False)
    assert seq.give_up(generation, inbox[1].id)
    live = Notification(id=_id_at(t0 + 400), title="live")
    seq.live(live, own=True)
    # When the retry starts: a look-back before the page it stopped after
    generation, since = seq.begin()
    assert since == id_floor(t0 + 40)
    # Then the retry, returning the end of that page again, delivers only what is new
    assert seq.page(generation, [inbox[1], inbox[2], live], last=True)
    assert shown == [inbox[0].id, inbox[1].id, live.id, inbox[2].id]
    # and, caught up, the next catch-up starts a look-back before the cursor
    assert seq.begin()[1] == id_floor(t0 + 340)


def test_shown_ids_from_a_previous_run_let_the_first_catch_up_look_back_too(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    # Given a previous run showed three notifications, the newest being `since`
    fan_out = Notification.create(title="fan-out, id taken first")
    shown = _notes(3, "shown")
    for note in shown:
        service.send(note, live=False)
    # and the fan-out reached the inbox after that run stopped
    service.send(fan_out, live=False)
    # When a new Subscriber starts from there with the ids the previous run showed
    make_subscriber(since=shown[-1].id, shown_ids=[n.id for n in shown]).start()
    _state_seen(collector, ConnectionState.CAUGHT_UP)
    after = Notification.create(title="after")
    service.send(after)
    # Then it delivers the fan-out and nothing the previous run showed
    collector.wait_for(lambda: after.id in collector.ids())
    assert collector.ids() == [fan_out.id, after.id]


def test_an_id_that_is_not_a_ulid_is_delivered_but_never_becomes_the_cursor() -> None:
    from iotnotify.subscriber import _Sequencer

    shown: list[str] = []
    seq = _Sequencer(since=None, lookback=60.0, emit=lambda n: shown.append(n.id))
    seq.skip_catch_up()
    # A sender outside the SDK used its own (sortable, but not ULID) ids
    seq.live(Notification(id="zz-0001", title="foreign"), own=True)
    assert shown == ["zz-0001"]
    # The API refuses since=zz-0001 (400): the next catch-up reads from the start
    generation, since = seq.begin()
    assert since is None
    assert seq.page(generation, [], last=True)
    # and a real id after it is the cursor, with its look-back window
    real = Notification.create(title="real")
    seq.live(real, own=True)
    assert shown == ["zz-0001", real.id]
    assert seq.last_user_id == real.id
    assert seq.begin()[1] == id_lower_bound(real.id, lookback_seconds=60.0)


@pytest.mark.parametrize("device_id", ["a/b#", "x" * 64, "caf\u00e9", "a+b"])
def test_a_device_id_no_client_id_can_hold_is_refused_when_the_subscriber_is_made(
    device_id: str,
) -> None:
    # It was found only at the first connect, after sign-in and GET /token,
    # and reported as a fatal state ("stopped: cannot build a client id").
    api = ApiClient(api_url="http://127.0.0.1:9", id_tokens=StaticIdToken("t"))
    with pytest.raises(InvalidClientId, match="client id suffix"):
        Subscriber(tokens=api, on_message=lambda _n: None, device_id=device_id)


@pytest.mark.parametrize("since", ["garbage", "01M8MZ57TN7WPMP79F83Z77M3HXX", ""])
def test_a_since_that_is_no_notification_id_is_refused_when_the_subscriber_is_made(
    since: str,
) -> None:
    api = ApiClient(api_url="http://127.0.0.1:9", id_tokens=StaticIdToken("t"))
    with pytest.raises(InvalidEnvelope, match="notification id"):
        Subscriber(tokens=api, on_message=lambda _n: None, since=since)


def test_a_live_message_whose_id_is_no_notification_id_cannot_spoil_later_catch_ups(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    # Given a connected subscriber that got one envelope whose id is not a ULID
    # ("zzz" sorts after every real id: it became the catch-up cursor, and every
    # later GET /notifications was refused with a 400, forever)
    make_subscriber(since=new_notification_id()).start()
    service.wait_connections(1)
    _state_seen(collector, ConnectionState.CAUGHT_UP)
    service.send_raw(b'{"v": 1, "id": "zzz", "title": "odd"}')
    marker = Notification.create(title="marker")
    service.send(marker)
    collector.wait_for(lambda: marker.id in collector.ids())
    # When it misses a notification while disconnected
    service.refuse_connections = True
    service.drop_all()
    _state_seen(collector, ConnectionState.DISCONNECTED)
    away = Notification.create(title="away")
    service.send(away)
    service.refuse_connections = False
    # Then the reconnect's catch-up still finds it (the odd envelope was shown
    # once, as it came: a sender outside the SDK may use its own ids)
    collector.wait_for(lambda: away.id in collector.ids())
    assert collector.ids() == ["zzz", marker.id, away.id]


@pytest.mark.parametrize(
    "option",
    [
        {"connect_timeout": 0},
        {"connect_timeout": -1.0},
        {"connect_timeout": float("nan")},
        {"max_connection_age": 0},
        {"max_connection_age": -5.0},
        {"max_connection_age": float("nan")},
    ],
)
def test_a_timeout_or_connection_age_that_is_no_positive_duration_is_refused(
    option: dict[str, float],
) -> None:
    # They were accepted: every connect timed out at once, or was closed for
    # a planned reconnect as soon as it was made.
    api = ApiClient(api_url="http://127.0.0.1:9", id_tokens=StaticIdToken("t"))
    with pytest.raises(ValueError, match=next(iter(option))):
        Subscriber(tokens=api, on_message=lambda _n: None, **option)  # type: ignore[arg-type]


def test_an_id_from_far_in_the_future_is_delivered_but_never_becomes_the_cursor() -> None:
    from iotnotify.subscriber import _Sequencer

    now = 1_796_000_000.0
    shown: list[str] = []
    seq = _Sequencer(
        since=None, lookback=60.0, emit=lambda n: shown.append(n.id), clock=lambda: now
    )
    seq.skip_catch_up()
    current = Notification(id=id_floor(now - 1), title="now")
    seq.live(current, own=True)
    # A publisher whose clock is a year ahead (or anyone with publish rights)
    # sent an id that every real id sorts below: as the cursor, every later
    # catch-up asked for nothing and what was missed while away was lost.
    future = Notification(id=id_floor(now + 365 * 86400), title="from the future")
    seq.live(future, own=True)
    assert shown == [current.id, future.id]
    assert seq.last_user_id == current.id
    # A little skew (under the allowance) still moves it
    near = Notification(id=id_floor(now + 30), title="a fast clock")
    seq.live(near, own=True)
    assert seq.last_user_id == near.id


def test_a_future_id_cannot_spoil_the_catch_up_after_a_reconnect(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    make_subscriber(since=new_notification_id()).start()
    service.wait_connections(1)
    _state_seen(collector, ConnectionState.CAUGHT_UP)
    future = id_floor(time.time() + 365 * 86400)
    service.send_raw(b'{"v": 1, "id": "%s", "title": "future"}' % future.encode())
    collector.wait_for(lambda: future in collector.ids())
    service.refuse_connections = True
    service.drop_all()
    _state_seen(collector, ConnectionState.DISCONNECTED)
    away = Notification.create(title="away")
    service.send(away)
    service.refuse_connections = False
    collector.wait_for(lambda: away.id in collector.ids())
    assert collector.ids() == [future, away.id]


def test_an_inbox_that_answers_403_is_retried_on_the_same_connection_not_by_reconnecting(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    # A 403 from GET /notifications made the subscriber drop its connection
    # and reconnect (GET /token, CONNECT, SUBSCRIBE, all billed), only to be
    # refused again: a reconnect loop paced by the reconnect backoff alone.
    # Given an inbox that refuses the first read with 403, and one missed note
    service.fail_inbox, service.fail_inbox_status = 1, 403
    missed = _notes(1, "m")[0]
    service.send(missed, live=False)
    make_subscriber().start()
    # Then the refusal is reported with its retry, and the connection stays:
    _state_seen(collector, ConnectionState.CATCH_UP_FAILED)
    failed = next(c for _, c in collector.states if c.state is ConnectionState.CATCH_UP_FAILED)
    assert isinstance(failed.error, Forbidden)
    assert failed.retry_in is not None
    # live messages flow meanwhile
    live = _notes(1, "l")[0]
    service.send(live)
    assert [n.id for n in collector.wait_notes(1)] == [live.id]
    # and the retry on that connection delivers what was missed
    _state_seen(collector, ConnectionState.CAUGHT_UP)
    assert sorted(n.id for n in collector.wait_notes(2)) == sorted([live.id, missed.id])
    assert [c.state for _, c in collector.states if c.state is ConnectionState.DISCONNECTED] == []
    assert len(service.connect_log) == 1
    assert service.token_calls == 1
    assert service.inbox_calls == 2


class _RecordingBackoff(Backoff):
    """The reconnect backoff, recording the bound and the delay of every draw."""

    def __init__(self, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.draws: list[tuple[float, float]] = []

    def next_delay(self) -> float:
        delay = super().next_delay()
        self.draws.append((self.bound(self.attempts), delay))
        return delay


def test_a_websocket_upgrade_refused_with_403_again_and_again_costs_one_token_per_backoff(
    service: FakeService, collector: Collector, make_subscriber: Make
) -> None:
    # Given an endpoint that refuses every WebSocket upgrade with 403 (AWS IoT's
    # answer to credentials it does not accept), and a pinned jitter draw
    service.refuse_upgrade = 403
    draws = iter([0.9, 0.2, 0.7, 0.5, 1.0, 0.1, 0.8, 0.3])
    backoff = _RecordingBackoff(initial=0.01, cap=0.04, rand=lambda: next(draws, 0.5))
    sub = make_subscriber(backoff=backoff).start()
    # When it has been refused eight times
    with service.connected:
        assert service.connected.wait_for(lambda: service.upgrade_refusals >= 8, 30)
    sub.stop()
    # Then each retry fetched one token, after one delay of the backoff:
    refusals = [c for _, c in collector.states if c.state is ConnectionState.DISCONNECTED]
    # (a fetch in flight when stop() came may not have reached the endpoint)
    assert service.upgrade_refusals <= service.token_calls <= service.upgrade_refusals + 1
    assert len(backoff.draws) == len(refusals) >= service.token_calls - 1
    assert [c.retry_in for c in refusals] == [delay for _, delay in backoff.draws]
    # growing bounds up to the cap, never reset by a refused attempt,
    bounds = [bound for bound, _ in backoff.draws]
    assert bounds[:4] == [0.01, 0.02, 0.04, 0.04]
    assert set(bounds[4:]) == {0.04}
    # each delay a jittered draw below its bound (full jitter)
    assert [delay for _, delay in backoff.draws[:4]] == pytest.approx([0.009, 0.004, 0.028, 0.02])
    # and the error says the connection, not the sign-in, was refused
    assert all("cannot connect to 127.0.0.1" in str(c.error) for c in refusals)
    assert sub.error is None  # still retrying until stopped, as promised


@pytest.mark.parametrize(
    "url", ["ws://127.0.0.1:99999/mqtt", "ws://127.0.0.1:port/mqtt", "wss://[::1/mqtt"]
)
def test_a_token_url_with_a_port_or_host_no_socket_can_use_is_an_auth_error(
    collector: Collector, make_subscriber: Make, url: str
) -> None:
    # Given a token provider whose URL cannot be connected to as written
    # (urlsplit's .port raises ValueError for these)
    class BadUrl:
        def token(self) -> ConnectionToken:
            return ConnectionToken(url=url, client_id_prefix="alice.", topics=("a/b",))

    sub = make_subscriber(tokens=BadUrl())
    # Then the subscriber stops with the token named as unusable, as for a
    # URL that is not ws:// or wss://, instead of retrying it forever
    with pytest.raises(AuthError, match="URL"):
        sub.run_forever()
