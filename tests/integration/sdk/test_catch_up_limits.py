"""Catch-up that the inbox API cannot serve: no reconnect loop, live messages flow.

The inbox here answers as the HTTP API does on AWS when a page breaks a
limit: a page whose Lambda response would pass 6 MB is a 502, which the
SDK's ApiClient raises as ConnectionLost. Sixty notifications of 120 KB
make such a page at the SDK's page size (issue 12 item 6).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from iotnotify.api_client import InboxPage
from iotnotify.backoff import Backoff
from iotnotify.contract import Notification
from iotnotify.errors import ConnectionLost
from iotnotify.subscriber import ConnectionState, Subscriber
from iotnotify_emulator.credentials import InMemoryCredentialStore
from iotnotify_emulator.server import EmulatorConfig, EmulatorThread
from iotnotify_local.api import MAX_LAMBDA_RESPONSE_BYTES
from tests.integration.sdk.test_emulator_sessions import (
    ACCOUNT,
    REGION,
    EmulatorTokens,
    MemoryInbox,
    Sender,
)
from tests.unit.sdk.fakes import Collector

BIG_BODY = "x" * 120_000


@dataclass
class AwsLikeInbox(MemoryInbox):
    """``GET /notifications`` with a page-size cap by count only, behind Lambda's 6 MB limit."""

    down: threading.Event = field(default_factory=threading.Event)
    asked: list[int] = field(default_factory=list)

    def notifications(self, *, since: str | None, limit: int) -> InboxPage:
        self.asked.append(limit)
        if self.down.is_set():
            raise ConnectionLost("GET /notifications: server error 503: unavailable")
        page = super().notifications(since=since, limit=limit)
        body = json.dumps(
            {"notifications": [n.to_dict() for n in page.notifications], "next": page.next}
        )
        response = json.dumps({"statusCode": 200, "headers": {}, "body": body})
        if len(response) > MAX_LAMBDA_RESPONSE_BYTES:
            raise ConnectionLost("GET /notifications: server error 502: Internal server error")
        return page


@pytest.fixture
def store() -> InMemoryCredentialStore:
    return InMemoryCredentialStore()


@pytest.fixture
def emulator(store: InMemoryCredentialStore) -> Iterator[EmulatorThread]:
    with EmulatorThread(
        EmulatorConfig(wss_port=None, account_id=ACCOUNT, region=REGION), credentials=store
    ) as emu:
        yield emu


def states(collector: Collector, state: ConnectionState) -> int:
    return sum(1 for _, change in collector.states if change.state is state)


def test_an_inbox_too_large_for_one_page_is_read_in_smaller_pages_on_one_connection(
    emulator: EmulatorThread, store: InMemoryCredentialStore, collector: Collector
) -> None:
    # Given 60 notifications of 120 KB missed while offline (7.2 MB at 100 a page)
    inbox = AwsLikeInbox()
    sender = Sender(emulator, store, inbox)
    missed = [Notification.create(title=f"missed {i}", body=BIG_BODY) for i in range(60)]
    inbox.notes.extend(missed)
    sub = Subscriber(
        tokens=EmulatorTokens(emulator, store),
        inbox=inbox,
        on_message=collector.on_message,
        on_state=collector.on_state,
        device_id="oversized",
        backoff=Backoff(initial=0.05, cap=0.2),
    ).start()
    try:
        # When the subscriber connects and catches up
        collector.wait_for(lambda: states(collector, ConnectionState.CAUGHT_UP) >= 1, 30)
        # Then everything missed arrives once, in order, without a reconnect
        assert collector.ids() == [n.id for n in missed]
        assert inbox.asked[0] == 100  # the first page was the one AWS refuses
        assert sub.stats.connects == 1
        assert states(collector, ConnectionState.DISCONNECTED) == 0
        # And live delivery works on that same connection
        live = Notification.create(title="live")
        sender.send(live, sender._client())
        assert collector.wait_notes(61, timeout=20)[-1].id == live.id
        assert sub.stats.connects == 1
    finally:
        sub.stop()


def test_an_unreadable_inbox_is_reported_and_live_messages_still_arrive(
    emulator: EmulatorThread, store: InMemoryCredentialStore, collector: Collector
) -> None:
    # Given an inbox API that fails every read, and one notification missed
    inbox = AwsLikeInbox()
    inbox.down.set()
    sender = Sender(emulator, store, inbox)
    missed = Notification.create(title="missed while offline")
    inbox.notes.append(missed)
    sub = Subscriber(
        tokens=EmulatorTokens(emulator, store),
        inbox=inbox,
        on_message=collector.on_message,
        on_state=collector.on_state,
        device_id="unreadable",
        backoff=Backoff(initial=0.05, cap=0.2),
    ).start()
    try:
        # When the catch-up fails
        collector.wait_for(lambda: states(collector, ConnectionState.CATCH_UP_FAILED) >= 1, 30)
        failed = next(c for _, c in collector.states if c.state is ConnectionState.CATCH_UP_FAILED)
        # Then the failure is reported with its cause and when it is retried
        assert isinstance(failed.error, ConnectionLost)
        assert "503" in str(failed.error)
        assert failed.retry_in is not None
        # And live messages are delivered on the same connection meanwhile
        live = Notification.create(title="live")
        sender.send(live, sender._client())
        assert [n.id for n in collector.wait_notes(1, timeout=20)] == [live.id]
        assert sub.stats.connects == 1
        assert states(collector, ConnectionState.DISCONNECTED) == 0
        # When the inbox is back, the retry delivers what was missed, still no reconnect
        inbox.down.clear()
        collector.wait_for(lambda: states(collector, ConnectionState.CAUGHT_UP) >= 1, 30)
        assert sorted(collector.ids()) == sorted([live.id, missed.id])
        assert sub.stats.connects == 1
    finally:
        sub.stop()
