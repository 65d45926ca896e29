"""Public bug reports of MQTT-over-WebSocket clients on AWS IoT, replayed against the SDK.

Each test names the report it replays (repository and issue number) and
stages the same situation against ``iotnotify local`` or the emulator.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from iotnotify.backoff import Backoff
from iotnotify.contract import Notification, new_notification_id
from iotnotify.publisher import Publisher
from iotnotify.sending import publisher_for_local
from iotnotify.subscriber import ConnectionState, Subscriber
from iotnotify.tray.app import TrayApp
from iotnotify.tray.keyring_store import MemoryTokenStore
from iotnotify.tray.settings import TraySettings
from iotnotify.tray.state import TrayState
from iotnotify_emulator.credentials import InMemoryCredentialStore
from iotnotify_emulator.server import EmulatorConfig, EmulatorThread
from tests.integration.sdk.conftest import RunningStack
from tests.integration.sdk.network_link import Link
from tests.integration.sdk.test_emulator_sessions import (
    ACCOUNT,
    REGION,
    EmulatorTokens,
    MemoryInbox,
    Sender,
)
from tests.unit.sdk.fakes import Collector


@pytest.fixture
def publisher(local_stack: RunningStack) -> Iterator[tuple[Publisher, str]]:
    pub, resolve = publisher_for_local(local_stack.state_file)
    with pub:
        yield pub, resolve("alice")


class Popups:
    """A notifier that records pop-ups and lets a test wait for them."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self._cond = threading.Condition()

    def notify(self, title: str, body: str) -> None:
        with self._cond:
            self.shown.append(title)
            self._cond.notify_all()

    def wait_for(self, title: str, timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: title in self.shown, timeout)

    def close(self) -> None:
        pass


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def test_a_tray_started_at_login_before_the_network_is_up_waits_for_it(
    local_stack: RunningStack, publisher: tuple[Publisher, str], tmp_path: Path
) -> None:
    """Replays aws/aws-iot-device-sdk-python-v2#226 (devices that boot without a
    network: the connect fails and the application has to handle it) and
    aws/aws-iot-device-sdk-python#224 (credentials cannot be refreshed while
    the network is down, and the client is stuck).

    The tray is started at login, when Wi-Fi is often not up yet. Signing in
    with the refresh token the keyring keeps fails as a network error, which
    the tray must treat like any other outage (retry with backoff until the
    network comes), not as a refused sign-in that ends the app.
    """
    state = local_stack.state
    alice = local_stack.user("alice")
    # Given a tray set up on an earlier run: settings saved, refresh token in the keyring
    refresh_token = local_stack.session("alice").sign_in().refresh_token
    store = MemoryTokenStore()
    store.put(alice["username"], refresh_token)
    # and a machine whose network is down: Cognito and the API refuse connections
    cognito = Link(_port(state.awsEndpointUrl))
    api = Link(_port(state.apiUrl))
    settings = TraySettings(
        api_url=api.url(),
        user_pool_client_id=state.userPoolClientId,
        region=state.region,
        cognito_endpoint=cognito.url(),
        username=alice["username"],
        last_id=new_notification_id(),
    )
    popups = Popups()
    tray_state = TrayState()
    app = TrayApp(
        settings=settings,
        settings_path=tmp_path / "tray.json",
        notifier=popups,
        token_store=store,
        state=tray_state,
        subscriber_options={"device_id": "offline-boot", "backoff": Backoff(0.05, cap=0.5)},
    )
    offline = threading.Event()
    caught_up = threading.Event()

    def seen() -> None:
        if tray_state.connection.startswith("offline"):
            offline.set()
        if tray_state.connection == "caught up":
            caught_up.set()

    tray_state.subscribe(seen)
    try:
        # When `iotnotify tray` signs in and starts while offline
        app.sign_in()
        app.start()
        # Then it stays up, offline and retrying
        assert offline.wait(30)
        assert app.subscriber is not None
        assert app.subscriber.error is None
        # and once the network is back it signs in, connects and shows notifications
        cognito.up()
        api.up()
        assert caught_up.wait(60)
        pub, alice_id = publisher
        pub.notify(alice_id, title="Your turn")
        assert popups.wait_for("Your turn")
        # The refresh token is the one the keyring had (or a renewal of it)
        assert store.get(alice["username"])
    finally:
        app.quit()
        cognito.close()
        api.close()


def test_the_websocket_lifetime_limit_closing_connections_loses_and_repeats_nothing(
    collector: Collector,
) -> None:
    """Replays aws/aws-iot-device-sdk-python#124 and #39 (after AWS IoT closes a
    WebSocket connection at its 24 h limit the client neither reconnects nor
    says so) and aws/aws-iot-device-sdk-java-v2#607 (the connection closed at
    24 h does not resume by itself), with the emulator's lifetime limit
    shortened to a second and a half.

    The SDK replaces connections before 23.5 h on its own; this stages a
    server that closes them first, over and over, while notifications keep
    coming: each close is followed by a reconnect with a fresh token and a
    catch-up, and every notification arrives once, in order.
    """
    store = InMemoryCredentialStore()
    config = EmulatorConfig(wss_port=None, account_id=ACCOUNT, region=REGION, websocket_ttl=1.5)
    with EmulatorThread(config, credentials=store) as emulator:
        tokens = EmulatorTokens(emulator, store)
        inbox = MemoryInbox()
        sender = Sender(emulator, store, inbox)
        sub = Subscriber(
            tokens=tokens,
            inbox=inbox,
            on_message=collector.on_message,
            on_state=collector.on_state,
            since=new_notification_id(),
            device_id="ttl",
            backoff=Backoff(initial=0.05, cap=0.3),
        ).start()
        sent: list[Notification] = []
        done = threading.Event()

        def caught_up() -> int:
            return sum(1 for _, c in collector.states if c.state is ConnectionState.CAUGHT_UP)

        def send_until_three_closes() -> None:
            publish = sender._client()
            # Paced so that some notifications fall into each close and reconnect.
            while caught_up() < 4 and len(sent) < 400 and not done.wait(0.02):
                note = Notification.create(title=f"n{len(sent)}")
                sent.append(note)
                sender.send(note, publish)

        thread = threading.Thread(target=send_until_three_closes)
        try:
            collector.wait_for(lambda: caught_up() >= 1, timeout=20)
            thread.start()
            thread.join(60)
            assert caught_up() >= 4  # three lifetime closes, each followed by a reconnect
            got = collector.wait_notes(len(sent), timeout=30)
            assert [n.id for n in got] == [n.id for n in sent]
            assert len(tokens.issued) >= 4  # a fresh token for every reconnect
            assert sub.state is not ConnectionState.STOPPED
        finally:
            done.set()
            thread.join(10)
            sub.stop()
