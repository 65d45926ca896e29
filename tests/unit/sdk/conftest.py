from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from iotnotify.api_client import ApiClient
from iotnotify.auth import StaticIdToken
from iotnotify.backoff import Backoff
from iotnotify.contract import Notification
from iotnotify.subscriber import StateChange, Subscriber
from tests.unit.sdk.fakes import FakeService


class Collector:
    """Records notifications and state changes; waits on a condition, never sleeps."""

    def __init__(self) -> None:
        self.notes: list[Notification] = []
        self.states: list[tuple[float, StateChange]] = []
        self._cond = threading.Condition()

    def on_message(self, note: Notification) -> None:
        with self._cond:
            self.notes.append(note)
            self._cond.notify_all()

    def on_state(self, change: StateChange) -> None:
        with self._cond:
            self.states.append((time.monotonic(), change))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        with self._cond:
            assert self._cond.wait_for(predicate, timeout), "timed out waiting"

    def wait_notes(self, count: int, timeout: float = 10.0) -> list[Notification]:
        self.wait_for(lambda: len(self.notes) >= count, timeout)
        return list(self.notes)

    def ids(self) -> list[str]:
        with self._cond:
            return [n.id for n in self.notes]


@pytest.fixture
def service() -> Iterator[FakeService]:
    with FakeService() as svc:
        yield svc


@pytest.fixture
def collector() -> Collector:
    return Collector()


@pytest.fixture
def make_subscriber(
    service: FakeService, collector: Collector
) -> Iterator[Callable[..., Subscriber]]:
    started: list[Subscriber] = []

    def make(**options: object) -> Subscriber:
        api = ApiClient(api_url=service.api_url, id_tokens=StaticIdToken("good"))
        defaults: dict[str, object] = {
            "tokens": api,
            "on_message": collector.on_message,
            "on_state": collector.on_state,
            "backoff": Backoff(initial=0.05, cap=0.2),
            "device_id": "test-device",
        }
        defaults.update(options)
        sub = Subscriber(**defaults)  # type: ignore[arg-type]
        started.append(sub)
        return sub

    yield make
    for sub in started:
        sub.stop()
