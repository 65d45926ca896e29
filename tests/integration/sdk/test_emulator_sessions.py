"""The Subscriber against the real emulator, with in-memory credentials we control.

Here the test is the token vendor: it mints credentials with a chosen
lifetime in an :class:`InMemoryCredentialStore` and presigns URLs the way
the token Lambda does, so credential expiry and emulator restarts can be
staged precisely. The inbox is an in-memory :class:`InboxReader` written
before each publish, as the real publisher does.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from iotnotify.api_client import ConnectionToken, InboxPage
from iotnotify.backoff import Backoff
from iotnotify.contract import Notification, TopicScheme, new_notification_id
from iotnotify.errors import SessionTakenOver
from iotnotify.policies import subscriber_ceiling_policy, subscriber_session_policy
from iotnotify.subscriber import ConnectionState, Subscriber
from iotnotify_emulator.credentials import Credential, InMemoryCredentialStore
from iotnotify_emulator.server import EmulatorConfig, EmulatorThread
from iotnotify_emulator.testing import ConnectionRefused, RawMqttClient, presign_url
from tests.unit.sdk.fakes import Collector

USER = "alice"
SCHEME = TopicScheme("iotnotify", "test")
REGION = "us-east-1"
ACCOUNT = "123456789012"


@dataclass
class EmulatorTokens:
    """A TokenProvider minting a new role-session credential per call."""

    emulator: EmulatorThread
    store: InMemoryCredentialStore
    expires_in: timedelta = timedelta(hours=1)
    tls: bool = False
    issued: list[Credential] = field(default_factory=list)
    # Topics the token names beyond what the session policy allows.
    extra_topics: tuple[str, ...] = ()

    def token(self) -> ConnectionToken:
        credential = self.store.issue(
            [subscriber_ceiling_policy(SCHEME, region=REGION, account=ACCOUNT)],
            [subscriber_session_policy(SCHEME, USER, region=REGION, account=ACCOUNT)],
            principal_id=f"AROATEST:{USER}",
            expires_in=self.expires_in,
        )
        self.issued.append(credential)
        return ConnectionToken(
            url=presign_url(
                (self.emulator.wss_url or "") if self.tls else self.emulator.ws_url,
                credential,
                region=REGION,
            ),
            client_id_prefix=f"{USER}.",
            topics=(*(str(t) for t in SCHEME.user_topics(USER)), *self.extra_topics),
            keepalive=600,
        )


@dataclass
class MemoryInbox:
    notes: list[Notification] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def notifications(self, *, since: str | None, limit: int) -> InboxPage:
        with self.lock:
            newer = sorted((n for n in self.notes if n.id > (since or "")), key=lambda n: n.id)
        page = tuple(newer[:limit])
        return InboxPage(notifications=page, next=page[-1].id if len(newer) > limit else None)


class Sender:
    """Inbox first, then publish, like :class:`iotnotify.publisher.Publisher`."""

    def __init__(
        self, emulator: EmulatorThread, store: InMemoryCredentialStore, inbox: MemoryInbox
    ):
        from iotnotify.policies import publisher_policy

        self._store = store
        self._emulator = emulator
        self._credential = store.issue(
            [publisher_policy(SCHEME, region=REGION, account=ACCOUNT)],
            principal_id="AIDAPUBLISHER",
            with_token=False,
            expires_in=None,
        )
        self._inbox = inbox
        self.publish_failures = 0

    def _client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "iot-data",
            region_name=REGION,
            endpoint_url=self._emulator.data_url,
            aws_access_key_id=self._credential.access_key_id,
            aws_secret_access_key=self._credential.secret_access_key,
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
        )

    def send(self, note: Notification, client: Any) -> None:
        with self._inbox.lock:
            self._inbox.notes.append(note)
        try:
            client.publish(
                topic=str(SCHEME.user_notifications(USER)), qos=0, payload=note.to_json()
            )
        except Exception:  # the emulator is down: the inbox has it
            self.publish_failures += 1


@pytest.fixture
def store() -> InMemoryCredentialStore:
    return InMemoryCredentialStore()


@pytest.fixture
def emulator(store: InMemoryCredentialStore) -> Iterator[EmulatorThread]:
    config = EmulatorConfig(wss_port=None, account_id=ACCOUNT, region=REGION)
    emu = EmulatorThread(config, credentials=store).start()
    holder = [emu]
    yield emu
    holder[-1].stop()


def _wait_state(collector: Collector, state: ConnectionState, count: int = 1) -> None:
    collector.wait_for(
        lambda: sum(1 for _, c in collector.states if c.state is state) >= count, timeout=20
    )


def test_expired_credentials_keep_the_session_and_the_reconnect_gets_new_ones(
    emulator: EmulatorThread, store: InMemoryCredentialStore, collector: Collector
) -> None:
    # Given a subscriber connected with credentials that expire in one second
    tokens = EmulatorTokens(emulator, store, expires_in=timedelta(seconds=1))
    inbox = MemoryInbox()
    sender = Sender(emulator, store, inbox)
    publish = sender._client()
    sub = Subscriber(
        tokens=tokens,
        inbox=inbox,
        on_message=collector.on_message,
        on_state=collector.on_state,
        device_id="expiry",
        backoff=Backoff(initial=0.05, cap=0.2),
    ).start()
    try:
        _wait_state(collector, ConnectionState.CAUGHT_UP)
        first = tokens.issued[0]
        # When they have expired (nothing to await: this is the clock)
        expired = threading.Event()
        while not first.expired():
            expired.wait(0.2)
        # Then the open connection still delivers (AWS does not close it)...
        sender.send(Notification.create(title="after expiry"), publish)
        collector.wait_notes(1)
        # ...and the expired credentials could not open a new one.
        stale_url = presign_url(emulator.ws_url, first, region=REGION)
        with pytest.raises(ConnectionRefused) as refused:
            asyncio.run(RawMqttClient.open(stale_url))
        assert refused.value.status == 403

        # When the connection is taken over (same client id from elsewhere)
        async def kick() -> None:
            other = tokens.token()
            client = await RawMqttClient.connect(other.url, client_id=f"{USER}.expiry")
            await client.close()

        asyncio.run(kick())
        # Then the subscriber reconnects with a freshly fetched token
        _wait_state(collector, ConnectionState.CAUGHT_UP, 2)
        assert sub.stats.token_fetches >= 2
        sender.send(Notification.create(title="after reconnect"), publish)
        notes = collector.wait_notes(2)
        assert [n.title for n in notes] == ["after expiry", "after reconnect"]
    finally:
        sub.stop()


def test_two_subscribers_of_one_user_do_not_kick_each_other_off(
    emulator: EmulatorThread, store: InMemoryCredentialStore
) -> None:
    # Issue 12 item 1: two `iotnotify listen` (two SDK programs) of one user
    # on one machine, each with the default client id.
    tokens = EmulatorTokens(emulator, store)
    inbox = MemoryInbox()
    sender = Sender(emulator, store, inbox)
    collectors = [Collector(), Collector()]
    subs = [
        Subscriber(tokens=tokens, inbox=inbox, on_message=c.on_message, on_state=c.on_state)
        for c in collectors
    ]
    try:
        for sub, collector in zip(subs, collectors, strict=True):
            sub.start()
            _wait_state(collector, ConnectionState.CAUGHT_UP)
        publish = sender._client()
        for index in range(3):
            sender.send(Notification.create(title=f"n{index}"), publish)
        for collector in collectors:
            assert [n.title for n in collector.wait_notes(3)] == ["n0", "n1", "n2"]
        ids = {
            c.client_id
            for collector in collectors
            for _, c in collector.states
            if c.state is ConnectionState.CONNECTED
        }
        assert len(ids) == 2  # one client id per process
        for sub, collector in zip(subs, collectors, strict=True):
            assert sub.stats.connects == 1
            assert not [c for _, c in collector.states if c.state is ConnectionState.DISCONNECTED]
    finally:
        for sub in subs:
            sub.stop()


def test_a_takeover_is_reported_as_a_takeover(
    emulator: EmulatorThread, store: InMemoryCredentialStore, collector: Collector
) -> None:
    tokens = EmulatorTokens(emulator, store)
    sub = Subscriber(
        tokens=tokens,
        inbox=MemoryInbox(),
        on_state=collector.on_state,
        device_id="shared",
        backoff=Backoff(initial=0.05, cap=0.2),
    ).start()
    try:
        _wait_state(collector, ConnectionState.CAUGHT_UP)

        # When another program connects with the same client id
        async def kick() -> None:
            client = await RawMqttClient.connect(tokens.token().url, client_id=f"{USER}.shared")
            await client.close()

        asyncio.run(kick())
        _wait_state(collector, ConnectionState.DISCONNECTED)
        # Then the user reads "taken over" and the client id, not "Unspecified error"
        change = next(c for _, c in collector.states if c.state is ConnectionState.DISCONNECTED)
        assert isinstance(change.error, SessionTakenOver)
        text = change.describe()
        assert "alice.shared" in text
        assert "same client id" in text
        assert "Unspecified" not in text
    finally:
        sub.stop()


def test_a_topic_the_policy_refuses_is_dropped_and_the_rest_is_delivered(
    emulator: EmulatorThread, store: InMemoryCredentialStore, collector: Collector
) -> None:
    # Issue 12 item 3, against the emulator's IAM: a token naming a room the
    # session policy does not allow (a channel dropped from the token).
    room = str(SCHEME.chat("secret-room"))
    tokens = EmulatorTokens(emulator, store, extra_topics=(room,))
    inbox = MemoryInbox()
    sender = Sender(emulator, store, inbox)
    sender.send(Notification.create(title="missed"), sender._client())
    sub = Subscriber(
        tokens=tokens,
        inbox=inbox,
        on_message=collector.on_message,
        on_state=collector.on_state,
        backoff=Backoff(initial=0.05, cap=0.2),
    ).start()
    try:
        _wait_state(collector, ConnectionState.CAUGHT_UP)
        sender.send(Notification.create(title="live"), sender._client())
        assert [n.title for n in collector.wait_notes(2)] == ["missed", "live"]
        assert sub.refused_topics == (room,)
        connected = [c for _, c in collector.states if c.state is ConnectionState.CONNECTED]
        assert room in connected[-1].describe()
        assert sub.state is ConnectionState.CAUGHT_UP
    finally:
        sub.stop()


@pytest.mark.slow
def test_emulator_restart_during_200_notifications_loses_and_repeats_nothing(
    store: InMemoryCredentialStore, collector: Collector
) -> None:
    config = EmulatorConfig(wss_port=None, account_id=ACCOUNT, region=REGION)
    emulators = [EmulatorThread(config, credentials=store).start()]
    ws_port = emulators[0].ws_port
    tokens = EmulatorTokens(emulators[0], store)
    inbox = MemoryInbox()
    sender = Sender(emulators[0], store, inbox)
    sub = Subscriber(
        tokens=tokens,
        inbox=inbox,
        on_message=collector.on_message,
        on_state=collector.on_state,
        since=new_notification_id(),
        device_id="restart",
        backoff=Backoff(initial=0.1, cap=1.0),
    ).start()
    sent: list[Notification] = []
    midway = threading.Event()
    restarted = threading.Event()

    def send_all() -> None:
        publish = sender._client()
        for index in range(200):
            note = Notification.create(title=f"turn {index}")
            sent.append(note)
            sender.send(note, publish)
            if index == 60:
                midway.set()
            if index == 120:
                restarted.wait(30)  # keep some sends for after the restart
        midway.set()

    thread = threading.Thread(target=send_all)
    try:
        _wait_state(collector, ConnectionState.CAUGHT_UP)
        thread.start()
        # When the emulator is killed midway, stays down a moment, and comes back
        assert midway.wait(30)
        emulators[0].stop()
        threading.Event().wait(1.0)  # the outage itself
        emulators.append(
            EmulatorThread(
                EmulatorConfig(wss_port=None, ws_port=ws_port, account_id=ACCOUNT, region=REGION),
                credentials=store,
            ).start()
        )
        restarted.set()
        thread.join(60)
        # Then the subscriber ends with all 200, each once, in order
        got = collector.wait_notes(200, timeout=60)
        assert [n.id for n in got] == [n.id for n in sent]
        assert sub.stats.connects >= 2
        assert sender.publish_failures > 0  # the outage really lost live messages
    finally:
        restarted.set()
        sub.stop()
        thread.join(10)
        emulators[-1].stop()


def test_wss_with_the_emulators_ca(store: InMemoryCredentialStore, collector: Collector) -> None:
    # Given an emulator with TLS and a token vending wss:// URLs
    with EmulatorThread(
        EmulatorConfig(account_id=ACCOUNT, region=REGION), credentials=store
    ) as emu:
        assert emu.ca_file is not None
        tokens = EmulatorTokens(emu, store, tls=True)
        inbox = MemoryInbox()
        sub = Subscriber(
            tokens=tokens,
            inbox=inbox,
            on_message=collector.on_message,
            on_state=collector.on_state,
            ca_file=str(emu.ca_file),
            device_id="tls",
        ).start()
        try:
            # When a notification is published
            _wait_state(collector, ConnectionState.CAUGHT_UP)
            sender = Sender(emu, store, inbox)
            sender.send(Notification.create(title="over TLS"), sender._client())
            # Then it arrives over the verified TLS connection
            assert [n.title for n in collector.wait_notes(1)] == ["over TLS"]
        finally:
            sub.stop()


def test_wss_without_trusting_the_ca_keeps_retrying(
    store: InMemoryCredentialStore, collector: Collector
) -> None:
    with EmulatorThread(
        EmulatorConfig(account_id=ACCOUNT, region=REGION), credentials=store
    ) as emu:
        sub = Subscriber(
            tokens=EmulatorTokens(emu, store, tls=True),
            inbox=MemoryInbox(),
            on_state=collector.on_state,
            device_id="tls-untrusted",
            backoff=Backoff(initial=0.01, cap=0.05),
        ).start()
        try:
            _wait_state(collector, ConnectionState.DISCONNECTED, 2)
            errors = [c.error for _, c in collector.states if c.error is not None]
            assert all("certificate" in str(e).lower() for e in errors), errors
        finally:
            sub.stop()
