"""Signing in: Cognito user-pool tokens over Cognito's JSON API, and the ID-token seam.

:class:`CognitoAuth` speaks the user-pool API directly over HTTPS with the
standard library, not through boto3: InitiateAuth, RespondToAuthChallenge,
SignUp and ConfirmSignUp are *unsigned* operations (Amazon Cognito developer
guide, "Signed versus unsigned APIs"), so a player's desktop needs neither
AWS credentials nor botocore (about 30 MiB of RSS) to sign in. Each call is
one ``POST /`` to ``https://cognito-idp.{region}.amazonaws.com/`` with
``X-Amz-Target: AWSCognitoIdentityProviderService.<Operation>`` and
``Content-Type: application/x-amz-json-1.1`` (the protocol botocore's
``cognito-idp`` service model declares: ``"protocol": "json"``,
``"jsonVersion": "1.1"``, ``"targetPrefix": "AWSCognitoIdentityProviderService"``).
Errors come back as HTTP 4xx/5xx with a JSON body ``{"__type": code,
"message": text}`` (the code may carry a ``namespace#`` prefix) and the same
code in the ``x-amzn-ErrorType`` header. ``endpoint_url`` points it at moto
locally (moto's server routes unsigned requests by ``X-Amz-Target``).

:class:`CognitoSession` keeps the tokens and renews the ID token lazily when
it is asked for one, never on a timer: an idle tray app must not wake up
just to refresh tokens nobody uses.

Anything with an ``id_token()`` method (:class:`IdTokenSource`) can stand in,
so a game with its own sign-in can hand its tokens to the SDK.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from iotnotify.display_text import one_line
from iotnotify.errors import AuthError, ConnectionLost, Forbidden, IotNotifyError, Throttled
from iotnotify.tls import https_context

__all__ = [
    "Challenge",
    "ChallengeRequired",
    "CognitoAuth",
    "CognitoSession",
    "IdTokenSource",
    "SignUpResult",
    "StaticIdToken",
    "Tokens",
    "cognito_endpoint",
]

# Renew this long before the ID token's expiry, so a token is never sent
# that expires in flight or on a slightly fast server clock.
_EXPIRY_MARGIN_SECONDS: Final = 60.0
_TARGET_PREFIX: Final = "AWSCognitoIdentityProviderService"
_CONTENT_TYPE: Final = "application/x-amz-json-1.1"
_DEFAULT_TIMEOUT: Final = 20.0
# Transient failures (connection refused/reset, 5xx, throttling) are retried
# this many times in all, like botocore's "standard" retry mode did.
_ATTEMPTS: Final = 3
_RETRY_BASE_SECONDS: Final = 0.25
_AUTH_ERRORS: Final = frozenset(
    {
        "NotAuthorizedException",
        "UserNotFoundException",
        "UserNotConfirmedException",
        "PasswordResetRequiredException",
        "InvalidPasswordException",
        "UsernameExistsException",
        "CodeMismatchException",
        "ExpiredCodeException",
        "InvalidParameterException",
        "ResourceNotFoundException",
    }
)
_THROTTLE_ERRORS: Final = frozenset(
    {"TooManyRequestsException", "LimitExceededException", "TooManyFailedAttemptsException"}
)


def cognito_endpoint(region: str) -> str:
    """The public user-pool endpoint of ``region`` (AWS general reference, Cognito endpoints)."""
    if not region or "/" in region:
        raise AuthError(f"not an AWS region: {region!r}")
    return f"https://cognito-idp.{region}.amazonaws.com/"


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


@dataclass(frozen=True, slots=True)
class Challenge:
    """A challenge Cognito answered instead of tokens (e.g. ``NEW_PASSWORD_REQUIRED``).

    Answer it with :meth:`CognitoAuth.respond_to_challenge`, passing
    ``session`` back unchanged.
    """

    name: str
    session: str
    parameters: Mapping[str, str] = field(default_factory=dict)


class ChallengeRequired(AuthError):
    """Sign-in needs one more step; ``challenge`` says which."""

    def __init__(self, message: str, challenge: Challenge) -> None:
        super().__init__(message)
        self.challenge = challenge


@dataclass(frozen=True, slots=True)
class SignUpResult:
    """SignUp's answer: the new user's ``sub`` and whether it still needs a code."""

    user_sub: str
    confirmed: bool


def _error_code(raw: Mapping[str, Any], header: str | None) -> str:
    # "__type" is "NotAuthorizedException" or "ns#NotAuthorizedException";
    # the header is "NotAuthorizedException:http://internal.amazon.com/...".
    code = str(raw.get("__type") or raw.get("code") or "")
    if not code and header:
        code = header.split(":", 1)[0]
    return code.rsplit("#", 1)[-1]


def _translate(status: int, code: str, message: str, *, what: str) -> IotNotifyError:
    """One place that maps Cognito's error codes onto this package's hierarchy."""
    message = message or code or f"HTTP {status}"
    if code in _THROTTLE_ERRORS or status == 429:
        return Throttled(f"{what} throttled: {message}")
    if code in _AUTH_ERRORS:
        return AuthError(f"{what} refused: {message}")
    if status == 403:
        return Forbidden(f"{what} forbidden: {message}")
    if status >= 500:
        return ConnectionLost(f"{what} failed on the server ({status}): {message}")
    return AuthError(f"{what} failed: {code or status}: {message}")


class CognitoAuth:
    """The user-pool calls the SDK needs, for one app client (no AWS credentials).

    ``endpoint_url`` overrides the regional endpoint (moto, a VPC endpoint);
    ``ca_file`` is a CA bundle to trust for an ``https://`` override.
    Raises :class:`AuthError` for refusals, :class:`Throttled`,
    :class:`ConnectionLost` for network or server failures (after
    ``_ATTEMPTS`` tries).
    """

    def __init__(
        self,
        *,
        client_id: str,
        region: str,
        endpoint_url: str | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = _DEFAULT_TIMEOUT,
        ca_file: str | None = None,
    ) -> None:
        if not client_id:
            raise AuthError("no user-pool app client id")
        self.client_id = client_id
        self.region = region
        self.endpoint_url = endpoint_url or cognito_endpoint(region)
        self._clock = clock
        self._timeout = timeout
        # The shared context (iotnotify.tls), built here so that a bad ca_file
        # fails at construction; None for plain http://.
        self._ssl = https_context(self.endpoint_url, ca_file)

    @classmethod
    def from_state_file(cls, path: str | Path | None = None) -> CognitoAuth:
        """The app client of a running ``iotnotify local`` (its state file; default
        ``.iotnotify/local.json``). Raises ``StateFileError`` when there is none."""
        from iotnotify.state_file import DEFAULT_STATE_FILE, LocalState

        state = LocalState.read(Path(path) if path else DEFAULT_STATE_FILE)
        return cls(
            client_id=state.userPoolClientId,
            region=state.region,
            endpoint_url=state.awsEndpointUrl,
        )

    # --- the wire ------------------------------------------------------------------

    def _call(self, operation: str, body: Mapping[str, Any], *, what: str) -> dict[str, Any]:
        data = json.dumps(body).encode("utf-8")
        request = urllib.request.Request(  # noqa: S310 - the scheme comes from configuration
            self.endpoint_url,
            data=data,
            method="POST",
            headers={
                "Content-Type": _CONTENT_TYPE,
                "X-Amz-Target": f"{_TARGET_PREFIX}.{operation}",
                "Accept": "application/json",
            },
        )
        last: IotNotifyError | None = None
        for attempt in range(1, _ATTEMPTS + 1):
            if attempt > 1:
                time.sleep(_RETRY_BASE_SECONDS * 2 ** (attempt - 2))
            try:
                with urllib.request.urlopen(  # noqa: S310
                    request, timeout=self._timeout, context=self._ssl
                ) as answer:
                    payload = answer.read()
            except urllib.error.HTTPError as exc:
                raw = _json_object(exc.read())
                code = _error_code(raw, exc.headers.get("x-amzn-ErrorType"))
                error = _translate(exc.code, code, str(raw.get("message", "")), what=what)
                if not isinstance(error, ConnectionLost | Throttled):
                    raise error from exc
                last = error
                continue
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last = ConnectionLost(f"{what} failed: cannot reach {self.endpoint_url}: {reason}")
                last.__cause__ = exc
                continue
            return _json_object(payload)
        assert last is not None
        raise last

    # --- operations ----------------------------------------------------------------

    def _initiate(self, flow: str, parameters: dict[str, str], *, what: str) -> Tokens:
        answer = self._call(
            "InitiateAuth",
            {"ClientId": self.client_id, "AuthFlow": flow, "AuthParameters": parameters},
            what=what,
        )
        return self._tokens_or_challenge(answer, refresh_token=parameters.get("REFRESH_TOKEN"))

    def sign_in(self, username: str, password: str) -> Tokens:
        """USER_PASSWORD_AUTH; the pool uses e-mail addresses as usernames.

        Raises :class:`ChallengeRequired` when Cognito wants another step
        (``NEW_PASSWORD_REQUIRED`` after an admin-created account).
        """
        return self._initiate(
            "USER_PASSWORD_AUTH", {"USERNAME": username, "PASSWORD": password}, what="sign-in"
        )

    def refresh(self, refresh_token: str) -> Tokens:
        """REFRESH_TOKEN_AUTH: new ID and access tokens, same refresh token."""
        return self._initiate(
            "REFRESH_TOKEN_AUTH", {"REFRESH_TOKEN": refresh_token}, what="token refresh"
        )

    def respond_to_challenge(self, challenge: Challenge, responses: Mapping[str, str]) -> Tokens:
        """RespondToAuthChallenge, e.g. ``{"USERNAME": u, "NEW_PASSWORD": p}``."""
        answer = self._call(
            "RespondToAuthChallenge",
            {
                "ClientId": self.client_id,
                "ChallengeName": challenge.name,
                "Session": challenge.session,
                "ChallengeResponses": dict(responses),
            },
            what=f"{challenge.name} challenge",
        )
        return self._tokens_or_challenge(answer, refresh_token=None)

    def sign_up(
        self, username: str, password: str, *, attributes: Mapping[str, str] | None = None
    ) -> SignUpResult:
        """SignUp; a pool with e-mail usernames gets ``email`` set from ``username``."""
        attrs = dict(attributes or {})
        if "@" in username:
            attrs.setdefault("email", username)
        answer = self._call(
            "SignUp",
            {
                "ClientId": self.client_id,
                "Username": username,
                "Password": password,
                "UserAttributes": [{"Name": k, "Value": v} for k, v in attrs.items()],
            },
            what="sign-up",
        )
        return SignUpResult(
            user_sub=str(answer.get("UserSub", "")), confirmed=bool(answer.get("UserConfirmed"))
        )

    def confirm_sign_up(self, username: str, code: str) -> None:
        """ConfirmSignUp with the code Cognito sent."""
        self._call(
            "ConfirmSignUp",
            {"ClientId": self.client_id, "Username": username, "ConfirmationCode": code},
            what="sign-up confirmation",
        )

    def _tokens_or_challenge(self, answer: dict[str, Any], *, refresh_token: str | None) -> Tokens:
        result = answer.get("AuthenticationResult")
        if not isinstance(result, dict) or not result:
            name = str(answer.get("ChallengeName") or "unknown")
            params = answer.get("ChallengeParameters") or {}
            challenge = Challenge(
                name=name,
                session=str(answer.get("Session", "")),
                parameters={str(k): str(v) for k, v in dict(params).items()},
            )
            raise ChallengeRequired(f"sign-in needs the {name} challenge answered", challenge)
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


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        raw = json.loads(payload) if payload else {}
    except (UnicodeDecodeError, ValueError, RecursionError):
        raw = {"message": payload[:4096].decode("utf-8", "replace")}
    if not isinstance(raw, dict):
        return {}
    message = raw.get("message")
    if isinstance(message, str):
        # Shown in one error line: the server's text, not ours (newlines,
        # an HTML page, terminal escapes).
        raw["message"] = one_line(message)
    return raw


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

    def sign_in_unless_offline(self) -> ConnectionLost | Throttled | None:
        """Sign in now, unless the user pool cannot be reached: the start of an
        always-on client (``iotnotify listen``, the tray), which must not end
        because it started before the network (aws-iot-device-sdk-python-v2
        issue 226: devices that boot without a network).

        Raises what cannot be retried away (:class:`AuthError`: a refused
        password, a revoked refresh token), so it is reported at once. Returns
        the outage instead of raising it (:class:`ConnectionLost`: no route,
        DNS failure, connection refused, a 5xx; :class:`Throttled`), after
        :class:`CognitoAuth`'s own few tries; the session then signs in on its
        next :meth:`id_token` call, which a
        :class:`~iotnotify.subscriber.Subscriber` makes at every token fetch
        and retries with its backoff until the network is back. None when
        signed in.
        """
        try:
            self.sign_in()
        except (ConnectionLost, Throttled) as exc:
            return exc
        return None

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
