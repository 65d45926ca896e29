"""The state file ``iotnotify local`` writes: where everything runs.

Other commands (``send``, ``listen``, tests) read it instead of guessing
ports. It holds the demo users' passwords and the local publisher's key,
which are meaningful only to this machine's moto; it is still written
owner-readable only.

``iotnotify local`` removes the file when it stops; after a crash (or
``kill -9``) the file stays behind. :meth:`LocalState.read` therefore checks
that the stack it describes is alive (its process exists and its HTTP API
accepts connections) and raises :class:`StackNotRunning` otherwise, so every
command says "not running" instead of botocore's "Could not connect to the
endpoint URL".
"""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from iotnotify.errors import IotNotifyError

__all__ = [
    "DEFAULT_STATE_FILE",
    "LocalState",
    "StackNotRunning",
    "StateFileError",
    "not_a_regular_file",
    "read_regular_file",
]

DEFAULT_STATE_FILE: Final = Path(".iotnotify") / "local.json"
# A local API that is up accepts a TCP connection at once; this only bounds
# the wait for an address that silently drops packets.
_PROBE_TIMEOUT_S: Final = 2.0


class StateFileError(IotNotifyError):
    """The state file is missing or unreadable: is ``iotnotify local`` running?

    An :class:`~iotnotify.errors.IotNotifyError`, like every error of the SDK,
    so code that catches the one base (``Publisher.from_state_file()``,
    ``CognitoAuth.from_state_file()`` with the stack stopped) catches it too.
    """


class StackNotRunning(StateFileError):
    """The state file is left over from a stack that is no longer running."""


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence and permission check only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def _accepts_connections(url: str) -> bool:
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


_FILE_KINDS: Final = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


def not_a_regular_file(path: Path) -> str | None:
    """What ``path`` is when it exists and is no regular file (``"a FIFO (named
    pipe)"``, ``"a character device"``, ...; symlinks followed, so
    ``/dev/stdin`` is what it points at); None for a regular file or no file.

    Reading a FIFO (or a terminal, e.g. ``/dev/stdin``) blocks until someone
    writes to it, so a command given one as a file hung for ever; this is
    the check to run before opening it (it only stats the path).
    """
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    return None if stat.S_ISREG(mode) else _kind(mode)


def read_regular_file(path: Path, *, what: str = "file") -> str:
    """The UTF-8 text of ``path``, which must be a regular file.

    Raises :class:`StateFileError` (one line: ``{what} {path} is a FIFO ...,
    not a regular file``) for a FIFO, device, socket or directory, without
    blocking: the path is checked before it is opened, and opened with
    ``O_NONBLOCK`` and checked again (``fstat``), in case it was swapped in
    between. Raises ``FileNotFoundError``, other ``OSError`` and
    ``UnicodeDecodeError`` as reading a file does.
    """
    kind = not_a_regular_file(path)
    if kind is None:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as handle:
            mode = os.fstat(fd).st_mode
            if stat.S_ISREG(mode):
                return handle.read().decode("utf-8")
            kind = _kind(mode)
    raise StateFileError(f"{what} {path} is {kind}, not a regular file")


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def _is_list_of_objects(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


# Every field of the file with the check its JSON value must pass, so a file
# someone edited (or another tool's JSON at that path) is one clear
# StateFileError here, not a TypeError or AttributeError later in a command.
_FIELD_CHECKS: Final[dict[str, Callable[[Any], bool]]] = {
    **dict.fromkeys(
        (
            "region",
            "app",
            "stage",
            "apiUrl",
            "webUrl",
            "iotWsUrl",
            "iotWssUrl",
            "iotDataUrl",
            "caFile",
            "awsEndpointUrl",
            "userPoolId",
            "userPoolClientId",
        ),
        _is_str,
    ),
    "users": _is_list_of_objects,
    "publisher": _is_object,
    "pid": _is_int,
    "extra": _is_object,
}
_OPTIONAL_FIELDS: Final = frozenset({"pid", "extra"})
_REQUIRED_FIELDS: Final = frozenset(_FIELD_CHECKS) - _OPTIONAL_FIELDS


@dataclass(frozen=True, slots=True)
class LocalState:
    region: str
    app: str
    stage: str
    apiUrl: str  # noqa: N815 - the file's field names are the contract
    webUrl: str  # noqa: N815
    iotWsUrl: str  # noqa: N815
    iotWssUrl: str  # noqa: N815
    iotDataUrl: str  # noqa: N815
    caFile: str  # noqa: N815
    awsEndpointUrl: str  # noqa: N815
    userPoolId: str  # noqa: N815
    userPoolClientId: str  # noqa: N815
    users: list[dict[str, Any]]
    publisher: dict[str, str]
    pid: int = field(default_factory=os.getpid)
    extra: dict[str, Any] = field(default_factory=dict)

    def user(self, name: str) -> dict[str, Any]:
        """A demo user by short name, sign-in name or sub."""
        for user in self.users:
            if name in (user.get("name"), user.get("username"), user.get("sub")):
                return user
        known = ", ".join(str(u.get("name")) for u in self.users)
        raise StateFileError(f"no demo user {name!r} in the state file (known: {known})")

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(self), handle, indent=2)
            handle.write("\n")
        tmp.replace(path)

    def ensure_running(self, path: Path) -> None:
        """Raise :class:`StackNotRunning` unless the stack that wrote ``path`` is up.

        Two checks, either of which proves a stale file: the process id the
        stack recorded no longer exists on this machine, or nothing accepts a
        TCP connection at ``apiUrl``.
        """
        hint = (
            f"the local stack is not running (the state file {path} is left over from "
            "a stack that stopped without cleaning up). Start it with `iotnotify local`."
        )
        if self.pid > 0 and not _process_exists(self.pid):
            raise StackNotRunning(f"{hint} (process {self.pid} has exited)")
        if not _accepts_connections(self.apiUrl):
            raise StackNotRunning(f"{hint} (nothing listens at {self.apiUrl})")

    @classmethod
    def read(cls, path: Path = DEFAULT_STATE_FILE, *, check_running: bool = True) -> LocalState:
        """Parse ``path``; with ``check_running``, also :meth:`ensure_running`.

        Raises :class:`StateFileError` (missing, unreadable, no regular file
        (a FIFO or ``/dev/stdin`` is refused before it is read, instead of
        blocking), not a JSON object, incomplete, a field of the wrong type)
        or :class:`StackNotRunning` (stale).
        """
        try:
            raw = json.loads(read_regular_file(path, what="state file"))
        except FileNotFoundError as exc:
            raise StateFileError(
                f"no state file at {path}: start the local stack with `iotnotify local` first"
            ) from exc
        except UnicodeDecodeError as exc:
            raise StateFileError(f"cannot read state file {path}: not UTF-8 ({exc})") from exc
        except (OSError, ValueError, RecursionError) as exc:
            # ValueError: not JSON; RecursionError: nested deeper than json can parse.
            raise StateFileError(f"cannot read state file {path}: {exc}") from exc
        if not isinstance(raw, dict):
            raise StateFileError(
                f"cannot read state file {path}: not a JSON object (it holds "
                f"{type(raw).__name__}); start `iotnotify local` again to rewrite it"
            )
        missing = sorted(_REQUIRED_FIELDS - raw.keys())
        if missing:
            raise StateFileError(f"state file {path} is incomplete: missing {', '.join(missing)}")
        wrong = [
            f"{name} ({type(raw[name]).__name__})"
            for name, check in _FIELD_CHECKS.items()
            if name in raw and not check(raw[name])
        ]
        if wrong:
            raise StateFileError(
                f"state file {path} has fields of the wrong type: {', '.join(wrong)}; "
                "start `iotnotify local` again to rewrite it"
            )
        state = cls(**{k: v for k, v in raw.items() if k in _FIELD_CHECKS})
        if check_running:
            state.ensure_running(path)
        return state
