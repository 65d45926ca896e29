from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from iotnotify.api_client import ApiClient
from iotnotify.auth import StaticIdToken
from iotnotify.backoff import Backoff
from iotnotify.subscriber import Subscriber
from tests.unit.sdk.fakes import Collector, FakeService


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


@pytest.fixture
def make_service_subscriber(
    collector: Collector,
) -> Iterator[Callable[..., tuple[FakeService, Subscriber]]]:
    """A FakeService built with options (e.g. the token's topics) and a Subscriber on it."""
    made: list[tuple[FakeService, Subscriber]] = []

    def make(**service_options: Any) -> tuple[FakeService, Subscriber]:
        service = FakeService(**service_options).__enter__()
        sub = Subscriber(
            tokens=ApiClient(api_url=service.api_url, id_tokens=StaticIdToken("good")),
            on_message=collector.on_message,
            on_state=collector.on_state,
            backoff=Backoff(initial=0.05, cap=0.2),
            device_id="test-device",
        )
        made.append((service, sub))
        return service, sub

    yield make
    for service, sub in made:
        sub.stop()
        service.__exit__(None, None, None)
