"""What the tray shows, without any GUI toolkit: recent items, unread count, pause.

The pystray app only renders this state and forwards clicks to it, so all
the decisions (what counts as unread, what pops up, what the menu says)
are tested without a screen.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from iotnotify.contract import Notification
from iotnotify.subscriber import ConnectionState, StateChange

__all__ = ["Alert", "TrayItem", "TrayState", "badge_text"]

_MAX_LABEL: Final = 60


def badge_text(unread: int) -> str:
    """What the badge says: nothing at 0, the count up to 9, then ``9+``."""
    if unread <= 0:
        return ""
    return str(unread) if unread < 10 else "9+"


def _shorten(text: str, limit: int = _MAX_LABEL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


@dataclass(frozen=True, slots=True)
class Alert:
    """An OS notification to show."""

    title: str
    body: str


@dataclass(slots=True)
class TrayItem:
    note: Notification
    read: bool = False

    @property
    def label(self) -> str:
        mark = "" if self.read else "\u2022 "
        text = self.note.title if not self.note.body else f"{self.note.title}: {self.note.body}"
        return mark + _shorten(text)


def _summary(missed: list[Notification]) -> Alert:
    latest = missed[-1]
    if len(missed) == 1:
        return Alert(title=latest.title, body=latest.body)
    return Alert(title=f"{len(missed)} new notifications", body=f"Latest: {latest.title}")


class TrayState:
    """Thread-safe: the subscriber's threads write, the toolkit's thread reads."""

    def __init__(self, *, max_recent: int = 10) -> None:
        self._lock = threading.RLock()
        self._recent: deque[TrayItem] = deque(maxlen=max_recent)
        self._ids: set[str] = set()
        self._unread = 0
        self.paused = False
        self.connection = "connecting"
        self.online = False
        self.refused: tuple[str, ...] = ()
        # Between CONNECTED and CAUGHT_UP notifications come from the inbox
        # (what was missed while offline): one summary pop-up, not fifty.
        self._catching_up = False
        self._missed: list[Notification] = []
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, listener: Callable[[], None]) -> None:
        """``listener`` runs after every change (the app redraws the icon)."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

    @property
    def unread(self) -> int:
        return self._unread

    @property
    def recent(self) -> list[TrayItem]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._recent))

    def add(self, note: Notification) -> Alert | None:
        """Record a notification; the alert to pop up, or None (duplicate, paused)."""
        with self._lock:
            if note.id in self._ids:
                return None
            if len(self._recent) == self._recent.maxlen:
                self._ids.discard(self._recent[0].note.id)
            self._recent.append(TrayItem(note))
            self._ids.add(note.id)
            # The unread count is not capped by the recent list: ten shown,
            # 42 unread is a true statement after a long weekend offline.
            self._unread += 1
            if self._catching_up:
                self._missed.append(note)
                alert = None
            else:
                alert = None if self.paused else Alert(title=note.title, body=note.body)
        self._changed()
        return alert

    def mark_all_read(self) -> None:
        with self._lock:
            for item in self._recent:
                item.read = True
            self._unread = 0
        self._changed()

    def toggle_pause(self) -> bool:
        """Do-not-disturb: notifications are still listed and counted, not popped up."""
        with self._lock:
            self.paused = not self.paused
            paused = self.paused
        self._changed()
        return paused

    def clear(self) -> None:
        """After sign-out: nothing of the previous user stays on screen."""
        with self._lock:
            self._recent.clear()
            self._ids.clear()
            self._unread = 0
        self._changed()

    def on_connection(self, change: StateChange) -> Alert | None:
        """Track the connection; after a catch-up, the one alert summarising it."""
        alert: Alert | None = None
        with self._lock:
            self.online = change.state in (
                ConnectionState.CONNECTED,
                ConnectionState.CAUGHT_UP,
                ConnectionState.CATCH_UP_FAILED,  # live; the inbox read is retried
            )
            if change.state is ConnectionState.DISCONNECTED:
                self.connection = "offline, reconnecting"
            else:
                self.connection = change.state.value.replace("-", " ")
            if change.state is ConnectionState.CONNECTED:
                self._catching_up, self._missed = True, []
                # Topics the server refused stay named in the tooltip (issue 12 item 3).
                self.refused = change.refused
            elif change.state is ConnectionState.CAUGHT_UP:
                missed, self._catching_up, self._missed = self._missed, False, []
                if missed and not self.paused:
                    alert = _summary(missed)
        self._changed()
        return alert

    def title(self) -> str:
        """The tooltip; ASCII, since X11's WM_NAME (pystray's xorg backend) is Latin-1."""
        with self._lock:
            parts = ["iotnotify", self.connection]
            if self._unread:
                parts.append(f"{self._unread} unread")
            if self.paused:
                parts.append("paused")
            if self.refused:
                parts.append("not authorised: " + ", ".join(self.refused))
            return " - ".join(parts)

    def menu_labels(self) -> list[str]:
        """The recent-notifications entries, newest first."""
        items = self.recent
        return [item.label for item in items] if items else ["No notifications yet"]
