"""The tray's catch-up against the fake service: the look-back window within a run and
across a restart of the app, and an unread count that counts each notification once."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from iotnotify.api_client import ApiClient
from iotnotify.auth import StaticIdToken
from iotnotify.backoff import Backoff
from iotnotify.contract import Notification, id_floor
from iotnotify.subscriber import ConnectionState, StateChange
from iotnotify.tray.app import TrayApp
from iotnotify.tray.keyring_store import MemoryTokenStore
from iotnotify.tray.settings import TraySettings
from tests.unit.sdk.fakes import BROADCAST_TOPIC, Collector, FakeService


class Shown:
    """A notifier that records pop-ups."""

    def __init__(self) -> None:
        self.popups: list[tuple[str, str]] = []

    def notify(self, title: str, body: str) -> None:
        self.popups.append((title, body))

    def close(self) -> None:
        pass


MakeTray = Callable[[Path, Collector], tuple[TrayApp, Shown]]


@pytest.fixture
def make_tray(service: FakeService, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeTray]:
    """A TrayApp (no icon) whose subscriber talks to the fake service; it reports to a collector."""
    apps: list[TrayApp] = []

    def make(path: Path, collector: Collector) -> tuple[TrayApp, Shown]:
        notifier = Shown()
        box: list[TrayApp] = []

        def on_message(note: Notification) -> None:
            box[0]._on_notification(note)  # the tray's own callback, as start() wires it
            collector.on_message(note)

        def on_state(change: StateChange) -> None:
            box[0]._on_state(change)
            collector.on_state(change)

        settings = TraySettings.load(path).with_changes(
            api_url=service.api_url, user_pool_client_id="client", username="alice"
        )
        app = TrayApp(
            settings=settings,
            settings_path=path,
            notifier=notifier,
            token_store=MemoryTokenStore(),
            subscriber_options={
                "tokens": ApiClient(api_url=service.api_url, id_tokens=StaticIdToken("good")),
                "on_message": on_message,
                "on_state": on_state,
                "backoff": Backoff(initial=0.05, cap=0.2),
                "device_id": "test-tray",
            },
        )
        box.append(app)
        # Cognito is not part of this test: the fake service takes any ID token.
        monkeypatch.setattr(app, "sign_in", lambda: StaticIdToken("good"))
        apps.append(app)
        return app, notifier

    yield make
    for app in apps:
        app.quit()


def _caught_up(collector: Collector, count: int) -> None:
    collector.wait_for(
        lambda: sum(1 for _, c in collector.states if c.state is ConnectionState.CAUGHT_UP) >= count
    )


def _started(
    make_tray: MakeTray, path: Path, collector: Collector, *, shown: int
) -> tuple[TrayApp, Shown, Notification, list[Notification]]:
    """A tray resuming from a second ago, caught up; then a fan-out's id is taken
    (before anything else is sent) and ``shown`` notifications are shown live.
    Returns the tray, its pop-ups, the fan-out (not sent) and what was shown."""
    TraySettings(last_id=id_floor(time.time() - 1)).save(path)
    app, notifier = make_tray(path, collector)
    app.start()
    _caught_up(collector, 1)
    fan_out = Notification.create(title="fan-out")  # its id taken first
    live = [Notification.create(title=f"live {i}") for i in range(shown)]
    return app, notifier, fan_out, live


def test_a_look_back_catch_up_neither_misses_nor_double_counts_in_the_tray(
    service: FakeService, make_tray: MakeTray, tmp_path: Path
) -> None:
    # Given a running tray that showed 12 notifications live (more than its recent list of 10)
    collector = Collector()
    app, notifier, fan_out, live = _started(make_tray, tmp_path / "tray.json", collector, shown=12)
    for note in live:
        service.send(note)
    collector.wait_notes(12)
    # When it is offline as the fan-out reaches its inbox, then reconnects
    service.refuse_connections = True
    service.drop_all()
    collector.wait_for(
        lambda: any(c.state is ConnectionState.DISCONNECTED for _, c in collector.states)
    )
    service.send(fan_out, live=False)
    service.refuse_connections = False
    _caught_up(collector, 2)
    after = Notification.create(title="after")
    service.send(after)
    collector.wait_for(lambda: after.id in collector.ids())
    # Then the catch-up re-read all 12 (inside the look-back) and added only the fan-out
    assert collector.ids() == [*(n.id for n in live), fan_out.id, after.id]
    assert app.state.unread == 14
    assert ("fan-out", "") in notifier.popups
    assert len(notifier.popups) == 14


def test_after_a_restart_the_tray_catches_up_an_older_id_and_repeats_nothing(
    service: FakeService, make_tray: MakeTray, tmp_path: Path
) -> None:
    # Given a first run of the tray that showed three notifications and quit
    path = tmp_path / "tray.json"
    first_run = Collector()
    app, _, fan_out, shown = _started(make_tray, path, first_run, shown=3)
    for note in shown:
        service.send(note)
    first_run.wait_notes(3)
    app.quit()
    saved = TraySettings.load(path)
    assert saved.last_id == shown[-1].id
    assert saved.shown_ids.split() == [n.id for n in shown]
    # When the fan-out reaches the inbox while the tray is not running, and it starts again
    service.send(fan_out, live=False)
    second_run = Collector()
    app, notifier = make_tray(path, second_run)
    app.start()
    _caught_up(second_run, 1)
    after = Notification.create(title="after")
    service.send(after)
    second_run.wait_for(lambda: after.id in second_run.ids())
    # Then it shows the fan-out, and none of what the first run showed
    assert second_run.ids() == [fan_out.id, after.id]
    assert app.state.unread == 2
    assert notifier.popups == [("fan-out", ""), ("after", "")]


def test_a_broadcast_never_moves_the_trays_resume_point(
    service: FakeService, make_tray: MakeTray, tmp_path: Path
) -> None:
    # Given a tray that showed one note of its own
    path = tmp_path / "tray.json"
    collector = Collector()
    app, notifier, _, (own,) = _started(make_tray, path, collector, shown=1)
    service.send(own)
    collector.wait_notes(1)
    assert TraySettings.load(path).last_id == own.id
    # When a broadcast comes, its id made five minutes later by another host's clock
    later = id_floor(time.time() + 300)
    broadcast = dataclasses.replace(Notification.create(title="to everyone"), id=later)
    service.send(broadcast, topic=BROADCAST_TOPIC)
    collector.wait_for(lambda: broadcast.id in collector.ids())
    # Then it pops up, but the saved cursor is still the own note's (the inbox
    # never holds a broadcast, so a restart must catch up from the own note)
    assert ("to everyone", "") in notifier.popups
    saved = TraySettings.load(path)
    assert saved.last_id == own.id
    assert broadcast.id not in saved.shown_ids.split()
    app.quit()


def test_a_resume_point_that_is_no_id_catches_up_everything_instead_of_failing(
    service: FakeService, make_tray: MakeTray, tmp_path: Path
) -> None:
    # Given a settings file whose last_id someone edited into something else
    path = tmp_path / "tray.json"
    TraySettings(last_id="not-an-id").save(path)
    kept = Notification.create(title="in the inbox")
    service.send(kept, live=False)
    # When the tray starts
    collector = Collector()
    app, _ = make_tray(path, collector)
    app.start()
    # Then it catches up from the start of the inbox, as with no resume point
    collector.wait_for(lambda: kept.id in collector.ids())
    _caught_up(collector, 1)


def test_a_foreign_id_is_shown_but_is_no_resume_point(
    service: FakeService, make_tray: MakeTray, tmp_path: Path
) -> None:
    # Given a running tray that showed a notification
    path = tmp_path / "tray.json"
    collector = Collector()
    _app, notifier, _, live = _started(make_tray, path, collector, shown=1)
    service.send(live[0])
    collector.wait_notes(1)
    # When a sender outside the SDK publishes an envelope whose id is no ULID
    service.send_raw(b'{"v": 1, "id": "zzz", "title": "foreign"}')
    collector.wait_for(lambda: "zzz" in collector.ids())
    # Then it pops up, and the resume point stays the last id the inbox can answer after
    assert ("foreign", "") in notifier.popups
    assert TraySettings.load(path).last_id == live[0].id


def test_an_id_from_far_in_the_future_is_shown_but_is_no_resume_point(
    service: FakeService, make_tray: MakeTray, tmp_path: Path
) -> None:
    # Saved as last_id, it made the next run ask the inbox for nothing after it.
    path = tmp_path / "tray.json"
    collector = Collector()
    _app, notifier, _, live = _started(make_tray, path, collector, shown=1)
    service.send(live[0])
    collector.wait_notes(1)
    future = id_floor(time.time() + 365 * 86400)
    service.send_raw(b'{"v": 1, "id": "%s", "title": "from the future"}' % future.encode())
    collector.wait_for(lambda: future in collector.ids())
    assert ("from the future", "") in notifier.popups
    assert TraySettings.load(path).last_id == live[0].id
