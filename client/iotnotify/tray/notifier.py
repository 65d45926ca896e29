"""OS notifications: a small seam over desktop-notifier.

:class:`Notifier` is what the tray calls; tests inject a recorder. The
desktop-notifier implementation runs the library's asyncio API on a private
event-loop thread and never raises: a missing notification daemon must not
take the tray down with it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import asyncio

__all__ = ["DesktopNotifierBackend", "Notifier"]

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
        self._failed_once = False
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
        future = asyncio.run_coroutine_threadsafe(self._send(title, body, on_click), loop)

        def report(done: Any) -> None:
            error = done.exception()
            if error is not None:
                self._failed(error)

        future.add_done_callback(report)

    def _failed(self, error: BaseException) -> None:
        # Without a notification service every pop-up fails the same way:
        # say so once, in words a user can act on, not once per message.
        with self._lock:
            first, self._failed_once = not self._failed_once, True
        if first:
            log.warning(
                "no desktop notification service answered (%s: %s); pop-ups are off, "
                "the tray icon and its list still work. On Linux a notification "
                "daemon must own org.freedesktop.Notifications on the session D-Bus "
                "(every desktop has one; a bare X session needs e.g. dunst).",
                type(error).__name__,
                error,
            )
        else:
            log.debug("desktop notification failed again: %r", error)

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
