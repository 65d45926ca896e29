"""Signing in: Cognito user-pool tokens, and the ID-token seam.

:class:`CognitoAuth` talks to ``cognito-idp`` (USER_PASSWORD_AUTH and the
refresh-token flow) without AWS credentials: these calls are public, so the
client is built with ``signature_version=UNSIGNED``; ``endpoint_url`` points
it at moto locally. :class:`CognitoSession` keeps the tokens and renews the
ID token lazily when it is asked for one, never on a timer: an idle tray app
must not wake up just to refresh tokens nobody uses.

Anything with an ``id_token()`` method (:class:`IdTokenSource`) can stand in,
so a game with its own sign-in can hand its tokens to the SDK.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from iotnotify.errors import AuthError, ConnectionLost, Forbidden, IotNotifyError, Throttled

__all__ = [
    "CognitoAuth",
    "CognitoSession",
    "IdTokenSource",
    "StaticIdToken",
    "Tokens",
]

# Renew this long before the ID token's expiry, so a token is never sent
# that expires in flight or on a slightly fast server clock.
_EXPIRY_MARGIN_SECONDS: Final = 60.0
_AUTH_ERRORS: Final = frozenset(
    {
        "NotAuthorizedException",
        "UserNotFoundException",
        "UserNotConfirmedException",
        "PasswordResetRequiredException",
        "InvalidPasswordException",
    }
)
_THROTTLE_ERRORS: Final = frozenset(
    {"TooManyRequestsException", "LimitExceededException", "TooManyFailedAttemptsException"}
)


@runtime_checkable
class IdTokenSource(Protocol):
    """Supplies a currently valid ID token for the API's ``Authorization`` header.

    ``force_refresh`` is passed after the API refused a token (401), so a
    source that caches tokens fetches a new one instead of resending it.
    """

    def id_token(self, *, force_refresh: bool = False) -> str: ...


@dataclass(frozen=True, slots=True)
class StaticIdToken:
    """A fixed ID token, for callers that manage sign-in themselves."""

    token: str

    def id_token(self, *, force_refresh: bool = False) -> str:
        if force_refresh:
            raise AuthError("the ID token was refused and this source cannot renew it")
        return self.token


@dataclass(frozen=True, slots=True)
class Tokens:
    """A user-pool sign-in result. ``expires_at`` is a ``time.time()`` value."""

    id_token: str
    access_token: str
    refresh_token: str
    expires_at: float

    def fresh(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) < self.expires_at - _EXPIRY_MARGIN_SECONDS


def _translate(exc: Exception, *, what: str) -> IotNotifyError:
    """One place that maps botocore's errors onto this package's hierarchy."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        message = str(exc.response.get("Error", {}).get("Message", "")) or code
        if code in _AUTH_ERRORS:
            return AuthError(f"{what} refused: {message}")
        if code in _THROTTLE_ERRORS:
            return Throttled(f"{what} throttled: {message}")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if status == 403:
            return Forbidden(f"{what} forbidden: {message}")
        if status >= 500:
            return ConnectionLost(f"{what} failed on the server ({status}): {message}")
        return AuthError(f"{what} failed: {code}: {message}")
    if isinstance(exc, EndpointConnectionError | BotoCoreError):
        return ConnectionLost(f"{what} failed: {exc}")
    return IotNotifyError(f"{what} failed: {exc}")


class CognitoAuth:
    """The two Cognito flows the SDK needs, for one user-pool app client."""

    def __init__(
        self,
        *,
        client_id: str,
        region: str,
        endpoint_url: str | None = None,
        client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self._clock = clock
        # InitiateAuth is unauthenticated; UNSIGNED also means a machine with
        # no AWS credentials at all (a player's desktop) can sign in.
        self._client = client or boto3.session.Session().client(
            "cognito-idp",
            region_name=region,
            endpoint_url=endpoint_url,
            config=Config(
                signature_version=botocore.UNSIGNED,
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=20,
            ),
        )

    def _initiate(self, flow: Any, parameters: dict[str, str], *, what: str) -> dict[str, Any]:
        try:
            answer: Any = self._client.initiate_auth(
                ClientId=self.client_id, AuthFlow=flow, AuthParameters=parameters
            )
        except (BotoCoreError, ClientError) as exc:
            raise _translate(exc, what=what) from exc
        result = answer.get("AuthenticationResult")
        if not result:
            challenge = answer.get("ChallengeName", "unknown")
            raise AuthError(f"{what} needs a challenge this client cannot answer: {challenge}")
        return dict(result)

    def sign_in(self, username: str, password: str) -> Tokens:
        """USER_PASSWORD_AUTH; the pool uses e-mail addresses as usernames."""
        result = self._initiate(
            "USER_PASSWORD_AUTH", {"USERNAME": username, "PASSWORD": password}, what="sign-in"
        )
        return self._tokens(result, refresh_token=None)

    def refresh(self, refresh_token: str) -> Tokens:
        """REFRESH_TOKEN_AUTH: new ID and access tokens, same refresh token."""
        result = self._initiate(
            "REFRESH_TOKEN_AUTH", {"REFRESH_TOKEN": refresh_token}, what="token refresh"
        )
        return self._tokens(result, refresh_token=refresh_token)

    def _tokens(self, result: dict[str, Any], *, refresh_token: str | None) -> Tokens:
        try:
            return Tokens(
                id_token=str(result["IdToken"]),
                access_token=str(result.get("AccessToken", "")),
                # Cognito omits the refresh token from a refresh answer.
                refresh_token=str(result.get("RefreshToken") or refresh_token or ""),
                expires_at=self._clock() + float(result.get("ExpiresIn", 3600)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AuthError(f"Cognito answered without usable tokens: {exc!r}") from exc


class CognitoSession:
    """An :class:`IdTokenSource` over Cognito: signs in once, then refreshes lazily.

    Give a password, a refresh token, or both. With both, a refresh token
    that Cognito stopped accepting (revoked, expired after 30 days) falls
    back to signing in with the password. ``on_tokens`` is told about every
    new token set, so a tray app can keep the refresh token in the keyring.
    """

    def __init__(
        self,
        auth: CognitoAuth,
        *,
        username: str | None = None,
        password: str | None = None,
        refresh_token: str | None = None,
        on_tokens: Callable[[Tokens], None] | None = None,
    ) -> None:
        if not refresh_token and not (username and password):
            raise AuthError("give a username and password, or a refresh token")
        self._auth = auth
        self._username = username
        self._password = password
        self._refresh_token = refresh_token
        self._on_tokens = on_tokens
        self._tokens: Tokens | None = None
        self._lock = threading.Lock()

    @property
    def tokens(self) -> Tokens | None:
        return self._tokens

    def sign_in(self) -> Tokens:
        """Get tokens now (instead of on first use), e.g. to fail fast on a bad password."""
        with self._lock:
            return self._renew()

    def id_token(self, *, force_refresh: bool = False) -> str:
        with self._lock:
            tokens = self._tokens
            if force_refresh or tokens is None or not tokens.fresh():
                tokens = self._renew()
            return tokens.id_token

    def _renew(self) -> Tokens:
        tokens: Tokens | None = None
        if self._refresh_token:
            try:
                tokens = self._auth.refresh(self._refresh_token)
            except AuthError:
                if not (self._username and self._password):
                    raise
        if tokens is None:
            if not (self._username and self._password):
                raise AuthError("no refresh token and no password to sign in with")
            tokens = self._auth.sign_in(self._username, self._password)
        self._tokens = tokens
        self._refresh_token = tokens.refresh_token or self._refresh_token
        if self._on_tokens is not None:
            self._on_tokens(tokens)
        return tokens
