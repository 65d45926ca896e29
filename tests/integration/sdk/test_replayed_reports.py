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
from iotnotify.contract import new_notification_id
from iotnotify.publisher import Publisher
from iotnotify.sending import publisher_for_local
from iotnotify.tray.app import TrayApp
from iotnotify.tray.keyring_store import MemoryTokenStore
from iotnotify.tray.settings import TraySettings
from iotnotify.tray.state import TrayState
from tests.integration.sdk.conftest import RunningStack
from tests.integration.sdk.network_link import Link


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
