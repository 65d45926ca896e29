"""The refresh token in the OS keyring (Keychain, Credential Locker, Secret Service).

Only the refresh token is stored: it is the long-lived secret that lets the
tray sign in again after a reboot without the password. keyring's errors
are translated to :class:`~iotnotify.errors.AuthError` here.
"""

from __future__ import annotations

import threading
from typing import Final, Protocol

import keyring
from keyring.errors import KeyringError, PasswordDeleteError

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
    """One entry per API (deployment) and username."""

    def __init__(self, *, api_url: str) -> None:
        self._service = f"{_SERVICE_PREFIX}:{api_url.rstrip('/')}"

    def get(self, username: str) -> str | None:
        try:
            return keyring.get_password(self._service, username)
        except KeyringError as exc:
            raise KeyringUnavailable(f"{NO_KEYRING_HELP} (keyring said: {exc})") from exc

    def put(self, username: str, refresh_token: str) -> None:
        try:
            keyring.set_password(self._service, username, refresh_token)
        except KeyringError as exc:
            raise KeyringUnavailable(f"{NO_KEYRING_HELP} (keyring said: {exc})") from exc

    def delete(self, username: str) -> None:
        try:
            keyring.delete_password(self._service, username)
        except PasswordDeleteError:
            pass  # already signed out
        except KeyringError as exc:
            raise AuthError(f"cannot remove the refresh token from the OS keyring: {exc}") from exc
