"""The tray app: pystray renders :class:`TrayState`; a :class:`Subscriber` feeds it.

Everything toolkit-specific is in this module. The app takes its notifier,
keyring store, settings path and URL opener as arguments, so a test can run
the real app under Xvfb with a recording notifier, an in-memory keyring and
a recorded browser.

A notification with a game and an http(s) ``data.url`` ("Your turn in
<game>") opens that URL in the browser when its pop-up is clicked, and the
menu's "Games" entries (one per game, with its unread count) open the
newest URL of their game; either marks the game's notifications read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from iotnotify.api_client import ApiClient
from iotnotify.auth import CognitoAuth, CognitoSession, Tokens
from iotnotify.contract import Notification, id_lower_bound, is_notification_id
from iotnotify.errors import AuthError, IotNotifyError
from iotnotify.subscriber import (
    DEFAULT_CATCH_UP_LOOKBACK,
    ConnectionState,
    StateChange,
    Subscriber,
    device_suffix,
)
from iotnotify.tray.icon import Bell
from iotnotify.tray.keyring_store import RefreshTokenStore, TokenStore
from iotnotify.tray.notifier import Notifier, default_notifier
from iotnotify.tray.settings import TraySettings
from iotnotify.tray.state import Alert, TrayState
from iotnotify.tray.toolkit import ToolkitCaller, caller_for, tray_host_present

__all__ = ["TrayApp", "TrayUnavailable", "load_pystray"]

log = logging.getLogger("iotnotify.tray")


def _display() -> str:
    """The display the tray was told to use, for an error message."""
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    return f"DISPLAY={display!r}" if display else "DISPLAY is not set"


class TrayUnavailable(IotNotifyError):
    """No way to show a tray icon here (no display, or no pystray backend)."""


class TrayApp:
    """Construct, then :meth:`run` (blocks in the toolkit's loop until Quit)."""

    def __init__(
        self,
        *,
        settings: TraySettings,
        settings_path: Path | None = None,
        password: str | None = None,
        notifier: Notifier | None = None,
        token_store: TokenStore | None = None,
        state: TrayState | None = None,
        subscriber_options: Mapping[str, Any] | None = None,
        open_url: Callable[[str], Any] | None = None,
    ) -> None:
        if not settings.configured:
            raise AuthError(
                "the tray is not set up: run `iotnotify tray` once with --api-url, "
                "--client-id and --user (or --state-file and --user for the local stack)"
            )
        self.settings = settings
        self._settings_path = settings_path
        self._password = password
        self.notifier: Notifier = notifier or default_notifier()
        self._token_store: TokenStore = token_store or RefreshTokenStore(api_url=settings.api_url)
        self.state = state or TrayState()
        self._subscriber_options = dict(subscriber_options or {})
        self._lookback = float(
            self._subscriber_options.get("catch_up_lookback", DEFAULT_CATCH_UP_LOOKBACK)
        )
        self._open_url = open_url or _open_in_browser
        self.subscriber: Subscriber | None = None
        self._session: CognitoSession | None = None
        self.icon: Any = None
        self.rendered_unread = 0  # the count drawn into the current icon image
        self.ready = threading.Event()  # the icon is up and the subscriber started
        self.stopped = threading.Event()  # quit() has finished
        self._lock = threading.Lock()
        self._quitting = False
        self._loop_thread: threading.Thread | None = None
        self._ui: ToolkitCaller | None = None
        self._redraw_queued = False
        self._drawn = threading.Condition()
        self._loop_done = threading.Event()
        self._paints_bells = False  # the icon class draws a Bell itself (see run())
        self.state.subscribe(self._redraw)

    # --- sign-in and subscription --------------------------------------------------

    def has_refresh_token(self) -> bool:
        """Whether this computer's keyring can sign the user in without a password."""
        return self._token_store.get(self.settings.username) is not None

    def sign_in(self) -> CognitoSession:
        """Sign in with the stored refresh token, or the password on first use.

        Raises :class:`AuthError` when Cognito refuses. When it cannot be
        reached (no network yet, :class:`ConnectionLost`) or throttles, the
        session is returned unsigned: the subscriber signs in with it when it
        connects, retrying with backoff like any other outage.
        """
        if self._session is not None:
            return self._session
        settings = self.settings
        refresh = self._token_store.get(settings.username)
        if not refresh and not self._password:
            raise AuthError(
                f"{settings.username} is not signed in on this computer: run "
                "`iotnotify tray` once with --password (or from a terminal to be asked)"
            )
        auth = CognitoAuth(
            client_id=settings.user_pool_client_id,
            region=settings.region,
            endpoint_url=settings.cognito_endpoint or None,
        )

        def keep(tokens: Tokens) -> None:
            if tokens.refresh_token:
                self._token_store.put(settings.username, tokens.refresh_token)

        session = CognitoSession(
            auth,
            username=settings.username,
            password=self._password,
            refresh_token=refresh,
            on_tokens=keep,
        )
        # A refused password fails now, in the terminal, rather than silently
        # in the tray. Started at login before the network is up, or with
        # Cognito busy, is an outage: the subscriber signs in on its first
        # token fetch and retries with backoff (shared with `iotnotify listen`).
        outage = session.sign_in_unless_offline()
        if outage is not None:
            log.warning("cannot sign in yet, will keep trying: %s", outage)
        self._password = None  # the session holds what it needs to sign in (again)
        self._session = session
        return session

    def start(self) -> Subscriber:
        session = self.sign_in()
        api = ApiClient(
            api_url=self.settings.api_url,
            id_tokens=session,
            ca_file=self.settings.ca_file or None,
        )
        options: dict[str, Any] = {
            "tokens": api,
            "on_message": self._on_notification,
            "on_state": self._on_state,
            # A resume point that is no id (an edited settings file) is no
            # resume point: catch up on the whole inbox rather than not start.
            "since": self.settings.last_id if is_notification_id(self.settings.last_id) else None,
            "shown_ids": self._saved_shown_ids(),
            "device_id": device_suffix("tray"),
            "ca_file": self.settings.ca_file or None,
            **self._subscriber_options,
        }
        self.subscriber = Subscriber(**options).start()
        return self.subscriber

    def _saved_shown_ids(self) -> list[str] | None:
        """The ids the last run showed near ``last_id``; None: resume strictly after it."""
        if not is_notification_id(self.settings.last_id):
            return None
        ids = [i for i in self.settings.shown_ids.split() if is_notification_id(i)]
        return ids or None

    def _on_notification(self, note: Notification) -> None:
        alert = self.state.add(note)
        # Only the own topic's notes are in the inbox: a broadcast's or a
        # game's id (another host's clock) must not move the resume point.
        subscriber = self.subscriber
        if subscriber is not None and not subscriber.is_own(note):
            self._alert(alert)
            return
        # Remembered before the pop-up: a restart must not show it again. The
        # id handled here, not the subscriber's last_id, which may be ahead
        # (queued notifications are never handed over after stop()). With
        # the ids shown in the catch-up look-back before it, so that the
        # next run re-reads that window and skips only these.
        # An id that is not a ULID (a sender outside this SDK) is never in
        # the inbox and no since= the API takes, and one made far ahead of
        # the server's clock would make the next run ask for nothing after
        # it: neither is a resume point.
        if subscriber.resumable(note.id) if subscriber is not None else is_notification_id(note.id):
            saved = self.settings.last_id
            last = max(saved, note.id) if is_notification_id(saved) else note.id
            bound = id_lower_bound(last, lookback_seconds=self._lookback)
            shown = {
                i for i in self.settings.shown_ids.split() if is_notification_id(i) and i > bound
            }
            if note.id > bound:
                shown.add(note.id)
            self._save(last_id=last, shown_ids=" ".join(sorted(shown)))
        self._alert(alert)

    def _alert(self, alert: Alert | None) -> None:
        if alert is not None:
            game = alert.game
            if game is not None and alert.url is not None:
                self._notify(alert.title, alert.body, on_click=lambda: self.open_game(game))
            else:
                self._notify(alert.title, alert.body)

    def _notify(self, title: str, body: str, *, on_click: Callable[[], None] | None = None) -> None:
        try:
            if on_click is None:
                self.notifier.notify(title, body)
            else:
                self.notifier.notify(title, body, on_click=on_click)
        except Exception:
            log.exception("the notifier failed")

    def open_game(self, game: str) -> None:
        """Open ``game``'s newest link in the browser and mark the game read."""
        url = self.state.open_game(game)
        if url is None:
            return
        try:
            self._open_url(url)
        except Exception:  # no browser configured: the tray keeps running
            log.exception("could not open %s", url)

    def _on_state(self, change: StateChange) -> None:
        alert = self.state.on_connection(change)
        if alert is not None:
            self._notify(alert.title, alert.body)
        if change.state is ConnectionState.STOPPED and isinstance(change.error, AuthError):
            # The refresh token was revoked or expired: a password is needed again.
            log.error("signed out: %s", change.error)

    def _save(self, **changes: Any) -> None:
        with self._lock:
            self.settings = self.settings.with_changes(**changes)
            try:
                self.settings.save(self._settings_path)
            except OSError:
                log.warning("could not save the tray settings", exc_info=True)

    # --- menu actions --------------------------------------------------------------

    def mark_all_read(self) -> None:
        self.state.mark_all_read()

    def toggle_pause(self) -> None:
        self.state.toggle_pause()

    def sign_out(self) -> None:
        """Forget the refresh token and what was shown, then quit."""
        self._stop_subscriber()
        self._session = None
        try:
            self._token_store.delete(self.settings.username)
        except IotNotifyError:
            log.exception("could not remove the refresh token")
        self._save(last_id="", shown_ids="")
        self.state.clear()
        self.quit()

    def quit(self) -> None:
        """Stop everything; safe from any thread, and only the first call acts."""
        with self._lock:
            if self._quitting:
                return
            self._quitting = True
        try:
            self._stop_subscriber()
            if self.icon is not None:
                # Backends marshal stop() to their own thread and wait for it;
                # two concurrent stops could wait for a window already gone.
                self.icon.stop()
                self._nudge_x11_loop()
        finally:
            self.stopped.set()

    def _nudge_x11_loop(self) -> None:
        # pystray's X11 loop ends on its window's DestroyNotify, but when
        # another thread's X call reads that event first (python-xlib queues
        # it), the loop sleeps in select() forever. A round trip wakes it so it
        # finds the queued event. Other backends have no ``_display``.
        display = getattr(self.icon, "_display", None)
        if display is None or threading.current_thread() is self._loop_thread:
            return
        for _ in range(20):
            if self._loop_done.wait(0.25):
                return
            with contextlib.suppress(Exception):
                display.sync()

    def _stop_subscriber(self) -> None:
        subscriber, self.subscriber = self.subscriber, None
        if subscriber is not None:
            subscriber.stop()

    # --- toolkit -------------------------------------------------------------------

    def _image(self, unread: int | None = None) -> Any:
        bell = Bell(
            unread=self.state.unread if unread is None else unread,
            online=self.state.online,
            paused=self.state.paused,
        )
        # pystray's X11 icon here paints a Bell itself (no Pillow resident);
        # every other backend takes a Pillow image.
        return bell if self._paints_bells else bell.render(64).to_pil()

    def _redraw(self) -> None:
        """Called from any thread (the subscriber's, a menu click): post to the toolkit's."""
        icon, ui = self.icon, self._ui
        # After quit() the toolkit's window may be gone.
        if icon is None or ui is None or self._quitting:
            return
        with self._lock:
            if self._redraw_queued:
                return  # one redraw draws the latest state
            self._redraw_queued = True
        ui.post(self._apply_redraw)

    def _apply_redraw(self) -> None:
        """On pystray's thread only (see iotnotify.tray.toolkit)."""
        with self._lock:
            self._redraw_queued = False
        icon = self.icon
        if icon is None or self._quitting:
            return
        unread = self.state.unread
        icon.icon = self._image(unread)
        icon.title = self.state.title()
        try:
            icon.update_menu()
        except Exception:  # some backends have no menu to update
            log.debug("menu update failed", exc_info=True)
        with self._drawn:
            # Only now is the whole redraw (image, title, menu) on screen.
            self.rendered_unread = unread
            self._drawn.notify_all()

    def wait_rendered(self, unread: int, timeout: float = 10.0) -> bool:
        """Block until the icon shows ``unread`` (tests, and anyone scripting the tray)."""
        with self._drawn:
            return self._drawn.wait_for(lambda: self.rendered_unread == unread, timeout)

    @staticmethod
    def _off_toolkit(action: Callable[[], None]) -> None:
        # Stopping joins the subscriber's threads, and they may be waiting for
        # the toolkit's thread to redraw the icon: never block that thread.
        threading.Thread(target=action, name="iotnotify-tray-action", daemon=True).start()

    def _menu(self) -> Any:
        import pystray

        state = self.state

        def recent() -> Iterator[Any]:
            items = state.recent
            if not items:
                yield pystray.MenuItem("No notifications yet", None, enabled=False)
            for item in items:
                game = item.game
                if game is not None and item.url is not None:
                    yield pystray.MenuItem(item.label, self._opener(game))
                else:
                    yield pystray.MenuItem(item.label, None, enabled=False)

        def games() -> Iterator[Any]:
            entries = state.games()
            if not entries:
                yield pystray.MenuItem("No games yet", None, enabled=False)
            for entry in entries:
                yield pystray.MenuItem(
                    entry.label, self._opener(entry.game), enabled=entry.url is not None
                )

        return pystray.Menu(
            pystray.MenuItem(lambda _item: state.title(), None, enabled=False),
            pystray.MenuItem("Recent notifications", pystray.Menu(recent)),
            pystray.MenuItem("Mark all read", lambda: self.mark_all_read(), default=True),
            pystray.MenuItem(
                "Pause notifications",
                lambda: self.toggle_pause(),
                checked=lambda _item: state.paused,
            ),
            pystray.MenuItem("Games", pystray.Menu(games)),
            pystray.Menu.SEPARATOR,
            pystray.MenuItem("Sign out", lambda: self._off_toolkit(self.sign_out)),
            pystray.MenuItem("Quit", lambda: self._off_toolkit(self.quit)),
        )

    def _opener(self, game: str) -> Callable[[], None]:
        # Off the toolkit's thread: a browser start can take a while.
        return lambda: self._off_toolkit(lambda: self.open_game(game))

    def run(self) -> None:
        """Show the icon and block until Quit or Sign out.

        Raises :class:`TrayUnavailable` when pystray has no backend to show an
        icon with (on Linux: no X11 display to connect to), or when the X
        server closed the connection while the icon was shown.
        """
        try:
            pystray = load_pystray()
        except Exception as exc:
            # pystray picks and starts its backend on import; without a display
            # python-xlib raises DisplayNameError, which reached the user as a
            # traceback. Xlib's and GTK's errors share no base class.
            raise TrayUnavailable(
                f"cannot show a tray icon: no desktop session to draw it in ({_display()}: "
                f"{type(exc).__name__}: {exc}). Run `iotnotify tray` inside your desktop "
                "session, or use `iotnotify listen` on a machine without one."
            ) from exc

        icon_class: Any = pystray.Icon
        if icon_class.__module__ == "pystray._xorg":
            # Paints without Pillow: see iotnotify.tray.xorg_icon.
            from iotnotify.tray.xorg_icon import XorgIcon

            icon_class, self._paints_bells = XorgIcon, True
        image, title, menu = self._image(), self.state.title(), self._menu()
        try:
            self.icon = icon_class("iotnotify", image, title, menu)
        except Exception as exc:
            # pystray's Icon() opens a connection of its own (on X11): a
            # server that accepted the import's probe can still refuse or go
            # away here, and that reached the user as a traceback.
            raise TrayUnavailable(
                f"cannot show a tray icon: the desktop session's display did not let the "
                f"icon connect ({_display()}: {type(exc).__name__}: {exc}). Start `iotnotify "
                "tray` again in a running desktop session."
            ) from exc
        self._ui = caller_for(self.icon)
        if tray_host_present(self.icon) is False:
            # pystray would log a traceback on every update; say it once.
            _quiet_pystray_docking()
            log.warning(
                "no system tray is running (nothing owns the X11 tray selection "
                "_NET_SYSTEM_TRAY_S0), so the icon cannot be shown; OS notifications "
                "still work. Enable a tray (GNOME: the AppIndicator extension) and "
                "restart `iotnotify tray`."
            )

        def setup(icon: Any) -> None:
            icon.visible = True
            try:
                self.start()
            except IotNotifyError:
                log.exception("could not start")
                icon.stop()
                raise
            finally:
                self.ready.set()

        self._loop_thread = threading.current_thread()
        self._ui.thread = self._loop_thread
        try:
            self.icon.run(setup=setup)
        finally:
            self._ui.close()
            self._loop_done.set()
            self.ready.set()  # never leave a waiter hanging when the toolkit failed
            self._stop_subscriber()
            self.notifier.close()
        lost = getattr(self.icon, "display_lost", None)  # iotnotify.tray.xorg_icon
        if lost is not None:
            display = os.environ.get("DISPLAY") or "(DISPLAY not set)"
            raise TrayUnavailable(
                f"the X server closed the connection to display {display} "
                f"({lost}): the desktop session ended or its X server stopped; "
                "the tray stopped. Start `iotnotify tray` again in a running session."
            )


def _open_in_browser(url: str) -> None:
    # webbrowser (and the browser registry it builds) loads on the first
    # click, not with the always-on tray.
    import webbrowser

    webbrowser.open(url)


def load_pystray() -> Any:
    """Import pystray (which picks its backend and, on X11, connects on import)
    with python-xlib loading no X extension modules.

    python-xlib's ``Display()`` imports and initialises a module for every
    extension the X server offers (the registry ``Xlib.ext.__extensions__``:
    XInput, RANDR, XFIXES, ... 13 on Xorg and Xvfb), about 0.8 MiB resident
    in the always-on tray. pystray's xorg backend and
    :mod:`iotnotify.tray.toolkit` use only core X11 requests (windows,
    properties, selections, SendEvent, GetGeometry, PutImage), so the tray's
    process registers none. Raises whatever pystray's import raises (no
    display: python-xlib's DisplayNameError).
    """
    try:
        import Xlib.ext
    except ImportError:  # no python-xlib: macOS, Windows, or a GTK-only setup
        pass
    else:
        Xlib.ext.__extensions__ = []
    import pystray

    return pystray


class _DropDockingErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Failed to dock icon" not in record.getMessage()


def _quiet_pystray_docking() -> None:
    for name in ("pystray", "pystray._xorg", "pystray._base"):
        logging.getLogger(name).addFilter(_DropDockingErrors())
