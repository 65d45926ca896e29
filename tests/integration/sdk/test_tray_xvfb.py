"""The real tray app (pystray, xorg backend) under Xvfb, against ``iotnotify local``.

The notifier and the keyring are injected (a recorder, an in-memory
backend): no notification daemon or Secret Service runs under Xvfb. A tiny
fake system-tray manager owns ``_NET_SYSTEM_TRAY_S0`` so pystray docks and
draws its icon as it would on a desktop.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iotnotify.contract import new_notification_id
from iotnotify.publisher import Publisher
from iotnotify.sending import publisher_for_local
from iotnotify.subscriber import ConnectionState
from iotnotify.tray.settings import TraySettings
from iotnotify.tray.state import TrayState
from tests.integration.sdk.conftest import RunningStack
from tests.unit.sdk.test_tray_logic import MemoryKeyring, memory_keyring  # noqa: F401

# make setup installs Xvfb; a machine without it fails here instead of skipping.
assert shutil.which("Xvfb"), "Xvfb is missing: run `make setup` (apt-get install xvfb)"


@pytest.fixture
def xvfb_display(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private X server; ``-displayfd`` tells us its display once it is ready."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as reader:
            number = reader.readline().strip().decode()
        assert number.isdigit(), "Xvfb did not report a display"
        display = f":{number}"
        monkeypatch.setenv("DISPLAY", display)
        monkeypatch.setenv("PYSTRAY_BACKEND", "xorg")
        yield display
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def tray_manager(xvfb_display: str) -> Iterator[None]:
    """Owns the system-tray selection, as a desktop panel would."""
    import Xlib.display
    import Xlib.X

    display = Xlib.display.Display(xvfb_display)
    window = display.screen().root.create_window(0, 0, 1, 1, 0, Xlib.X.CopyFromParent)
    selection = display.intern_atom("_NET_SYSTEM_TRAY_S0")
    window.set_selection_owner(selection, Xlib.X.CurrentTime)
    display.sync()
    assert display.get_selection_owner(selection) == window
    yield
    window.destroy()
    display.close()


def _thread_stacks() -> str:
    """Every thread's stack, to diagnose a hang instead of just reporting it."""
    import sys
    import traceback

    names = {t.ident: t.name for t in threading.enumerate()}
    return "\n".join(
        f"--- {names.get(ident, ident)}\n" + "".join(traceback.format_stack(frame))
        for ident, frame in sys._current_frames().items()
    )


def _release_icon(app: Any) -> None:
    """Let pystray's Icon close its X connection while Xvfb still runs (its __del__ does)."""
    app.icon = None
    app._ui = None
    gc.collect()


class RecordingNotifier:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.clicks: dict[str, Any] = {}  # title -> what clicking the pop-up does
        self.called = threading.Event()
        self.closed = False

    def notify(self, title: str, body: str, *, on_click: Any = None) -> None:
        self.calls.append((title, body))
        if on_click is not None:
            self.clicks[title] = on_click
        self.called.set()

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def publisher(local_stack: RunningStack) -> Iterator[tuple[Publisher, str]]:
    pub, resolve = publisher_for_local(local_stack.state_file)
    with pub:
        yield pub, resolve("alice")


def test_tray_shows_a_notification_and_updates_the_badge(
    local_stack: RunningStack,
    publisher: tuple[Publisher, str],
    tray_manager: None,
    memory_keyring: MemoryKeyring,  # noqa: F811
    tmp_path: Path,
) -> None:
    from iotnotify.tray.app import TrayApp

    state = local_stack.state
    alice = local_stack.user("alice")
    settings = TraySettings(
        api_url=state.apiUrl,
        user_pool_client_id=state.userPoolClientId,
        region=state.region,
        cognito_endpoint=state.awsEndpointUrl,
        username=alice["username"],
        last_id=new_notification_id(),  # where a previous run of the app left off
    )
    pub, alice_id = publisher
    # Two notifications arrive while the app is not running.
    for index in range(2):
        pub.notify(alice_id, title=f"missed {index}")
    settings_path = tmp_path / "tray.json"
    notifier = RecordingNotifier()
    tray_state = TrayState()
    caught_up = threading.Event()
    tray_state.subscribe(lambda: caught_up.set() if tray_state.connection == "caught up" else None)
    app = TrayApp(
        settings=settings,
        settings_path=settings_path,
        password=alice["password"],
        notifier=notifier,
        state=tray_state,
        subscriber_options={"device_id": "it-tray"},
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            app.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="tray-app")
    thread.start()
    try:
        assert app.ready.wait(30), errors
        assert caught_up.wait(30), tray_state.connection
        # The refresh token went to the keyring, never to the settings file.
        assert any(user == alice["username"] for _, user in memory_keyring.entries)
        # The missed ones are counted and summarised in one pop-up.
        assert notifier.called.wait(15)
        assert notifier.calls == [("2 new notifications", "Latest: missed 1")]
        assert tray_state.unread == 2
        assert app.wait_rendered(2)
        before = app.icon.icon
        assert before.unread == 2  # the X11 icon paints a Bell (no Pillow image)
        notifier.called.clear()
        # Issue 12 item 7: record which thread calls pystray's icon setter.
        setter_threads: list[threading.Thread] = []
        update_icon = app.icon._update_icon

        def recording_update_icon() -> None:
            setter_threads.append(threading.current_thread())
            update_icon()

        app.icon._update_icon = recording_update_icon
        # When a notification is delivered live
        sent = pub.notify(alice_id, title="Your turn", body="Game 42")
        # Then the OS notifier is called and the badge count changes
        assert notifier.called.wait(15)
        assert notifier.calls[-1] == ("Your turn", "Game 42")
        assert tray_state.unread == 3
        assert app.wait_rendered(3)
        assert app.icon.icon != before
        assert app.icon.icon.unread == 3
        # Every icon update ran on pystray's own thread, never the subscriber's.
        assert setter_threads
        assert {t.name for t in setter_threads} == {app.icon._thread.name}
        assert "3 unread" in app.icon.title
        # and the last id is remembered for the next start (no token in the file)
        saved: Any = TraySettings.load(settings_path)
        assert saved.last_id == sent.id
        assert "refresh" not in settings_path.read_text().lower()
        assert app.subscriber is not None
        assert app.subscriber.state is ConnectionState.CAUGHT_UP
        # The menu lists it first, and a click (the default item) marks all read
        labels = [str(item.text) for item in app.icon.menu.items]
        assert labels[1:4] == ["Recent notifications", "Mark all read", "Pause notifications"]
        recent = [str(item.text) for item in app.icon.menu.items[1].submenu.items]
        assert recent[0] == "\u2022 Your turn: Game 42"
        app.icon()
        assert app.wait_rendered(0)
        assert tray_state.unread == 0
        # Pause from the menu: counted, no pop-up
        next(i for i in app.icon.menu.items if i.text == "Pause notifications")(app.icon)
        assert tray_state.paused
        calls = len(notifier.calls)
        # Listen before sending: the notification may arrive at once.
        collector_done = threading.Event()
        tray_state.subscribe(lambda: collector_done.set() if tray_state.unread else None)
        pub.notify(alice_id, title="quiet please")
        assert collector_done.wait(15)
        assert len(notifier.calls) == calls
        # Quit from the menu ends the app
        next(i for i in app.icon.menu.items if i.text == "Quit")(app.icon)
        thread.join(30)
    finally:
        app.quit()
        thread.join(30)
        # The menu's Quit runs on its own thread; let it finish before Xvfb goes.
        assert app.stopped.wait(30)
    assert not thread.is_alive(), _thread_stacks()
    assert not errors, errors
    assert notifier.closed
    _release_icon(app)


def test_without_a_tray_host_one_clear_message_and_no_traceback_per_update(
    local_stack: RunningStack,
    publisher: tuple[Publisher, str],
    xvfb_display: str,
    memory_keyring: MemoryKeyring,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Issue 12 item 7. Given an X display with no system tray (no tray_manager)
    from iotnotify.tray.app import TrayApp

    state = local_stack.state
    alice = local_stack.user("alice")
    settings = TraySettings(
        api_url=state.apiUrl,
        user_pool_client_id=state.userPoolClientId,
        region=state.region,
        cognito_endpoint=state.awsEndpointUrl,
        username=alice["username"],
        last_id=new_notification_id(),
    )
    notifier = RecordingNotifier()
    tray_state = TrayState()
    # Live notifications pop up; caught-up ones only count: send once caught up.
    caught_up = threading.Event()
    tray_state.subscribe(lambda: caught_up.set() if tray_state.connection == "caught up" else None)
    app = TrayApp(
        settings=settings,
        settings_path=tmp_path / "tray.json",
        password=alice["password"],
        notifier=notifier,
        state=tray_state,
    )
    caplog.set_level(logging.DEBUG)
    thread = threading.Thread(target=app.run, name="tray-app")
    thread.start()
    try:
        assert app.ready.wait(30)
        assert caught_up.wait(30), tray_state.connection
        # When notifications arrive (each one redraws the badge)
        pub, alice_id = publisher
        for index in range(3):
            pub.notify(alice_id, title=f"n{index}")
        assert app.wait_rendered(3, timeout=30)
        assert notifier.calls  # pop-ups still work
    finally:
        app.quit()
        thread.join(30)
    assert not thread.is_alive(), _thread_stacks()
    _release_icon(app)
    # Then one clear warning, and no error or traceback per update
    warnings = [r for r in caplog.records if "no system tray" in r.getMessage()]
    assert len(warnings) == 1
    assert "_NET_SYSTEM_TRAY_S0" in warnings[0].getMessage()
    noisy = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert noisy == [], [r.getMessage() for r in noisy]


def test_your_turn_opens_the_game_on_click_and_from_the_menu_with_unread_per_game(
    local_stack: RunningStack,
    publisher: tuple[Publisher, str],
    tray_manager: None,
    memory_keyring: MemoryKeyring,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Issue 14 §3, on the real tray app under Xvfb."""
    from iotnotify.tray.app import TrayApp

    state = local_stack.state
    alice = local_stack.user("alice")
    settings = TraySettings(
        api_url=state.apiUrl,
        user_pool_client_id=state.userPoolClientId,
        region=state.region,
        cognito_endpoint=state.awsEndpointUrl,
        username=alice["username"],
        last_id=new_notification_id(),
    )
    notifier = RecordingNotifier()
    tray_state = TrayState()
    caught_up = threading.Event()
    tray_state.subscribe(lambda: caught_up.set() if tray_state.connection == "caught up" else None)
    opened: list[str] = []
    browser_opened = threading.Event()

    def open_url(url: str) -> None:
        opened.append(url)
        browser_opened.set()

    app = TrayApp(
        settings=settings,
        settings_path=tmp_path / "tray.json",
        password=alice["password"],
        notifier=notifier,
        state=tray_state,
        subscriber_options={"device_id": "it-tray-games"},
        open_url=open_url,
    )
    thread = threading.Thread(target=app.run, name="tray-app")
    thread.start()
    pub, alice_id = publisher
    games = {
        "race21-aaaa": "http://127.0.0.1:8780/g/race21-aaaa?seat=a",
        "race21-bbbb": "http://127.0.0.1:8780/g/race21-bbbb?seat=b",
    }
    try:
        assert app.ready.wait(30)
        assert caught_up.wait(30), tray_state.connection
        # Given "your turn" twice in game A and once in game B
        three = threading.Event()
        tray_state.subscribe(lambda: three.set() if tray_state.unread >= 3 else None)
        for game, n in (("race21-aaaa", 1), ("race21-aaaa", 2), ("race21-bbbb", 1)):
            pub.notify(
                alice_id,
                title=f"Your turn in {game} ({n})",
                type="game.turn",
                data={"url": games[game], "game": game, "gameName": game},
            )
        assert three.wait(15)
        # Then the badge counts 3 and the menu counts per game
        assert tray_state.unread_by_game() == {"race21-aaaa": 2, "race21-bbbb": 1}
        assert app.wait_rendered(3)
        assert "games race21-aaaa: 2, race21-bbbb: 1" in app.icon.title
        menu = next(i for i in app.icon.menu.items if i.text == "Games")
        labels = [str(item.text) for item in menu.submenu.items]
        assert labels == ["race21-aaaa (2 unread)", "race21-bbbb (1 unread)"]
        # When alice clicks the pop-up of A's turn, A opens and A's count is gone
        notifier.clicks["Your turn in race21-aaaa (2)"]()
        assert opened == [games["race21-aaaa"]]
        assert app.wait_rendered(1)
        assert tray_state.unread_by_game()["race21-aaaa"] == 0
        # And B's entry in the menu opens B
        browser_opened.clear()
        entry = next(i for i in menu.submenu.items if str(i.text).startswith("race21-bbbb"))
        entry(app.icon)
        assert browser_opened.wait(15)
        assert opened[-1] == games["race21-bbbb"]
        assert app.wait_rendered(0)
        assert tray_state.unread == 0
    finally:
        app.quit()
        thread.join(30)
        assert app.stopped.wait(30)
    assert not thread.is_alive(), _thread_stacks()
    _release_icon(app)


def _wait_for_line(lines: queue.Queue[str], text: str, log: list[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            return False
        log.append(line)
        if text in line:
            return True
    return False


def test_the_running_tray_keeps_no_pillow_resident_and_one_malloc_arena(
    local_stack: RunningStack, tray_manager: None, xvfb_display: str, tmp_path: Path
) -> None:
    """Issue 11 §2: the always-on tray (X11) paints its icon without Pillow,
    whose C core and image libraries cost about 4 MiB of RSS, maps neither
    libbz2 nor liblzma (0.3 MiB), and runs with one glibc malloc arena
    (iotnotify.malloc_arenas)."""
    # Given `iotnotify tray` as a user runs it, connected and caught up
    env = {
        **{k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"},
        "DISPLAY": xvfb_display,
        "PYSTRAY_BACKEND": "xorg",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        str(Path(sys.executable).with_name("iotnotify")),
        "tray",
        "--state-file",
        str(local_stack.state_file),
        "--user",
        "alice",
        "--settings",
        str(tmp_path / "tray.json"),
    ]
    proc = subprocess.Popen(
        command,
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    stderr = proc.stderr
    threading.Thread(target=lambda: [lines.put(line) for line in stderr], daemon=True).start()
    log: list[str] = []
    try:
        assert _wait_for_line(lines, "caught-up", log, 60), "".join(log)
        # Then no file of Pillow is mapped into it (its icon is painted and shown)
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        pillow = sorted(
            {line.split()[-1] for line in maps.splitlines() if "/PIL/" in line or "pillow" in line}
        )
        assert pillow == []
        # nor libbz2 and liblzma (shutil's archive formats, never used here)
        assert not [line for line in maps.splitlines() if "libbz2" in line or "liblzma" in line]
        # And the process glibc started (the same pid) had the arena limit
        started = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        assert b"MALLOC_ARENA_MAX=1" in started
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_x11_icon_paints_the_bell_and_its_badge(tray_manager: None, xvfb_display: str) -> None:
    import Xlib.display
    import Xlib.X

    from iotnotify.tray.icon import Bell
    from iotnotify.tray.xorg_icon import XorgIcon

    # Given the X11 icon docked with three unread
    icon = XorgIcon("iotnotify-test", Bell(unread=3), "test")
    shown = threading.Event()

    def setup(running: Any) -> None:
        running.visible = True
        shown.set()

    thread = threading.Thread(target=icon.run, kwargs={"setup": setup}, name="x11-icon")
    thread.start()
    display = Xlib.display.Display(xvfb_display)
    try:
        assert shown.wait(15)
        # When the tray host sizes and maps its window, as a panel does
        window = display.create_resource_object("window", icon._window.id)
        window.configure(x=0, y=0, width=32, height=32)
        window.map()
        display.sync()
        expected = Bell(unread=3).render(32)

        def screen_pixel(x: int, y: int) -> tuple[int, int, int]:
            data = window.get_image(0, 0, 32, 32, Xlib.X.ZPixmap, 0xFFFFFFFF).data
            at = 4 * (y * 32 + x)
            b, g, r = data[at], data[at + 1], data[at + 2]  # Xvfb: LSBFirst
            return r, g, b

        # Then the window shows the bell: the red badge top right, the blue body
        badge, body = (20, 2), (6, 20)
        assert expected.getpixel(badge)[:3] == (220, 38, 38)
        assert expected.getpixel(body)[:3] == (46, 125, 240)
        deadline = time.monotonic() + 10
        while screen_pixel(*badge) != (220, 38, 38) and time.monotonic() < deadline:
            time.sleep(0.05)  # the expose event reaches pystray's loop thread
        assert screen_pixel(*badge) == (220, 38, 38)
        assert screen_pixel(*body) == (46, 125, 240)
        # And a new count repaints it (on pystray's thread)
        icon.icon = Bell(unread=0)
        deadline = time.monotonic() + 10
        while screen_pixel(*badge) == (220, 38, 38) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert screen_pixel(*badge) == (0, 0, 0)
    finally:
        icon.stop()
        # pystray's loop ends on its window's DestroyNotify; when another
        # thread's X call read that event first it waits in select() until
        # the next event: a round trip wakes it (as TrayApp._nudge_x11_loop).
        for _ in range(60):
            thread.join(0.25)
            if not thread.is_alive():
                break
            with contextlib.suppress(Exception):
                icon._display.sync()
        assert not thread.is_alive()
        display.close()
        del icon
        gc.collect()


def _run_on_display(code: str, display: str) -> Any:
    """Run ``code`` in a fresh interpreter on ``display`` with pystray's X11
    backend; what it printed, as JSON."""
    env = {**os.environ, "DISPLAY": display, "PYSTRAY_BACKEND": "xorg"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_tray_has_python_xlib_load_no_extension_module(
    tray_manager: None, xvfb_display: str
) -> None:
    """Issue 11 §2: python-xlib's Display() would import and initialise a module
    for each of the server's X extensions (about 0.8 MiB); the tray uses none."""
    code = (
        "import json, sys\n"
        "from iotnotify.tray.app import load_pystray\n"
        "pystray = load_pystray()\n"
        "from iotnotify.tray.icon import Bell\n"
        "from iotnotify.tray.toolkit import caller_for, tray_host_present\n"
        "from iotnotify.tray.xorg_icon import XorgIcon\n"
        "icon = XorgIcon('iotnotify-test', Bell(), 'test')\n"
        "caller = caller_for(icon)\n"
        # Xlib.ext.ge is imported by python-xlib's protocol module itself.
        "answer = {'backend': type(caller).__name__, 'docks': tray_host_present(icon),\n"
        "          'initialised': icon._display.extensions,\n"
        "          'ext': sorted(m for m in sys.modules if m.startswith('Xlib.ext.'))}\n"
        "caller.close()\n"
        "print(json.dumps(answer))\n"
    )
    assert _run_on_display(code, xvfb_display) == {
        "backend": "_XorgCaller",
        "docks": True,
        "initialised": [],
        "ext": ["Xlib.ext.ge"],
    }


def test_the_wake_up_connection_holds_no_keymap_and_no_screen_list(
    tray_manager: None, xvfb_display: str
) -> None:
    """Issue 11 §2: the tray's second X connection only sends events, so it is
    python-xlib's protocol-level display: no keyboard mapping, no keysym
    tables (about 120 KB resident with ``Xlib.display.Display``), and it
    keeps no parsed connection set-up (every screen, depth and visual: about
    200 KB on Xvfb). Its wake-up still reaches pystray's window: the event
    arrives on pystray's connection."""
    code = (
        "import json\n"
        "from iotnotify.tray.app import load_pystray\n"
        "load_pystray()\n"
        "import Xlib.X\n"
        "from iotnotify.tray.icon import Bell\n"
        "from iotnotify.tray.toolkit import caller_for\n"
        "from iotnotify.tray.xorg_icon import XorgIcon\n"
        "icon = XorgIcon('iotnotify-test', Bell(), 'test')\n"
        "caller = caller_for(icon)\n"
        "ran = []\n"
        "caller.post(lambda: ran.append(True))\n"
        "display = icon._display\n"
        "for _ in range(50):\n"
        "    event = display.next_event()\n"
        "    handler = icon._message_handlers.get(event.type)\n"
        "    if event.type == Xlib.X.ClientMessage and handler is not None:\n"
        "        handler(event)\n"
        "    if ran:\n"
        "        break\n"
        "waker = caller._waker\n"
        "answer = {'keymap': hasattr(waker, '_keymap_syms') or hasattr(waker, 'display'),\n"
        "          'setup': getattr(waker, 'info', None) is not None, 'ran': ran}\n"
        "caller.close()\n"
        "print(json.dumps(answer))\n"
    )
    assert _run_on_display(code, xvfb_display) == {"keymap": False, "setup": False, "ran": [True]}


def test_the_display_going_away_stops_the_tray_with_one_error_line_and_status_1(
    local_stack: RunningStack, tmp_path: Path
) -> None:
    # Given `iotnotify tray` running and caught up on an X display of its own
    read_end, write_end = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        number = reader.readline().strip().decode()
    env = {
        **os.environ,
        "DISPLAY": f":{number}",
        "PYSTRAY_BACKEND": "xorg",
        "XDG_CONFIG_HOME": str(tmp_path),  # tray.json here, not in the real config folder
    }
    tray = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("iotnotify")),
            *("tray", "--user", "alice", "--no-keyring"),
            *("--state-file", str(local_stack.state_file)),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    log: list[str] = []
    assert tray.stderr is not None
    reader_thread = threading.Thread(
        target=lambda: [lines.put(line) for line in tray.stderr or ()], daemon=True
    )
    reader_thread.start()
    try:
        assert number.isdigit(), "Xvfb did not report a display"
        assert _wait_for_line(lines, "caught-up", log, timeout=60), log
        # When the X server goes away (the session ends, Xvfb or a VNC server stops)
        xvfb.terminate()
        xvfb.wait(10)
        status = tray.wait(30)
    finally:
        for process in (tray, xvfb):
            if process.poll() is None:
                process.kill()
                process.wait(10)
    reader_thread.join(10)
    while not lines.empty():
        log.append(lines.get())
    text = "".join(log)
    # Then it stops with status 1 and says why in one line, with no traceback
    assert status == 1, text
    assert "Traceback" not in text
    assert "Exception ignored" not in text
    said = [line for line in log if f"display :{number}" in line]
    assert len(said) == 1, text
    assert "closed" in said[0]


def test_a_display_that_drops_the_icons_connection_at_start_is_one_clear_error(
    xvfb_display: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pystray connects twice: on import (its probe, which load_pystray's
    # error covers) and in Icon(). An X server that accepts the first and
    # then goes away or refuses (a session ending while the tray starts)
    # raised ConnectionClosedError out of `iotnotify tray` as a traceback.
    import Xlib.error

    from iotnotify.errors import IotNotifyError
    from iotnotify.tray.app import TrayApp, TrayUnavailable
    from iotnotify.tray.keyring_store import MemoryTokenStore
    from iotnotify.tray.xorg_icon import XorgIcon

    def closed(self: object, *args: object, **kwargs: object) -> None:
        raise Xlib.error.ConnectionClosedError("server")

    monkeypatch.setattr(XorgIcon, "__init__", closed)
    settings = TraySettings(
        api_url="https://api.example", user_pool_client_id="abc", username="a@example.com"
    )
    app = TrayApp(settings=settings, token_store=MemoryTokenStore())
    with pytest.raises(TrayUnavailable) as raised:
        app.run()
    assert isinstance(raised.value, IotNotifyError)  # the CLI's one `iotnotify: error:` line
    assert xvfb_display in str(raised.value)
    assert "ConnectionClosedError" in str(raised.value)
