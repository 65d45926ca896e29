"""The tray's Linux pop-ups over a real session D-Bus (a private dbus-daemon).

A stand-in notification daemon, written here with jeepney, owns
``org.freedesktop.Notifications``, answers ``Notify`` as the Desktop
Notifications Specification says and sends ``ActionInvoked`` /
``NotificationClosed`` when a test asks it to, as a user's click would.
It answers ``GetCapabilities`` with the list it is given and counts the
calls.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from jeepney import DBusAddress, MatchRule, message_bus, new_method_return, new_signal
from jeepney.io.threading import DBusRouter, open_dbus_connection
from jeepney.low_level import HeaderFields

from iotnotify.tray.notifier import DBusNotifier, default_notifier

# make setup installs dbus-daemon; a machine without it fails here instead of skipping.
assert shutil.which("dbus-daemon"), "dbus-daemon is missing: run `make setup`"

NAME = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"


@pytest.fixture
def session_bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    bus = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert bus.stdout is not None
        address = bus.stdout.readline().strip()
        assert address, "dbus-daemon printed no address"
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        yield address
    finally:
        bus.terminate()
        bus.wait(10)


class StandInDaemon:
    """Owns the notifications name; records Notify calls as (id, summary, body, actions)
    and answers GetCapabilities with ``capabilities``, counting the calls."""

    def __init__(self, capabilities: tuple[str, ...] = ("body", "actions")) -> None:
        self.capabilities = list(capabilities)
        self.capability_queries = 0
        self.router = DBusRouter(open_dbus_connection(bus="SESSION"))
        self.calls: queue.Queue[tuple[int, str, str, list[str]]] = queue.Queue()
        self._ids = itertools.count(1)
        self.router.filter(MatchRule(type="method_call", path=PATH), queue=self)  # type: ignore[arg-type]
        reply = self.router.send_and_get_reply(message_bus.RequestName(NAME), timeout=5)
        assert reply.body == (1,)  # DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER

    def put_nowait(self, message: Any) -> None:  # the router's receiver thread
        member = message.header.fields.get(HeaderFields.member)
        if member == "Notify":
            notification_id = next(self._ids)
            _app, _replaces, _icon, summary, body, actions, _hints, _timeout = message.body
            self.router.send(new_method_return(message, "u", (notification_id,)))
            self.calls.put((notification_id, summary, body, list(actions)))
        elif member == "GetCapabilities":
            # Counted before the reply: the caller's next call comes after it.
            self.capability_queries += 1
            self.router.send(new_method_return(message, "as", (self.capabilities,)))

    def signal(self, member: str, signature: str, body: tuple[Any, ...]) -> None:
        self.router.send(new_signal(DBusAddress(PATH, interface=NAME), member, signature, body))

    def close(self) -> None:
        self.router.close()
        self.router.conn.close()


@pytest.fixture
def daemon(session_bus: str) -> Iterator[StandInDaemon]:
    stand_in = StandInDaemon()
    yield stand_in
    stand_in.close()


@contextlib.contextmanager
def _notifier_and_daemon(
    capabilities: tuple[str, ...],
) -> Iterator[tuple[DBusNotifier, StandInDaemon]]:
    """A DBusNotifier and a stand-in daemon listing ``capabilities``, both
    closed afterwards (the notifier first, so its last calls are answered)."""
    stand_in = StandInDaemon(capabilities)
    notifier = DBusNotifier()
    try:
        yield notifier, stand_in
    finally:
        notifier.close()
        stand_in.close()


def test_a_pop_up_reaches_the_daemon_and_a_click_runs_its_action(daemon: StandInDaemon) -> None:
    notifier = default_notifier()
    assert isinstance(notifier, DBusNotifier)
    clicked = threading.Event()
    try:
        # When the tray pops up a "your turn" with a game link
        notifier.notify("Your turn", "Race to 21", on_click=clicked.set)
        first, summary, body, actions = daemon.calls.get(timeout=10)
        # Then the daemon shows it with a default action (a click on the pop-up)
        assert (summary, body, actions) == ("Your turn", "Race to 21", ["default", "Open"])
        # and the user's click runs the action, once
        daemon.signal("ActionInvoked", "us", (first, "default"))
        assert clicked.wait(10)
        # A plain notification offers no action.
        notifier.notify("Hello", "")
        assert daemon.calls.get(timeout=10)[1:] == ("Hello", "", [])
        # A pop-up closed without a click forgets its action.
        closed_click = threading.Event()
        notifier.notify("Later", "", on_click=closed_click.set)
        later = daemon.calls.get(timeout=10)[0]
        daemon.signal("NotificationClosed", "uu", (later, 2))  # 2: dismissed by the user
        daemon.signal("ActionInvoked", "us", (later, "default"))
        # Messages arrive in order: once a later pop-up's call is answered
        # (close() waits for the queued calls), both signals were handled.
        notifier.notify("Sync", "")
        assert daemon.calls.get(timeout=10)[1] == "Sync"
        notifier.close()
        assert not closed_click.wait(1)  # a click runs on a thread of its own
    finally:
        notifier.close()


def test_without_a_daemon_one_warning_then_pop_ups_once_it_runs(
    session_bus: str, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = DBusNotifier()
    try:
        with caplog.at_level(logging.DEBUG, logger="iotnotify.tray"):
            notifier.notify("one", "")
            notifier.notify("two", "")
            notifier.close()  # waits for the queued pop-ups to be tried
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "org.freedesktop.Notifications" in warnings[0].getMessage()
        # Once a daemon runs, the next pop-up connects again and is shown.
        stand_in = StandInDaemon()
        try:
            notifier.notify("three", "")
            assert stand_in.calls.get(timeout=10)[1] == "three"
        finally:
            stand_in.close()
    finally:
        notifier.close()


def test_a_pop_up_keeps_asyncio_and_desktop_notifier_out_of_the_tray(
    daemon: StandInDaemon,
) -> None:
    """Issue 11 §2: desktop-notifier with asyncio and dbus-fast cost the tray
    6 MiB from its first pop-up on; the D-Bus path loads none of them."""
    code = (
        "import json, sys, time\n"
        "from iotnotify.tray.notifier import default_notifier\n"
        "notifier = default_notifier()\n"
        "notifier.notify('Your turn', 'x', on_click=lambda: None)\n"
        "notifier.close()\n"
        "print(json.dumps(sorted(m for m in ('asyncio', 'desktop_notifier', 'dbus_fast')\n"
        "                        if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert done.returncode == 0, done.stderr
    assert daemon.calls.get(timeout=10)[1] == "Your turn"
    assert json.loads(done.stdout) == []


def test_a_pop_up_adds_one_thread_and_no_threaded_router_to_the_tray(
    daemon: StandInDaemon,
) -> None:
    """Issue 11 §2: the always-on tray keeps what its first pop-up loads. One
    worker thread owns the bus connection (jeepney's blocking I/O): no
    receiver thread of jeepney's threaded router, no ``concurrent.futures``."""
    code = (
        "import json, sys, threading\n"
        "from iotnotify.tray.notifier import default_notifier\n"
        "before = {t.name for t in threading.enumerate()}\n"
        "notifier = default_notifier()\n"
        "notifier.notify('Your turn', 'x', on_click=lambda: None)\n"
        "sys.stdin.readline()  # the daemon has shown it\n"
        "threads = sorted(t.name for t in threading.enumerate() if t.name not in before)\n"
        "modules = sorted(m for m in ('jeepney.io.threading', 'concurrent.futures')\n"
        "                 if m in sys.modules)\n"
        "notifier.close()\n"
        "print(json.dumps({'threads': threads, 'modules': modules}))\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    try:
        # When the tray's first pop-up has reached the daemon
        assert daemon.calls.get(timeout=10)[1] == "Your turn"
        out, err = child.communicate("shown\n", timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    # Then one thread was added, and no module of the threaded router is loaded
    assert json.loads(out) == {"threads": ["iotnotify-notifier"], "modules": []}


def test_a_click_between_pop_ups_is_read_by_the_idle_worker(daemon: StandInDaemon) -> None:
    """The worker waits in poll() on the bus between pop-ups: a click that
    comes long after the last call (no call in flight to carry it) runs."""
    notifier = DBusNotifier()
    clicked = threading.Event()
    try:
        notifier.notify("Your turn", "Race to 21", on_click=clicked.set)
        shown = daemon.calls.get(timeout=10)[0]
        # Given the worker idle (its Notify answered, nothing queued)
        assert daemon.calls.empty()
        # When the user clicks the pop-up, then the action runs
        daemon.signal("ActionInvoked", "us", (shown, "default"))
        assert clicked.wait(10)
        # And the worker still makes the next pop-up
        notifier.notify("Next", "")
        assert daemon.calls.get(timeout=10)[1] == "Next"
    finally:
        notifier.close()


# A sender (a game server, a chat) controls title and body.
HOSTILE_BODY = (
    'Tom & Jerry <a href="https://evil.example">bank.example</a><img src="file:///etc/passwd"/>'
)
ESCAPED_BODY = (
    'Tom &amp; Jerry &lt;a href="https://evil.example"&gt;bank.example&lt;/a&gt;'
    '&lt;img src="file:///etc/passwd"/&gt;'
)


def test_a_daemon_rendering_body_markup_gets_the_body_escaped_and_is_asked_once(
    session_bus: str,
) -> None:
    renders = ("body", "body-markup", "body-hyperlinks", "body-images")
    with _notifier_and_daemon(renders) as (notifier, stand_in):
        for n in range(5):
            notifier.notify(f"<b>Eve</b> & {n}", HOSTILE_BODY)
        for n in range(5):
            # The summary is plain text (never markup): sent as written.
            assert stand_in.calls.get(timeout=10)[1:3] == (f"<b>Eve</b> & {n}", ESCAPED_BODY)
        assert stand_in.capability_queries == 1


def test_a_daemon_without_body_markup_gets_the_text_unchanged(session_bus: str) -> None:
    with _notifier_and_daemon(("body", "actions")) as (notifier, stand_in):
        notifier.notify("a < b & c", HOSTILE_BODY)
        notifier.notify("again", "5 > 3 &amp; more")
        assert stand_in.calls.get(timeout=10)[1:3] == ("a < b & c", HOSTILE_BODY)
        assert stand_in.calls.get(timeout=10)[1:3] == ("again", "5 > 3 &amp; more")
        assert stand_in.capability_queries == 1


def test_control_characters_are_removed_but_tabs_and_newlines_kept(session_bus: str) -> None:
    with _notifier_and_daemon(("body", "body-markup")) as (notifier, stand_in):
        notifier.notify("Your\x00 turn\x1b[2J\r\x7f", "line 1\r\n\tline\x07 2\x1f\x85\x9b <i>")
        assert stand_in.calls.get(timeout=10)[1:3] == (
            "Your turn[2J",
            "line 1\n\tline 2 &lt;i&gt;",
        )
        # And bidi overrides, embeddings and isolates go; the text's own direction stays
        notifier.notify("pay to \u202egnp.exe", "\u2067\u05e9\u05dc\u05d5\u05dd\u200f open")
        assert stand_in.calls.get(timeout=10)[1:3] == (
            "pay to gnp.exe",
            "\u05e9\u05dc\u05d5\u05dd open",
        )


def test_capabilities_are_asked_again_after_a_reconnect(session_bus: str) -> None:
    plain = StandInDaemon(("body",))
    notifier = DBusNotifier()
    try:
        notifier.notify("one", "<b>x</b>")
        assert plain.calls.get(timeout=10)[1:3] == ("one", "<b>x</b>")
        plain.close()
        notifier.notify("lost", "")  # no daemon: fails, the connection is dropped
        notifier.close()  # waits for that attempt
        # Another daemon, one that renders markup, takes the name.
        marking = StandInDaemon(("body", "body-markup"))
        try:
            notifier.notify("two", "<b>x</b>")
            assert marking.calls.get(timeout=10)[1:3] == ("two", "&lt;b&gt;x&lt;/b&gt;")
            assert marking.capability_queries == 1
        finally:
            marking.close()
    finally:
        notifier.close()


def test_a_daemon_replaced_on_the_same_connection_is_asked_again(
    session_bus: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon can change while the tray's bus connection stays up (one
    daemon exits, another takes the name): the escaping follows the daemon
    that receives the text, and no pop-up is lost to the change."""
    plain = StandInDaemon(("body",))
    notifier = DBusNotifier()
    try:
        notifier.notify("one", "<b>x</b>")
        assert plain.calls.get(timeout=10)[1:3] == ("one", "<b>x</b>")
        plain.close()
        marking = StandInDaemon(("body", "body-markup"))
        try:
            with caplog.at_level(logging.WARNING, logger="iotnotify.tray"):
                notifier.notify("two", "<b>x</b>")
                assert marking.calls.get(timeout=10)[1:3] == ("two", "&lt;b&gt;x&lt;/b&gt;")
            assert marking.capability_queries == 1
            assert not caplog.records
        finally:
            marking.close()
    finally:
        notifier.close()
