"""The refresh token in the OS keyring (Keychain, Credential Locker, Secret Service).

Only the refresh token is stored: it is the long-lived secret that lets the
tray sign in again after a reboot without the password. keyring's errors
are translated to :class:`~iotnotify.errors.AuthError` here.
"""

from __future__ import annotations

from typing import Final

import keyring
from keyring.errors import KeyringError, PasswordDeleteError

from iotnotify.errors import AuthError

__all__ = ["RefreshTokenStore"]

_SERVICE_PREFIX: Final = "iotnotify"


class RefreshTokenStore:
    """One entry per API (deployment) and username."""

    def __init__(self, *, api_url: str) -> None:
        self._service = f"{_SERVICE_PREFIX}:{api_url.rstrip('/')}"

    def get(self, username: str) -> str | None:
        try:
            return keyring.get_password(self._service, username)
        except KeyringError as exc:
            raise AuthError(f"cannot read the OS keyring: {exc}") from exc

    def put(self, username: str, refresh_token: str) -> None:
        try:
            keyring.set_password(self._service, username, refresh_token)
        except KeyringError as exc:
            raise AuthError(f"cannot store the refresh token in the OS keyring: {exc}") from exc

    def delete(self, username: str) -> None:
        try:
            keyring.delete_password(self._service, username)
        except PasswordDeleteError:
            pass  # already signed out
        except KeyringError as exc:
            raise AuthError(f"cannot remove the refresh token from the OS keyring: {exc}") from exc
