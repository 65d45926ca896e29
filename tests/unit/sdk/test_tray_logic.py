"""The tray's decisions, badge, settings and keyring store: no screen needed."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

from iotnotify.contract import Notification
from iotnotify.subscriber import ConnectionState, StateChange
from iotnotify.tray.icon import Bell, draw_icon, zpixmap
from iotnotify.tray.keyring_store import RefreshTokenStore
from iotnotify.tray.settings import TraySettings
from iotnotify.tray.state import Alert, TrayState, badge_text


class MemoryKeyring(KeyringBackend):
    """An in-memory keyring backend for tests (set with ``keyring.set_keyring``)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if (service, username) not in self.entries:
            raise PasswordDeleteError("not found")
        del self.entries[(service, username)]


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.mark.parametrize(("unread", "text"), [(0, ""), (1, "1"), (9, "9"), (10, "9+"), (250, "9+")])
def test_badge_text(unread: int, text: str) -> None:
    assert badge_text(unread) == text


def test_new_notifications_count_as_unread_and_pop_up() -> None:
    state = TrayState()
    note = Notification.create(title="Your turn", body="Game 7")
    assert state.add(note) == Alert(title="Your turn", body="Game 7")
    assert state.unread == 1
    assert state.menu_labels() == ["\u2022 Your turn: Game 7"]
    assert state.add(note) is None  # the same id again: not counted twice
    assert state.unread == 1


def test_mark_all_read_clears_the_badge_but_keeps_the_list() -> None:
    state = TrayState()
    for i in range(3):
        state.add(Notification.create(title=f"t{i}"))
    state.mark_all_read()
    assert state.unread == 0
    assert state.menu_labels() == ["t2", "t1", "t0"]  # newest first, no unread mark


def test_pause_keeps_counting_but_does_not_pop_up() -> None:
    state = TrayState()
    assert state.toggle_pause() is True
    assert state.add(Notification.create(title="quiet")) is None
    assert state.unread == 1
    assert "paused" in state.title()
    assert state.toggle_pause() is False
    assert state.add(Notification.create(title="loud")) is not None


def test_recent_list_is_bounded_but_the_unread_count_is_not() -> None:
    state = TrayState(max_recent=3)
    for i in range(5):
        state.add(Notification.create(title=f"t{i}"))
    assert state.unread == 5
    assert [item.note.title for item in state.recent] == ["t4", "t3", "t2"]


def test_connection_changes_and_listeners() -> None:
    state = TrayState()
    changes: list[str] = []
    state.subscribe(lambda: changes.append(state.connection))
    state.on_connection(StateChange(ConnectionState.CAUGHT_UP))
    assert state.online
    state.on_connection(StateChange(ConnectionState.DISCONNECTED, retry_in=1.0))
    assert not state.online
    assert changes == ["caught up", "offline, reconnecting"]
    assert "offline" in state.title()


def test_sign_out_clears_everything() -> None:
    state = TrayState()
    state.add(Notification.create(title="private"))
    state.clear()
    assert state.unread == 0
    assert state.menu_labels() == ["No notifications yet"]


def test_badge_is_drawn_into_the_icon() -> None:
    plain = draw_icon(unread=0)
    badged = draw_icon(unread=3)
    many = draw_icon(unread=42)
    assert plain.size == badged.size == (64, 64)
    assert plain.tobytes() != badged.tobytes() != many.tobytes()
    # The badge is red in the top-right corner.
    r, g, _b, a = badged.getpixel((48, 4))
    assert (r, a) == (220, 255)
    assert g < 100
    assert draw_icon(unread=0, online=False).tobytes() != plain.tobytes()
    assert draw_icon(unread=0, paused=True).tobytes() != plain.tobytes()


def test_the_icon_renders_at_tray_sizes_and_converts_to_pillow_unchanged() -> None:
    for size in (1, 16, 22, 24, 48):
        image = Bell(unread=7).render(size)
        assert image.size == (size, size)
        assert len(image.tobytes()) == 4 * size * size
    # At 24 px (a common X11 tray size) the badge is still red, the bell blue
    # and the corner outside both transparent.
    small = Bell(unread=7).render(24)
    r, g, _b, a = small.getpixel((14, 6))
    assert (r, a) == (220, 255)
    assert g < 100
    assert small.getpixel((6, 12)) == (46, 125, 240, 255)
    assert small.getpixel((0, 0))[3] == 0
    # Other pystray backends get the same pixels as a Pillow image.
    pil = Bell(unread=3, paused=True).render(32).to_pil()
    assert (pil.mode, pil.size) == ("RGBA", (32, 32))
    assert pil.tobytes() == Bell(unread=3, paused=True).render(32).tobytes()
    with pytest.raises(IndexError):
        small.getpixel((24, 0))
    with pytest.raises(ValueError, match="at least 1 pixel"):
        Bell().render(0)


def test_x11_pixels_are_the_bell_over_black_in_the_servers_byte_order() -> None:
    bell = Bell(unread=3)
    image = bell.render(24)
    lsb = zpixmap(bell, 24, 24, msb_first=False)
    msb = zpixmap(bell, 24, 24, msb_first=True)
    assert len(lsb) == len(msb) == 4 * 24 * 24

    def pixel(data: bytes, x: int, y: int, width: int = 24) -> bytes:
        return data[4 * (y * width + x) : 4 * (y * width + x) + 4]

    assert pixel(lsb, 14, 6) == bytes((38, 38, 220, 0))  # B G R pad
    assert pixel(msb, 14, 6) == bytes((0, 220, 38, 38))  # pad R G B
    assert pixel(lsb, 0, 0) == bytes(4)  # transparent becomes black
    # An anti-aliased edge pixel is its colour scaled by its coverage.
    r, g, b, a = next(
        p for y in range(24) for x in range(24) if 0 < (p := image.getpixel((x, y)))[3] < 255
    )
    found = {bytes(pixel(lsb, x, y)) for y in range(24) for x in range(24)}
    assert bytes((b * a // 255, g * a // 255, r * a // 255, 0)) in found
    # A wider-than-high window gets the square bell centred, black either side.
    wide = zpixmap(bell, 30, 24, msb_first=False)
    assert len(wide) == 4 * 30 * 24
    assert pixel(wide, 0, 12, 30) == bytes(4)
    assert pixel(wide, 3 + 6, 12, 30) == pixel(lsb, 6, 12)


def test_settings_live_in_the_xdg_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iotnotify.tray.settings import default_settings_path

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_settings_path() == tmp_path / "iotnotify" / "tray.json"
    TraySettings(api_url="https://api.example", username="a").save()
    assert TraySettings.load().username == "a"


def test_the_tray_keeps_no_optional_library_resident() -> None:
    """Issue 11 §2: what the always-on tray does not need stays unloaded:
    Pillow's image core (the X11 icon is painted without it), platformdirs
    (click finds the config folder), webbrowser (loaded on a click) and the
    notifier's D-Bus library (loaded with the first pop-up)."""
    code = (
        "import json, sys\n"
        "import iotnotify.cli_client, iotnotify.tray.app, iotnotify.tray.icon\n"
        "from iotnotify.tray.icon import Bell\n"
        "from iotnotify.tray.settings import default_settings_path\n"
        "default_settings_path()\n"
        "Bell(unread=3).render(24)\n"
        "from iotnotify.tray.notifier import default_notifier\n"
        "default_notifier()\n"
        "print(json.dumps(sorted(m for m in ('PIL.Image', 'PIL._imaging', 'platformdirs',\n"
        "                                     'webbrowser', 'jeepney', 'asyncio')\n"
        "                        if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def test_settings_round_trip_without_secrets(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "tray.json"
    assert not TraySettings.load(path).configured
    settings = TraySettings(
        api_url="https://api.example", user_pool_client_id="abc", username="a@example.com"
    )
    settings.save(path)
    loaded = TraySettings.load(path)
    assert loaded == settings
    assert loaded.configured
    assert "token" not in path.read_text().lower()
    assert path.stat().st_mode & 0o077 == 0
    path.write_text("{not json")
    assert TraySettings.load(path) == TraySettings()


@pytest.mark.parametrize("content", [b"[]", b'"x"', b"\xff\xfe{}", b"[" * 100_000])
def test_a_settings_file_that_is_no_json_object_means_not_configured(
    tmp_path: Path, content: bytes
) -> None:
    # A broken file means "not configured", not a traceback at login (a list
    # was an AttributeError, bytes that are not UTF-8 a UnicodeDecodeError).
    path = tmp_path / "tray.json"
    path.write_bytes(content)
    assert TraySettings.load(path) == TraySettings()


def test_refresh_token_lives_in_the_keyring(memory_keyring: MemoryKeyring) -> None:
    store = RefreshTokenStore(api_url="https://api.example/")
    assert store.get("a@example.com") is None
    store.put("a@example.com", "refresh-1")
    assert store.get("a@example.com") == "refresh-1"
    assert memory_keyring.entries == {
        ("iotnotify:https://api.example", "a@example.com"): "refresh-1"
    }
    store.delete("a@example.com")
    store.delete("a@example.com")  # signing out twice is fine
    assert store.get("a@example.com") is None


def test_catch_up_is_summarised_in_one_alert() -> None:
    state = TrayState()
    assert state.on_connection(StateChange(ConnectionState.CONNECTED)) is None
    for i in range(3):
        assert state.add(Notification.create(title=f"missed {i}")) is None
    alert = state.on_connection(StateChange(ConnectionState.CAUGHT_UP))
    assert alert == Alert(title="3 new notifications", body="Latest: missed 2")
    assert state.unread == 3
    live = state.add(Notification.create(title="live"))
    assert live == Alert(title="live", body="")


def test_a_single_missed_notification_is_shown_as_itself() -> None:
    state = TrayState()
    state.on_connection(StateChange(ConnectionState.CONNECTED))
    state.add(Notification.create(title="only", body="one"))
    assert state.on_connection(StateChange(ConnectionState.CAUGHT_UP)) == Alert("only", "one")
    state.on_connection(StateChange(ConnectionState.CONNECTED))
    assert state.on_connection(StateChange(ConnectionState.CAUGHT_UP)) is None  # nothing missed


def test_sign_out_forgets_the_refresh_token_and_the_cursor(
    memory_keyring: MemoryKeyring, tmp_path: Path
) -> None:
    from iotnotify.tray.app import TrayApp

    settings = TraySettings(
        api_url="https://api.example",
        user_pool_client_id="abc",
        username="a@example.com",
        last_id="01J0000000000000000000000A",
    )
    path = tmp_path / "tray.json"
    store = RefreshTokenStore(api_url=settings.api_url)
    store.put("a@example.com", "refresh-1")

    class Quiet:
        def notify(self, title: str, body: str) -> None:
            raise AssertionError("nothing to show")

        def close(self) -> None:
            pass

    app = TrayApp(settings=settings, settings_path=path, notifier=Quiet(), token_store=store)
    assert app.has_refresh_token()
    app.state.add(Notification.create(title="private"))
    app.sign_out()
    assert store.get("a@example.com") is None
    assert not app.has_refresh_token()
    assert TraySettings.load(path).last_id == ""
    assert app.state.unread == 0


def test_a_missing_notification_service_is_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Issue 12 item 7: not a warning (with the same traceback) for every notification.
    from iotnotify.tray.notifier import DesktopNotifierBackend

    class NoDaemon(DesktopNotifierBackend):
        async def _send(self, title: str, body: str, on_click: object = None) -> None:
            raise ConnectionRefusedError("org.freedesktop.Notifications: no such name")

    backend = NoDaemon()
    caplog.set_level(logging.DEBUG, logger="iotnotify.tray")
    try:
        for index in range(3):
            backend.notify(f"n{index}", "")
        assert backend._thread is not None
        deadline = threading.Event()
        for _ in range(50):
            if len([r for r in caplog.records if r.name == "iotnotify.tray"]) >= 3:
                break
            deadline.wait(0.1)
    finally:
        backend.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "notification service" in warnings[0].getMessage()
    assert "pop-ups are off" in warnings[0].getMessage()


def test_the_tooltip_names_a_refused_topic() -> None:
    state = TrayState()
    state.on_connection(
        StateChange(ConnectionState.CONNECTED, client_id="u.x", refused=("app/s/chat/lobby",))
    )
    assert "not authorised: app/s/chat/lobby" in state.title()
    state.on_connection(StateChange(ConnectionState.CONNECTED, client_id="u.x"))
    assert "not authorised" not in state.title()


def test_the_isolated_keyring_store_keeps_keyring_out_of_the_tray_process() -> None:
    # Issue 11 §2: keyring and its backends are loaded in a short-lived child.
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from iotnotify.tray.keyring_store import KeyringUnavailable, RefreshTokenStore\n"
        "store = RefreshTokenStore(api_url='https://api.example', isolate=True)\n"
        "try:\n"
        "    store.get('a@example.com')\n"
        "    outcome = 'read'\n"
        "except KeyringUnavailable as exc:\n"
        "    outcome = str(exc)\n"
        "print(json.dumps([outcome, 'keyring' in sys.modules]))\n"
    )
    for backend, expected in (
        ("keyring.backends.null.Keyring", "read"),
        ("keyring.backends.fail.Keyring", "--no-keyring"),
    ):
        env = {**os.environ, "PYTHON_KEYRING_BACKEND": backend}
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        outcome, loaded = json.loads(done.stdout)
        assert expected in outcome
        assert loaded is False


def test_no_display_is_one_clear_error_not_an_xlib_traceback(tmp_path: Path) -> None:
    # pystray chooses its backend when imported: on X11 without a display,
    # python-xlib raised DisplayNameError out of `iotnotify tray` as a traceback.
    import os
    import subprocess
    import sys

    program = """
from iotnotify.errors import IotNotifyError
from iotnotify.tray.app import TrayApp
from iotnotify.tray.keyring_store import MemoryTokenStore
from iotnotify.tray.settings import TraySettings

settings = TraySettings(api_url="https://api.example", user_pool_client_id="abc",
                        username="a@example.com")
app = TrayApp(settings=settings, token_store=MemoryTokenStore())
try:
    app.run()
except IotNotifyError as exc:
    print("ERROR:", exc)
"""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYSTRAY_BACKEND"] = "xorg"  # the backend a plain X11 session uses
    done = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout.startswith("ERROR: "), done.stdout + done.stderr
    assert "DISPLAY" in done.stdout


def test_desktop_notifiers_own_failure_traceback_becomes_the_one_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # desktop-notifier catches a failed pop-up itself and logs "Notification failed"
    # with the traceback (desktop_notifier/backends/base.py, send), once per
    # notification: with no session D-Bus that was a traceback per update.
    from iotnotify.tray.notifier import DesktopNotifierBackend

    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    backend = DesktopNotifierBackend()
    caplog.set_level(logging.DEBUG)
    try:
        for index in range(3):
            backend.notify(f"n{index}", "")
        pause = threading.Event()
        for _ in range(100):
            if len([r for r in caplog.records if r.name == "iotnotify.tray"]) >= 3:
                break
            pause.wait(0.1)
    finally:
        backend.close()
    assert [r for r in caplog.records if r.exc_info] == []
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "notification service" in warnings[0].getMessage()


def test_the_desktop_notifier_backend_sends_text_without_controls_or_bidi_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The macOS/Windows backend: desktop-notifier gets the same plain text as D-Bus does.
    import sys
    import types

    from iotnotify.tray.notifier import DesktopNotifierBackend

    sent: list[tuple[str, str]] = []
    arrived = threading.Event()

    class FakeDesktopNotifier:
        def __init__(self, *, app_name: str) -> None:
            self.app_name = app_name

        async def send(self, *, title: str, message: str, on_clicked: object) -> None:
            sent.append((title, message))
            arrived.set()

    fake = types.ModuleType("desktop_notifier")
    fake.DesktopNotifier = FakeDesktopNotifier  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "desktop_notifier", fake)
    backend = DesktopNotifierBackend()
    try:
        backend.notify("turn\x1b[2J\x9b \u202egnp.exe", "a\x00b\x7f\n\tc \u2066d\u2069")
        assert arrived.wait(10)
    finally:
        backend.close()
    assert sent == [("turn[2J gnp.exe", "ab\n\tc d")]
