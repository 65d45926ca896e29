"""The refresh token in the OS keyring (Keychain, Credential Locker, Secret Service).

Only the refresh token is stored: it is the long-lived secret that lets the
tray sign in again after a reboot without the password. keyring's errors
are translated to :class:`~iotnotify.errors.AuthError` here.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from typing import Final, Protocol

from iotnotify.errors import AuthError

__all__ = [
    "NO_KEYRING_HELP",
    "KeyringUnavailable",
    "MemoryTokenStore",
    "RefreshTokenStore",
    "TokenStore",
]

_SERVICE_PREFIX: Final = "iotnotify"
NO_KEYRING_HELP: Final = (
    "No OS keyring is available to keep your sign-in (on Linux that is a Secret Service "
    "provider such as GNOME Keyring, KWallet or KeePassXC, running and unlocked in this "
    "session). Choose one: (1) start or install a keyring and run `iotnotify tray` again "
    "(needed to start at login without typing anything), or (2) run `iotnotify tray "
    "--no-keyring`: the refresh token stays in memory only and you type the password at "
    "every start. iotnotify never writes the token to a plain file."
)


class TokenStore(Protocol):
    """Where the tray keeps a user's refresh token."""

    def get(self, username: str) -> str | None: ...

    def put(self, username: str, refresh_token: str) -> None: ...

    def delete(self, username: str) -> None: ...


class KeyringUnavailable(AuthError):
    """The OS keyring cannot be used here; the message says what to choose instead."""


class MemoryTokenStore:
    """``--no-keyring``: the refresh token lives as long as this process, nowhere else."""

    def __init__(self) -> None:
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, username: str) -> str | None:
        with self._lock:
            return self._tokens.get(username)

    def put(self, username: str, refresh_token: str) -> None:
        with self._lock:
            self._tokens[username] = refresh_token

    def delete(self, username: str) -> None:
        with self._lock:
            self._tokens.pop(username, None)


class RefreshTokenStore:
    """One entry per API (deployment) and username.

    With ``isolate`` (what ``iotnotify tray`` uses) every call runs keyring
    in a short-lived child process (``python -m iotnotify.tray.keyring_store``),
    so keyring and its backends (on Linux secretstorage/jeepney and
    cryptography, plus importlib-metadata and jaraco for backend discovery)
    never stay resident in the always-on tray. The token crosses the child's
    stdin/stdout pipe, never its arguments or environment. Without
    ``isolate`` keyring runs in this process (tests, embedding apps).
    """

    def __init__(self, *, api_url: str, isolate: bool = False) -> None:
        self._service = f"{_SERVICE_PREFIX}:{api_url.rstrip('/')}"
        self._isolate = isolate

    def get(self, username: str) -> str | None:
        if self._isolate:
            return _in_child("get", self._service, username) or None
        return _keyring_call("get", self._service, username)

    def put(self, username: str, refresh_token: str) -> None:
        if self._isolate:
            _in_child("put", self._service, username, secret=refresh_token)
        else:
            _keyring_call("put", self._service, username, refresh_token)

    def delete(self, username: str) -> None:
        if self._isolate:
            _in_child("delete", self._service, username)
        else:
            _keyring_call("delete", self._service, username)


# Exit status of the child for "no usable keyring" (any other failure: 1).
_NO_KEYRING_STATUS: Final = 3
_CHILD_TIMEOUT: Final = 60.0


def _keyring_call(op: str, service: str, username: str, secret: str = "") -> str | None:
    import keyring
    from keyring.errors import KeyringError, PasswordDeleteError

    try:
        if op == "get":
            return keyring.get_password(service, username)
        if op == "put":
            keyring.set_password(service, username, secret)
        else:
            with contextlib.suppress(PasswordDeleteError):  # already signed out
                keyring.delete_password(service, username)
    except KeyringError as exc:
        raise KeyringUnavailable(f"{NO_KEYRING_HELP} (keyring said: {exc})") from exc
    return None


def _in_child(op: str, service: str, username: str, *, secret: str = "") -> str:
    try:
        done = subprocess.run(  # noqa: S603 - our own module, fixed arguments
            [sys.executable, "-m", "iotnotify.tray.keyring_store", op, service, username],
            input=secret,
            capture_output=True,
            text=True,
            timeout=_CHILD_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AuthError(f"the keyring helper did not run: {exc}") from exc
    if done.returncode == _NO_KEYRING_STATUS:
        raise KeyringUnavailable(f"{NO_KEYRING_HELP} (keyring said: {done.stderr.strip()})")
    if done.returncode != 0:
        raise AuthError(f"the OS keyring failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def _child_main(argv: list[str]) -> int:
    """``get|put|delete SERVICE USERNAME``; a secret comes on stdin, an answer on stdout."""
    op, service, username = argv
    try:
        answer = _keyring_call(op, service, username, sys.stdin.read() if op == "put" else "")
    except KeyringUnavailable as exc:
        cause = exc.__cause__ or exc
        print(f"{type(cause).__name__}: {cause}", file=sys.stderr)
        return _NO_KEYRING_STATUS
    if answer:
        sys.stdout.write(answer)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
