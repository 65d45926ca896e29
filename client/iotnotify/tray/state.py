"""What the tray shows, without any GUI toolkit: recent items, unread count, pause.

The pystray app only renders this state and forwards clicks to it, so all
the decisions (what counts as unread, what pops up, what the menu says)
are tested without a screen.

Games (issue 14): a notification whose ``data`` names a ``game`` (and
usually a ``url`` to it, as "Your turn in <game>" does) is counted under
that game as well; the menu lists each game with its unread count, and
opening a game (the pop-up's click or its menu entry) marks its
notifications read and hands back the newest URL to open.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from iotnotify.contract import Notification
from iotnotify.display_text import plain_text
from iotnotify.subscriber import ConnectionState, StateChange

__all__ = ["Alert", "GameEntry", "TrayItem", "TrayState", "badge_text", "link_of"]

_MAX_LABEL: Final = 60


def badge_text(unread: int) -> str:
    """What the badge says: nothing at 0, the count up to 9, then ``9+``."""
    if unread <= 0:
        return ""
    return str(unread) if unread < 10 else "9+"


def link_of(note: Notification) -> str | None:
    """``data.url`` when it is an http(s) link (nothing else is ever opened)."""
    url = note.data.get("url")
    if isinstance(url, str) and url.startswith(("https://", "http://")) and len(url) <= 2048:
        return url
    return None


def _game_of(note: Notification) -> str | None:
    game = note.data.get("game")
    return game if isinstance(game, str) and game else None


def _shorten(text: str, limit: int = _MAX_LABEL) -> str:
    # A menu label is a pop-up's text in another place: the same filter
    # (a NUL would make the bus drop the menu's connection, an RLO reverse it).
    text = " ".join(plain_text(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


@dataclass(frozen=True, slots=True)
class Alert:
    """An OS notification to show; clicking it opens ``game`` (when set)."""

    title: str
    body: str
    game: str | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class GameEntry:
    """A game in the menu: its unread count and the newest link to it."""

    game: str
    name: str
    unread: int
    url: str | None

    @property
    def label(self) -> str:
        count = f" ({self.unread} unread)" if self.unread else ""
        return _shorten(self.name) + count


@dataclass(slots=True)
class TrayItem:
    note: Notification
    read: bool = False

    @property
    def game(self) -> str | None:
        return _game_of(self.note)

    @property
    def url(self) -> str | None:
        return link_of(self.note)

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
        # Per game: unread count, display name and newest link (not capped
        # by the recent list, like the total).
        self._game_unread: dict[str, int] = {}
        self._game_names: dict[str, str] = {}
        self._game_urls: dict[str, str] = {}

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
            game, url = _game_of(note), link_of(note)
            if game is not None:
                self._game_unread[game] = self._game_unread.get(game, 0) + 1
                name = note.data.get("gameName")
                self._game_names[game] = name if isinstance(name, str) and name else game
                if url is not None:
                    self._game_urls[game] = url
            if self._catching_up:
                self._missed.append(note)
                alert = None
            elif self.paused:
                alert = None
            else:
                alert = Alert(title=note.title, body=note.body, game=game, url=url)
        self._changed()
        return alert

    def mark_all_read(self) -> None:
        with self._lock:
            for item in self._recent:
                item.read = True
            self._unread = 0
            self._game_unread = dict.fromkeys(self._game_unread, 0)
        self._changed()

    def unread_by_game(self) -> dict[str, int]:
        """Unread notifications per game id (games seen since start, 0 included)."""
        with self._lock:
            return dict(self._game_unread)

    def games(self) -> list[GameEntry]:
        """The games for the menu, most unread first, then by name."""
        with self._lock:
            entries = [
                GameEntry(game, self._game_names[game], count, self._game_urls.get(game))
                for game, count in self._game_unread.items()
            ]
        return sorted(entries, key=lambda e: (-e.unread, e.name))

    def open_game(self, game: str) -> str | None:
        """The user opened ``game``: its notifications are read; returns its newest link."""
        with self._lock:
            count = self._game_unread.get(game)
            if count is None:
                return None
            for item in self._recent:
                if item.game == game:
                    item.read = True
            self._unread = max(0, self._unread - count)
            self._game_unread[game] = 0
            url = self._game_urls.get(game)
        self._changed()
        return url

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
            self._game_unread.clear()
            self._game_names.clear()
            self._game_urls.clear()
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
                games = [f"{self._game_names[g]}: {n}" for g, n in self._game_unread.items() if n]
                if games:
                    text = " ".join(plain_text("games " + ", ".join(sorted(games))).split())
                    parts.append(text.encode("ascii", "replace").decode("ascii"))
            if self.paused:
                parts.append("paused")
            if self.refused:
                parts.append("not authorised: " + ", ".join(self.refused))
            return " - ".join(parts)

    def menu_labels(self) -> list[str]:
        """The recent-notifications entries, newest first."""
        items = self.recent
        return [item.label for item in items] if items else ["No notifications yet"]
