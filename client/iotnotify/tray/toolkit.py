"""Run a function on pystray's own thread, whatever thread asks.

pystray's setters (``icon.icon``, ``icon.title``, ``update_menu``) called
from another thread talk to the toolkit from that thread. On X11 that means
a second thread on pystray's X connection: pystray's xorg backend sends a
message and waits for its loop, while the loop may be inside
expose -> ``get_geometry`` waiting for a reply the other thread read; the
tray froze in 2 of 6 runs (issue 12 item 7). So every update is posted to
the toolkit's thread and applied there:

* xorg: a ClientMessage to the icon's window through a *separate* X
  connection (``XSendEvent`` with an empty event mask is delivered to the
  window's creator, X11 protocol, SendEvent), handled in pystray's loop;
* GTK / AppIndicator: ``GLib.idle_add`` (GLib's documented way to run code
  in the main loop from another thread);
* other backends (macOS, Windows) marshal their setters to their own loop
  and return without waiting on it; there a single worker thread calls them,
  so the subscriber's thread never waits on the toolkit either.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, ClassVar

__all__ = ["ToolkitCaller", "caller_for", "tray_host_present"]

log = logging.getLogger("iotnotify.tray")

_ATOM = "_IOTNOTIFY_CALL"


class ToolkitCaller:
    """``post(fn)``: run ``fn`` soon on the toolkit's thread; never blocks the caller."""

    def __init__(self) -> None:
        self._pending: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None  # the toolkit's thread, once known

    def post(self, action: Callable[[], None]) -> None:
        if self.thread is not None and threading.current_thread() is self.thread:
            self._run(action)
            return
        self._pending.put(action)
        self._wake()

    def drain(self) -> None:
        """Run what was posted (on the toolkit's thread)."""
        while True:
            try:
                action = self._pending.get_nowait()
            except queue.Empty:
                return
            self._run(action)

    @staticmethod
    def _run(action: Callable[[], None]) -> None:
        try:
            action()
        except Exception:
            log.debug("tray update failed", exc_info=True)

    def _wake(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the caller holds (its own X connection, its worker)."""


class _XorgCaller(ToolkitCaller):
    def __init__(self, icon: Any) -> None:
        super().__init__()
        import Xlib.X

        self._icon = icon
        # pystray's connection: only used here before its loop starts.
        self._atom = icon._display.intern_atom(_ATOM)
        # Our own connection for waking the loop: pystray's must stay its own.
        self._waker: _WakerDisplay | None = _waker_display(os.environ.get("DISPLAY"))
        self._lock = threading.Lock()
        self._window_id: int = icon._window.id
        original = icon._message_handlers.get(Xlib.X.ClientMessage)

        def on_client_message(event: Any) -> None:
            if event.client_type == self._atom:
                self.thread = threading.current_thread()
                self.drain()
            elif original is not None:
                original(event)

        icon._message_handlers[Xlib.X.ClientMessage] = on_client_message

    def _wake(self) -> None:
        import Xlib.protocol.event
        import Xlib.protocol.request

        with self._lock:
            if self._waker is None:
                return
            event = Xlib.protocol.event.ClientMessage(
                window=self._window_id, client_type=self._atom, data=(32, [0, 0, 0, 0, 0])
            )
            try:
                Xlib.protocol.request.SendEvent(
                    display=self._waker,
                    onerror=None,
                    propagate=False,
                    destination=self._window_id,
                    event_mask=0,
                    event=event,
                )
                self._waker.flush()
            except Exception:
                log.debug("could not wake the tray loop", exc_info=True)

    def close(self) -> None:
        self._icon = None
        with self._lock:
            waker, self._waker = self._waker, None
        if waker is not None:
            try:
                waker.close()
            except Exception:
                log.debug("closing the waker connection failed", exc_info=True)


class _WakerDisplay:
    """What :class:`_XorgCaller` uses of its wake-up connection (for mypy)."""

    def flush(self) -> None: ...

    def close(self) -> None: ...


def _waker_display(name: str | None) -> _WakerDisplay:
    """An X connection that only sends events: python-xlib's protocol-level
    ``Display``, not ``Xlib.display.Display``.

    The full ``Display`` also fetches the keyboard mapping and builds two
    keysym tables at connect (``_update_keymap``, about 120 KB of Python
    objects that stayed resident in the always-on tray for a connection that
    never looks at a key); the protocol-level one only does the connection
    set-up. It needs a ``resource_classes`` table to parse the set-up reply:
    an empty one leaves window and colormap ids as plain integers.

    The parsed set-up reply itself (``info``: every screen with every depth
    and visual the server offers, 390 visual records on Xvfb and as many on
    a desktop with GLX visuals; about 200 KB of Python objects) is dropped
    once connected: a connection that only sends ``SendEvent`` never reads
    it (python-xlib's protocol display reads ``info`` only to allocate
    resource ids, which this connection never does).
    """
    import Xlib.protocol.display

    class _Display(Xlib.protocol.display.Display):  # type: ignore[misc]
        resource_classes: ClassVar[dict[str, type]] = {}

    connection = _Display(name)
    connection.info = None
    display: _WakerDisplay = connection
    return display


class _GlibCaller(ToolkitCaller):
    def _wake(self) -> None:
        from gi.repository import GLib

        def idle() -> bool:
            self.thread = threading.current_thread()
            self.drain()
            return False  # run once

        GLib.idle_add(idle)


class _WorkerCaller(ToolkitCaller):
    def __init__(self) -> None:
        super().__init__()
        self._wakeups: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._loop, name="iotnotify-tray-ui", daemon=True)
        self._worker.start()

    def _loop(self) -> None:
        while self._wakeups.get():
            self.drain()

    def _wake(self) -> None:
        self._wakeups.put(True)

    def close(self) -> None:
        self._wakeups.put(False)


def _backend(icon: Any) -> str:
    """pystray's backend module of ``icon`` ("_xorg", "_gtk", ...), also for a subclass
    (iotnotify.tray.xorg_icon.XorgIcon)."""
    for cls in type(icon).__mro__:
        if cls.__module__.startswith("pystray._"):
            return str(cls.__module__.rsplit(".", 1)[-1])
    return ""


def caller_for(icon: Any) -> ToolkitCaller:
    """The right :class:`ToolkitCaller` for ``icon``'s pystray backend."""
    backend = _backend(icon)
    if backend == "_xorg":
        return _XorgCaller(icon)
    if backend in ("_gtk", "_appindicator"):
        return _GlibCaller()
    return _WorkerCaller()


def tray_host_present(icon: Any) -> bool | None:
    """Whether a system tray will show ``icon``: None when the backend cannot tell.

    On X11 a tray host owns the ``_NET_SYSTEM_TRAY_S<screen>`` selection
    (freedesktop System Tray Protocol Specification).
    """
    if _backend(icon) != "_xorg":
        return None
    display = icon._display
    atom = display.intern_atom(f"_NET_SYSTEM_TRAY_S{display.get_default_screen()}")
    owner = display.get_selection_owner(atom)
    return bool(owner) and getattr(owner, "id", 0) != 0
