"""``iotnotify listen`` and ``iotnotify tray``: the subscriber side of the CLI.

Registered on the main group by :mod:`iotnotify.cli`. Each command can also
be run on its own (``python -m iotnotify.cli_client listen ...``). Both
accept either a deployment (``--api-url --client-id --region --user``) or
the local stack's state file with a demo user name (``--state-file F
--user alice``), which supplies the API URL, the Cognito app client,
Cognito's endpoint (moto), the region and the demo password.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from iotnotify.cli_output import (
    INTERRUPTED_EXIT_STATUS,
    CommandError,
    FilePath,
    log_to_stderr,
    on_stdout_reader_gone,
    sdk_log_lines,
    silence_stdout,
    warn,
)
from iotnotify.contract import Notification
from iotnotify.errors import IotNotifyError

if TYPE_CHECKING:  # pragma: no cover
    from iotnotify.subscriber import StateChange

__all__ = ["listen", "tray"]


@dataclass(frozen=True, slots=True)
class _Target:
    api_url: str
    user_pool_client_id: str
    region: str
    cognito_endpoint: str | None
    username: str
    password: str | None
    ca_file: str | None

    def session(self) -> Any:
        """A Cognito session for this target's user (USER_PASSWORD_AUTH), not
        signed in yet: an ``IdTokenSource`` for the API clients."""
        from iotnotify.auth import CognitoAuth, CognitoSession

        auth = CognitoAuth(
            client_id=self.user_pool_client_id,
            region=self.region,
            endpoint_url=self.cognito_endpoint,
        )
        return CognitoSession(auth, username=self.username, password=self.password)

    def signed_in(self) -> Any:
        """:meth:`session`, signed in; raises the SDK's errors."""
        session = self.session()
        session.sign_in()
        return session


def _target(
    *,
    user: str | None,
    password: str | None,
    api_url: str | None,
    client_id: str | None,
    region: str | None,
    cognito_endpoint: str | None,
    state_file: Path | None,
    ca_file: str | None,
    need_password: bool,
) -> _Target:
    if api_url:
        if not client_id or not user:
            raise click.UsageError("with --api-url, give --client-id and --user too")
        if need_password and not password:
            password = click.prompt(f"password for {user}", hide_input=True, err=True)
        return _Target(
            api_url=api_url,
            user_pool_client_id=client_id,
            region=region or "us-east-1",
            cognito_endpoint=cognito_endpoint,
            username=user,
            password=password,
            ca_file=ca_file,
        )
    from iotnotify.state_file import DEFAULT_STATE_FILE, LocalState, StateFileError

    if not user:
        raise click.UsageError("give --user (a demo user of the local stack, e.g. alice)")
    try:
        state = LocalState.read(state_file or DEFAULT_STATE_FILE)
    except StateFileError as exc:
        raise CommandError(str(exc)) from exc
    try:
        demo: dict[str, Any] | None = state.user(user)
    except StateFileError as exc:
        # An e-mail that is no demo user is someone who signed up on the
        # local page: sign them in to the same pool with their own password.
        if "@" not in user:
            raise CommandError(str(exc)) from exc
        demo = None
    if demo is None and need_password and not password:
        password = click.prompt(f"password for {user}", hide_input=True, err=True)
    return _Target(
        api_url=state.apiUrl,
        user_pool_client_id=state.userPoolClientId,
        region=region or state.region,
        cognito_endpoint=cognito_endpoint or state.awsEndpointUrl,
        username=user if demo is None else str(demo["username"]),
        password=password or (None if demo is None else str(demo["password"])),
        ca_file=ca_file or state.caFile or None,
    )


def _target_options(func: Any) -> Any:
    options = [
        click.option(
            "--user", default=None, help="Sign-in e-mail, or a demo user name with a state file."
        ),
        click.option(
            "--password",
            envvar="IOTNOTIFY_PASSWORD",
            default=None,
            help="Password (or IOTNOTIFY_PASSWORD); asked for when needed.",
        ),
        click.option("--api-url", default=None, help="The deployment's API URL."),
        click.option("--client-id", default=None, help="The Cognito user-pool app client id."),
        click.option("--region", default=None, help="AWS region of the user pool."),
        click.option(
            "--cognito-endpoint", default=None, help="Cognito endpoint URL (tests, local)."
        ),
        click.option(
            "--state-file",
            type=FilePath(),
            default=None,
            help="Local stack state file [default: .iotnotify/local.json].",
        ),
        click.option("--ca-file", default=None, help="CA bundle to trust for wss:// and https://."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


# What shutil imports only to see whether they exist (its archive formats).
_ARCHIVE_CODECS = ("bz2", "lzma")


def _shutil_without_archive_codecs() -> None:
    """Import :mod:`shutil` with ``bz2`` and ``lzma`` absent, unless it is loaded.

    The subscriber's HTTP stack imports shutil (urllib.request and paho-mqtt
    import tempfile, which imports shutil), and shutil imports bz2 and lzma
    at import only to learn whether it can make ``.tar.bz2``/``.tar.xz``
    archives. That maps libbz2 and liblzma with their C modules into the
    always-on ``listen`` and ``tray``, about 0.3 MiB of RSS for archives
    they never make (issue 11 §2). A ``None`` entry in ``sys.modules`` makes
    an import raise ``ModuleNotFoundError`` (Python reference, "The module
    cache": https://docs.python.org/3/reference/import.html#the-module-cache),
    which shutil handles by leaving those formats out; the entries are
    removed again afterwards, so a later ``import lzma`` works as usual.
    """
    if "shutil" in sys.modules:
        return
    absent = [name for name in _ARCHIVE_CODECS if name not in sys.modules]
    for name in absent:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import shutil  # noqa: F401  (its import is the point)
    finally:
        for name in absent:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def _require_tray_extra(*, keyring: bool) -> None:
    """Raise a usage error naming the ``[tray]`` extra when a module it installs is
    missing (without importing any: :func:`importlib.util.find_spec`), instead
    of a failure deep in the tray that blames the desktop or the keyring."""
    from importlib.util import find_spec

    needed = ["pystray"]
    if keyring:
        needed.append("keyring")
    needed.append("jeepney" if sys.platform == "linux" else "desktop_notifier")
    missing = [name for name in needed if find_spec(name) is None]
    if missing:
        raise CommandError(
            f"the tray needs the [tray] extra ({', '.join(missing)} not installed): "
            "pip install 'iotnotify[tray]'"
        )


def _since(value: str) -> str:
    if value in ("now", "all"):
        return value
    from iotnotify.contract import is_notification_id, quoted_excerpt

    # A ULID is case-insensitive (ulid/spec); the inbox's ids are upper case.
    if is_notification_id(value.upper()):
        return value.upper()
    raise click.BadParameter(
        f"expected 'now', 'all' or a notification id (a 26-character ULID such as "
        f"01JD5Z3Q8W9V4X2Y6Z7A8B9C0D), not {quoted_excerpt(value)}"
    )


def _device(value: str | None) -> str | None:
    if value is None:
        return None  # the default: a new suffix for every run
    from iotnotify.contract import validate_client_suffix
    from iotnotify.errors import ContractError

    try:
        return validate_client_suffix(value)
    except ContractError as exc:
        raise click.BadParameter(str(exc)) from exc


def _line(note: Notification) -> str:
    """One notification as ``listen`` prints it: every field as :func:`terminal_text`
    shows it, since the sender, not the reader, wrote them (an ESC sequence in a
    title would otherwise drive the reader's terminal)."""
    from iotnotify.display_text import terminal_text

    when = note.ts or datetime.now(UTC).isoformat(timespec="seconds")
    text = note.title if not note.body else f"{note.title}: {note.body}"
    kind = "" if note.type == "notification" else f" [{note.type}]"
    return terminal_text(f"{when}{kind} {text}")


class _StatusLines:
    """Which connection changes ``listen`` prints on stderr: every one, except
    the retries of an outage. Reconnecting goes on for as long as the network
    or the service is away (with backoff, up to a minute apart), and two
    lines per retry ("connecting", "disconnected ... retrying in") buried the
    one that matters. An outage is said once, when it starts (and again only
    if its cause changes kind, e.g. the network is back but the token is
    refused); the next line is "connected"."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self._outage: type[BaseException] | None = None  # the kind of error said
        self.connected = False  # connected at least once

    def waiting(self, error: BaseException) -> None:
        """The service cannot be reached (yet): say so once."""
        if type(error) is self._outage:
            return
        self._outage = type(error)
        first = "cannot connect yet" if not self.connected else "disconnected"
        self._say(
            f"{first}: {error}; waiting for the network and the service, retrying with "
            "backoff (Ctrl-C stops)"
        )

    def change(self, change: StateChange) -> None:
        from iotnotify.subscriber import ConnectionState

        state = change.state
        if state is ConnectionState.DISCONNECTED and change.error is not None:
            self.waiting(change.error)
            return
        if state is ConnectionState.CONNECTING and self._outage is not None:
            return  # one more retry of the outage already said
        if state is ConnectionState.STOPPED and change.error is None and not self.connected:
            return  # stopped before it ever listened: Ctrl-C, which listen says itself
        if state is ConnectionState.CONNECTED:
            self._outage = None
            self.connected = True
        self._say(change.describe())


@click.command()
@_target_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines (the envelopes).")
@click.option(
    "--since",
    default="now",
    show_default=True,
    callback=lambda _ctx, _param, value: _since(value),
    help="'now' (only new ones, by the server's clock), 'all' (everything still in the inbox) "
    "or a notification id.",
)
@click.option(
    "--keepalive",
    # MQTT's Keep Alive is a two-byte unsigned integer (MQTT 3.1.1 section 3.1.2.10).
    type=click.IntRange(0, 65535),
    default=None,
    help="MQTT keepalive in seconds, 0..65535 (AWS clamps to 30..1200; 0 means 1200) "
    "[default: the token's].",
)
@click.option(
    "--device",
    default=None,
    callback=lambda _ctx, _param, value: _device(value),
    help="Client-id suffix [default: listen-<machine>-<random>, new for every run, so two "
    "listeners never take over each other; two programs given the same suffix will].",
)
def listen(
    user: str | None,
    password: str | None,
    api_url: str | None,
    client_id: str | None,
    region: str | None,
    cognito_endpoint: str | None,
    state_file: Path | None,
    ca_file: str | None,
    as_json: bool,
    since: str,
    keepalive: int | None,
    device: str | None,
) -> None:
    """Print notifications as they arrive; connection changes go to stderr. Ctrl-C stops.

    Started while the network or the service is away (DNS failure, connection
    refused, a 5xx), it says so once and waits, retrying with backoff; a
    refused password still ends it at once. Ctrl-C before it ever connected
    exits with status 130, after that with 0.
    """
    _shutil_without_archive_codecs()
    from iotnotify.api_client import ApiClient
    from iotnotify.subscriber import (
        SINCE_NOW,
        ConnectionState,
        Subscriber,
        device_suffix,
    )

    target = _target(
        user=user,
        password=password,
        api_url=api_url,
        client_id=client_id,
        region=region,
        cognito_endpoint=cognito_endpoint,
        state_file=state_file,
        ca_file=ca_file,
        need_password=True,
    )
    start_after: str | None
    if since == "now":
        start_after = SINCE_NOW  # the server's clock decides, not this machine's
    elif since == "all":
        start_after = None
    else:
        start_after = since

    from iotnotify.display_text import json_line

    # `iotnotify listen | head -1`: once the reader has gone, stop (as a Unix
    # filter does) instead of a BrokenPipeError traceback per notification.
    reader_gone = threading.Event()
    stopped_said = threading.Event()
    running: list[Subscriber] = []
    status = _StatusLines(warn)
    # Any other failure to print (ENOSPC on a full disk, EIO): stop with it
    # as an error, rather than run on past notifications nobody saw.
    write_failed: list[OSError] = []

    def show(note: Notification) -> None:
        if reader_gone.is_set() or write_failed:
            return
        try:
            click.echo(json_line(note.to_dict()) if as_json else _line(note))
        except BrokenPipeError:
            reader_gone.set()
            for subscriber in running:
                subscriber.stop()
        except OSError as exc:
            write_failed.append(exc)
            for subscriber in running:
                subscriber.stop()

    def state(change: StateChange) -> None:
        if change.state is ConnectionState.STOPPED:
            stopped_said.set()
        if not reader_gone.is_set():
            status.change(change)

    try:
        # The SDK's warnings ("ignoring a message on ...") become lines like
        # every other of the CLI's: "iotnotify: ...".
        with sdk_log_lines():
            session = target.session()
            # A refused password ends listen here; no network yet does not:
            # the subscriber signs in at its first token fetch and retries
            # (the tray's start does the same).
            outage = session.sign_in_unless_offline()
            if outage is not None:
                status.waiting(outage)
            api = ApiClient(api_url=target.api_url, id_tokens=session, ca_file=target.ca_file)
            subscriber = Subscriber(
                tokens=api,
                on_message=show,
                on_state=state,
                since=start_after,
                keepalive=keepalive,
                device_id=device or device_suffix("listen"),
                ca_file=target.ca_file,
            )
            running.append(subscriber)

            def reader_left() -> None:
                reader_gone.set()
                subscriber.stop()

            # `listen | grep -m1 turn`: end when the reader does, not at the
            # next notification (which may be hours away).
            on_stdout_reader_gone(reader_left)
            subscriber.run_forever()
    except KeyboardInterrupt:
        if not status.connected:
            # Stopped before it ever listened (waiting for the network, or
            # signing in): 128 + SIGINT, as `iotnotify local` before "ready.".
            warn("interrupted")
            raise click.exceptions.Exit(INTERRUPTED_EXIT_STATUS) from None
        if not stopped_said.is_set():  # the subscriber's own "stopped" was not printed
            warn("stopped")
    except IotNotifyError as exc:
        raise CommandError(str(exc)) from exc
    if reader_gone.is_set() or write_failed:
        # Python flushes stdout at exit, into the closed pipe: "Exception
        # ignored ... BrokenPipeError" (or the same write error again).
        silence_stdout()
    if write_failed:
        raise CommandError(f"cannot print notifications: {write_failed[0]}")


@click.command()
@_target_options
@click.option(
    "--settings",
    "settings_path",
    type=FilePath(),
    default=None,
    help="Settings file [default: the platform's config directory].",
)
@click.option(
    "--no-keyring",
    is_flag=True,
    help="Keep the refresh token in memory only (no OS keyring here); asks for the "
    "password at every start.",
)
def tray(
    user: str | None,
    password: str | None,
    api_url: str | None,
    client_id: str | None,
    region: str | None,
    cognito_endpoint: str | None,
    state_file: Path | None,
    ca_file: str | None,
    settings_path: Path | None,
    no_keyring: bool,
) -> None:
    """Run the desktop tray notifier (unread badge, OS notifications, recent list).

    The first run needs the sign-in details; they are saved (the refresh
    token in the OS keyring), so later runs, e.g. at login, need no options.
    """
    _require_tray_extra(keyring=not no_keyring)
    _shutil_without_archive_codecs()
    import logging

    from iotnotify.tray.app import TrayApp
    from iotnotify.tray.keyring_store import MemoryTokenStore, RefreshTokenStore, TokenStore
    from iotnotify.tray.settings import TraySettings

    # Connection changes and problems go to stderr (the terminal, or the
    # journal when started at login), one line each.
    # Undone when the command ends, so a caller that runs it in-process
    # (click's test runner, an embedding app) keeps no handler.
    click.get_current_context().call_on_close(log_to_stderr(logging.INFO))
    settings = TraySettings.load(settings_path)
    login_password: str | None = None
    if api_url or state_file or user:
        if not api_url and not state_file and settings.api_url and user and "@" in user:
            # Only --user with an e-mail: switch accounts on the saved
            # deployment. A name without "@" is a demo user of the local
            # stack (sign-in names are e-mails), resolved from its state file.
            target = _Target(
                api_url=settings.api_url,
                user_pool_client_id=settings.user_pool_client_id,
                region=settings.region,
                cognito_endpoint=settings.cognito_endpoint or None,
                username=user,
                password=password,
                ca_file=settings.ca_file or None,
            )
        else:
            target = _target(
                user=user,
                password=password,
                api_url=api_url,
                client_id=client_id,
                region=region,
                cognito_endpoint=cognito_endpoint,
                state_file=state_file,
                ca_file=ca_file,
                need_password=False,
            )
        changed = (target.api_url, target.username) != (settings.api_url, settings.username)
        settings = settings.with_changes(
            api_url=target.api_url,
            user_pool_client_id=target.user_pool_client_id,
            region=target.region,
            cognito_endpoint=target.cognito_endpoint or "",
            username=target.username,
            ca_file=target.ca_file or "",
            last_id="" if changed else settings.last_id,
        )
        login_password = target.password
    try:
        store: TokenStore = (
            MemoryTokenStore()
            if no_keyring
            else RefreshTokenStore(api_url=settings.api_url, isolate=True)
        )
        app = TrayApp(
            settings=settings,
            settings_path=settings_path,
            password=login_password,
            token_store=store,
        )
        if login_password is None and not app.has_refresh_token():
            login_password = click.prompt(
                f"password for {settings.username}", hide_input=True, err=True
            )
            app = TrayApp(
                settings=settings,
                settings_path=settings_path,
                password=login_password,
                token_store=store,
            )
        app.sign_in()  # in the terminal: a wrong password is reported here
        try:
            settings.save(settings_path)
        except OSError as exc:
            from iotnotify.tray.settings import default_settings_path

            where = settings_path or default_settings_path()
            raise CommandError(
                f"cannot save the tray settings to {where}: {exc.strerror or exc}; "
                "give --settings a path in a folder you can write"
            ) from exc
        app.run()
    except KeyboardInterrupt:
        pass
    except IotNotifyError as exc:
        raise CommandError(str(exc)) from exc


if __name__ == "__main__":
    click.Group(commands={"listen": listen, "tray": tray})(prog_name="iotnotify")
    sys.exit(0)
