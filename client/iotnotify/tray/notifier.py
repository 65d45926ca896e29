"""OS notifications: a small seam over the platform's notification service.

:class:`Notifier` is what the tray calls; tests inject a recorder.
:func:`default_notifier` picks the implementation:

* Linux: :class:`DBusNotifier`, the freedesktop Notifications interface on
  the session D-Bus through jeepney (keyring's own D-Bus library) on one
  thread. The first pop-up then costs the always-on tray about 0.4 MiB
  (jeepney's modules, the thread), where desktop-notifier with asyncio and
  dbus-fast cost 6 MiB (issue 11 §2);
* elsewhere (macOS, Windows): :class:`DesktopNotifierBackend`, which runs
  desktop-notifier's asyncio API on a private event-loop thread.

Neither raises: a missing notification daemon must not take the tray down
with it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import queue
import select
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from iotnotify.display_text import plain_text

if TYPE_CHECKING:  # pragma: no cover
    import asyncio

__all__ = ["DBusNotifier", "DesktopNotifierBackend", "Notifier", "default_notifier"]

log = logging.getLogger("iotnotify.tray")


@runtime_checkable
class Notifier(Protocol):
    """Shows a pop-up; ``on_click`` (when given) runs if the user clicks it."""

    def notify(
        self, title: str, body: str, *, on_click: Callable[[], None] | None = None
    ) -> None: ...

    def close(self) -> None: ...


class DesktopNotifierBackend:
    """Shows notifications through desktop-notifier (DBus, macOS, Windows)."""

    def __init__(self, *, app_name: str = "iotnotify") -> None:
        self._app_name = app_name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._notifier: Any = None
        self._lock = threading.Lock()
        self._no_service = _NoServiceWarning()
        self._failure_filter = _FailedPopups(self)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        # asyncio and desktop-notifier load with the first pop-up, not at
        # start: an idle tray that has shown nothing does not carry them.
        import asyncio

        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=loop.run_forever, name="iotnotify-notifier", daemon=True
                )
                self._thread.start()
                self._loop = loop
            return self._loop

    async def _send(self, title: str, body: str, on_click: Callable[[], None] | None) -> None:
        if self._notifier is None:
            from desktop_notifier import DesktopNotifier

            # desktop-notifier catches a failed pop-up itself and logs
            # "Notification failed" with the traceback on its backend logger
            # (desktop_notifier/backends/base.py, BaseNotifier.send), once per
            # pop-up: turn that into our single warning.
            logging.getLogger(_DESKTOP_NOTIFIER_LOGGER).addFilter(self._failure_filter)
            self._notifier = DesktopNotifier(app_name=self._app_name)
        # desktop-notifier calls on_clicked when the pop-up itself is clicked
        # (DBus ActionInvoked "default", macOS/Windows activation).
        await self._notifier.send(title=title, message=body, on_clicked=on_click)

    def notify(self, title: str, body: str, *, on_click: Callable[[], None] | None = None) -> None:
        import asyncio

        loop = self._ensure_loop()
        future = asyncio.run_coroutine_threadsafe(
            self._send(plain_text(title), plain_text(body), on_click), loop
        )

        def report(done: Any) -> None:
            error = done.exception()
            if error is not None:
                self._failed(error)

        future.add_done_callback(report)

    def _failed(self, error: BaseException) -> None:
        self._no_service.report(error)

    def close(self) -> None:
        logging.getLogger(_DESKTOP_NOTIFIER_LOGGER).removeFilter(self._failure_filter)
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()


_DESKTOP_NOTIFIER_LOGGER: Final = "desktop_notifier.backends.base"


class _FailedPopups(logging.Filter):
    """Drops desktop-notifier's per-pop-up "Notification failed" traceback and
    reports the failure through :meth:`DesktopNotifierBackend._failed`."""

    def __init__(self, backend: DesktopNotifierBackend) -> None:
        super().__init__()
        self._backend = backend

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() != "Notification failed" or not record.exc_info:
            return True
        error = record.exc_info[1]
        if error is not None:
            self._backend._failed(error)
        return False


class _NoServiceWarning:
    """Without a notification service every pop-up fails the same way: say so
    once, in words a user can act on, not once per message (both backends)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._warned = False

    def report(self, error: BaseException) -> None:
        with self._lock:
            first, self._warned = not self._warned, True
        if not first:
            log.debug("desktop notification failed again: %r", error)
            return
        log.warning(
            "no desktop notification service answered (%s: %s); pop-ups are off, "
            "the tray icon and its list still work. On Linux a notification "
            "daemon must own org.freedesktop.Notifications on the session D-Bus "
            "(every desktop has one; a bare X session needs e.g. dunst).",
            type(error).__name__,
            error,
        )


_BUS_NAME: Final = "org.freedesktop.Notifications"
_PATH: Final = "/org/freedesktop/Notifications"
_REPLY_TIMEOUT_S: Final = 10.0
_EARLY_KEPT: Final = 16
# What the bus answers a call to a unique name that has left it.
_OWNER_GONE: Final = frozenset(
    {"org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner"}
)


def _escape_markup(text: str) -> str:
    """``text`` with ``&``, ``<`` and ``>`` as the XML entities ``&amp;``,
    ``&lt;``, ``&gt;``, so a server that renders body markup shows it as
    written. Quotes stay: they only matter inside an attribute value, and
    escaped text has no tags to carry one. Three replaces rather than
    :func:`html.escape`: the always-on tray loads no module for this."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class DBusNotifier:
    """Pop-ups through ``org.freedesktop.Notifications`` on the session D-Bus.

    Desktop Notifications Specification 1.2: ``Notify(app_name, replaces_id,
    app_icon, summary, body, actions, hints, expire_timeout) -> id``; a click
    on the pop-up itself is the signal ``ActionInvoked(id, "default")`` and
    ``NotificationClosed(id, reason)`` ends it. :meth:`notify` only queues:
    one worker thread, started with the first pop-up, owns the bus
    connection (jeepney's blocking I/O, ``jeepney.io.blocking``): it makes the
    calls (a D-Bus round trip, or a daemon that is slow to start, never
    holds up the subscriber) and, between pop-ups, waits in ``poll()`` on
    the bus socket and a wake-up pipe, so the daemon's signals are read as
    they come and the thread costs no wake-ups while idle. A click starts
    ``on_click`` on a thread of its own. The connection is opened again for
    the next pop-up when the bus or the daemon was missing.

    One thread rather than jeepney's threaded router (``jeepney.io.threading``):
    the router adds a receiver thread per connection, a second one for the
    ``Hello`` call of ``open_dbus_connection``, and ``concurrent.futures``
    for its replies; about 140 KB of modules and a thread that the
    always-on tray kept from its first pop-up on (issue 11 §2).

    Title and body come from other people (a game server, a chat), so both
    are sent as plain text. The summary never holds markup; the body may
    (specification §4 "Markup": ``<b> <i> <u> <a href> <img src>``, XML
    based) when the server lists ``body-markup`` in ``GetCapabilities``
    (§9.1.1: "If marked up text is sent to a server that does not give this
    cap, the markup will show through as regular text"). So the body is
    XML-escaped (:func:`_escape_markup`) for such a server and sent as is to
    any other, which would otherwise show ``&amp;``. The capabilities are
    asked once per bus connection (before its first pop-up) and asked again
    after a reconnect or when another daemon has taken the name: ``Notify``
    goes to the unique bus name of the daemon that answered. Control
    characters (but tab and newline) and bidi formatting are removed from
    both (:func:`iotnotify.display_text.plain_text` says why).
    https://specifications.freedesktop.org/notification-spec/notification-spec-1.2.html
    """

    def __init__(self, *, app_name: str = "iotnotify") -> None:
        self._app_name = app_name
        self._lock = threading.Lock()
        # The bus connection: only the worker thread uses it while it runs.
        self._conn: Any = None
        # (unique bus name, GetCapabilities) of the daemon on this
        # connection; None: not asked yet.
        self._owner: tuple[str, frozenset[str]] | None = None
        self._clicks: dict[int, Callable[[], None]] = {}
        # Clicks and closes of ids this thread has not registered (yet), oldest first.
        self._early: dict[int, str] = {}
        self._no_service = _NoServiceWarning()
        self._jobs: queue.SimpleQueue[tuple[str, str, Callable[[], None] | None] | None] = (
            queue.SimpleQueue()
        )
        self._worker: threading.Thread | None = None
        # Wakes the worker from poll() when a job is queued: (read end, write end).
        self._wake: tuple[int, int] | None = None
        self._retired: threading.Thread | None = None  # the worker close() ended last

    def notify(self, title: str, body: str, *, on_click: Callable[[], None] | None = None) -> None:
        with self._lock:
            if self._worker is None:
                self._wake = _nonblocking_pipe()
                # A worker that close() gave up waiting for may still run:
                # the new one starts after it, so one thread uses the bus.
                self._worker = threading.Thread(
                    target=self._work,
                    args=(self._wake[0], self._retired),
                    name="iotnotify-notifier",
                    daemon=True,
                )
                self._worker.start()
            self._queue((title, body, on_click))

    def _queue(self, job: tuple[str, str, Callable[[], None] | None] | None) -> None:
        # Under self._lock, with a worker running.
        assert self._wake is not None
        self._jobs.put(job)
        # A full pipe holds wake-ups enough: the worker will look.
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake[1], b"\0")

    def _work(self, wake: int, previous: threading.Thread | None) -> None:
        if previous is not None:
            previous.join()
        while True:
            if self._conn is None:
                job = self._jobs.get()  # no connection, nothing else to listen to
                _drain(wake)
            else:
                job = self._next_job(wake)
                if job is _NO_JOB:
                    continue
            if job is None:
                return
            self._send(*job)

    def _next_job(self, wake: int) -> Any:
        """The next queued job; while there is none, handle what the bus
        sends and wait, blocked, for the bus or a job."""
        with contextlib.suppress(queue.Empty):
            return self._jobs.get_nowait()
        conn = self._conn
        try:
            # Messages may already sit in jeepney's parser, where poll() cannot see them.
            while True:
                try:
                    conn.recv_messages(timeout=0)
                except TimeoutError:
                    break
            poller = select.poll()
            poller.register(conn.sock, select.POLLIN)
            poller.register(wake, select.POLLIN)
            poller.poll()
        except Exception:  # the bus went away (ConnectionResetError on read)
            log.debug("the session bus connection was lost", exc_info=True)
            self._drop_connection()
        # Empty the pipe before taking a job: a job queued after this has
        # a wake-up byte of its own.
        _drain(wake)
        try:
            return self._jobs.get_nowait()
        except queue.Empty:
            return _NO_JOB

    def _connect(self) -> Any:
        from jeepney import MatchRule, message_bus
        from jeepney.io.blocking import open_dbus_connection

        if self._conn is not None:
            return self._conn
        conn = open_dbus_connection(bus="SESSION")
        try:
            # The bus delivers the daemon's signals only (sender); locally
            # every signal of the interface reaches _on_signal.
            bus_rule = MatchRule(type="signal", sender=_BUS_NAME, interface=_BUS_NAME, path=_PATH)
            conn.send_and_get_reply(message_bus.AddMatch(bus_rule), timeout=_REPLY_TIMEOUT_S)
            local_rule = MatchRule(type="signal", interface=_BUS_NAME, path=_PATH)
            conn.filter(local_rule, queue=_Dispatch(self._on_signal))
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _daemon(self, conn: Any) -> tuple[str, frozenset[str]]:
        """The unique bus name of the daemon and its GetCapabilities, asked
        once per connection and daemon."""
        from jeepney import DBusAddress, new_method_call
        from jeepney.low_level import HeaderFields
        from jeepney.wrappers import unwrap_msg

        if self._owner is not None:
            return self._owner
        reply = conn.send_and_get_reply(
            new_method_call(
                DBusAddress(_PATH, bus_name=_BUS_NAME, interface=_BUS_NAME), "GetCapabilities"
            ),
            timeout=_REPLY_TIMEOUT_S,
        )
        (listed,) = unwrap_msg(reply)
        # The bus stamps every message with its sender's unique name (":1.42").
        self._owner = (str(reply.header.fields[HeaderFields.sender]), frozenset(map(str, listed)))
        return self._owner

    def _send(self, title: str, body: str, on_click: Callable[[], None] | None) -> None:
        from jeepney import DBusAddress, new_method_call
        from jeepney.low_level import HeaderFields
        from jeepney.wrappers import unwrap_msg

        try:
            conn = self._connect()
            title = plain_text(title)
            body = plain_text(body)
            # Notify goes to the unique name of the daemon whose capabilities
            # were read, so the escaping always suits the process that gets
            # the text. If that daemon has left the bus since (another one
            # took the name), the bus answers an error: ask the new owner.
            for attempt in range(2):
                owner, capabilities = self._daemon(conn)
                text = _escape_markup(body) if "body-markup" in capabilities else body
                call = new_method_call(
                    DBusAddress(_PATH, bus_name=owner, interface=_BUS_NAME),
                    "Notify",
                    "susssasa{sv}i",
                    # app, replaces, icon, summary, body, actions (key, label
                    # pairs), hints, expire_timeout (-1: the daemon's default)
                    (
                        self._app_name,
                        0,
                        "",
                        title,
                        text,
                        ["default", "Open"] if on_click else [],
                        {},
                        -1,
                    ),
                )
                reply = conn.send_and_get_reply(call, timeout=_REPLY_TIMEOUT_S)
                error = reply.header.fields.get(HeaderFields.error_name)
                if attempt == 0 and error in _OWNER_GONE:
                    self._owner = None
                    continue
                # unwrap_msg raises DBusErrorResponse for an error reply (no
                # daemon: org.freedesktop.DBus.Error.ServiceUnknown).
                (notification_id,) = unwrap_msg(reply)
                break
        except Exception as exc:
            self._failed(exc)
            self._drop_connection()
            return
        if on_click is None:
            return
        with self._lock:
            # The daemon may report a click (or the close) while this thread
            # still waits for the reply: _on_signal kept it in _early.
            early = self._early.pop(int(notification_id), None)
            if early is None:
                self._clicks[int(notification_id)] = on_click
        if early == "default":
            self._run_click(on_click)

    def _on_signal(self, message: Any) -> None:
        # On the worker thread, from inside a call or between pop-ups.
        from jeepney.low_level import HeaderFields

        member = message.header.fields.get(HeaderFields.member)
        if member not in ("ActionInvoked", "NotificationClosed"):
            return
        notification_id = int(message.body[0])
        outcome = message.body[1] if member == "ActionInvoked" else "closed"
        with self._lock:
            on_click = self._clicks.pop(notification_id, None)
            if on_click is None:
                # The first word counts: a click after the close is no click.
                self._early.setdefault(notification_id, str(outcome))
                while len(self._early) > _EARLY_KEPT:
                    del self._early[next(iter(self._early))]
        if on_click is not None and outcome == "default":
            self._run_click(on_click)

    @staticmethod
    def _run_click(on_click: Callable[[], None]) -> None:
        # On a thread of its own: opening a browser can take a while, and the
        # worker must keep making the next pop-ups' calls.
        def run() -> None:
            try:
                on_click()
            except Exception:
                log.exception("the pop-up's click action failed")

        threading.Thread(target=run, name="iotnotify-pop-up-click", daemon=True).start()

    def _failed(self, error: BaseException) -> None:
        self._no_service.report(error)

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        self._owner = None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Make the pop-ups already queued, then end the worker and the
        connection (waiting up to 5 s); a later :meth:`notify` starts them
        again."""
        with self._lock:
            worker, wake = self._worker, self._wake
            if worker is None or wake is None:
                return
            self._queue(None)
            self._worker = self._wake = None
            self._retired = worker
        worker.join(5)
        if not worker.is_alive():
            self._drop_connection()
            for fd in wake:
                os.close(fd)


_NO_JOB: Final = object()


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 512):
            pass


def _nonblocking_pipe() -> tuple[int, int]:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    return read_end, write_end


class _Dispatch:
    """A queue for jeepney's blocking connection (it ``append``s each matched
    message) that hands the message to a callback instead of storing it."""

    def __init__(self, callback: Callable[[Any], None]) -> None:
        self._callback = callback

    def append(self, message: Any) -> None:
        self._callback(message)


def default_notifier() -> Notifier:
    """:class:`DBusNotifier` on Linux when jeepney is installed, else
    :class:`DesktopNotifierBackend`."""
    # find_spec looks without importing: jeepney loads with the first pop-up.
    if sys.platform.startswith("linux") and importlib.util.find_spec("jeepney") is not None:
        return DBusNotifier()
    return DesktopNotifierBackend()
