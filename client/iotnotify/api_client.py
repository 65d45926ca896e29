"""The subscriber's side of the HTTP API: ``GET /token`` and ``GET /notifications``.

Plain ``urllib`` on purpose: both calls are rare (one per (re)connect), the
subscriber's threads are synchronous, and an idle desktop app should not
carry an HTTP stack it does not need. HTTP and network errors are mapped
onto the package's hierarchy here, at the boundary.

:class:`TokenProvider` and :class:`InboxReader` are the seams: a game that
vends connection tokens its own way implements ``token()`` and hands that
to :class:`~iotnotify.subscriber.Subscriber` instead of :class:`ApiClient`.
"""

from __future__ import annotations

import email.utils
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from iotnotify.auth import IdTokenSource
from iotnotify.contract import Notification
from iotnotify.errors import (
    AuthError,
    ConnectionLost,
    Forbidden,
    InvalidEnvelope,
    IotNotifyError,
    Throttled,
)
from iotnotify.tls import https_context

__all__ = [
    "MAX_ANSWER_BYTES",
    "ApiClient",
    "ConnectionToken",
    "InboxPage",
    "InboxReader",
    "TokenProvider",
    "error_message",
    "http_error",
    "open_without_redirects",
    "read_answer",
]

_DEFAULT_TIMEOUT: Final = 15.0
# API Gateway's REST API payload limit (10 MB, "Amazon API Gateway quotas");
# Lambda's synchronous response limit (6 MB) is below it. An answer larger
# than any the API can send is not read into the always-on client's memory.
MAX_ANSWER_BYTES: Final = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ConnectionToken:
    """The token response of ``GET /token`` (see DESIGN.md), typed."""

    url: str
    client_id_prefix: str
    topics: tuple[str, ...]
    keepalive: int | None = None
    endpoint: str = ""
    region: str = ""
    expiration: str = ""
    access_key_id: str = ""
    # The API's clock when it answered, as a ``time.time()`` value: the
    # response's ``serverTime`` (epoch ms), else its HTTP ``Date`` header
    # (RFC 9110 6.6.1, whole seconds); None if it sent neither.
    server_time: float | None = None

    @classmethod
    def from_response(
        cls, raw: Mapping[str, Any], *, server_time: float | None = None
    ) -> ConnectionToken:
        try:
            credentials = raw.get("credentials") or {}
            if not isinstance(credentials, Mapping):
                raise TypeError("credentials is not an object")
            keepalive = raw.get("keepalive")
            server_ms = raw.get("serverTime")
            if isinstance(server_ms, int) and not isinstance(server_ms, bool) and server_ms > 0:
                server_time = server_ms / 1000
            if keepalive is not None and int(keepalive) < 0:
                # MQTT's Keep Alive is unsigned: no server means a negative one.
                raise ValueError(f"keepalive {keepalive!r} is negative")
            topics = raw["topics"]
            if isinstance(topics, str) or not isinstance(topics, Sequence):
                raise TypeError("topics is not a list")
            return cls(
                url=str(raw["url"]),
                client_id_prefix=str(raw["clientIdPrefix"]),
                topics=tuple(str(topic) for topic in topics),
                keepalive=int(keepalive) if keepalive is not None else None,
                endpoint=str(raw.get("endpoint", "")),
                region=str(raw.get("region", "")),
                expiration=str(credentials.get("expiration", "")),
                access_key_id=str(credentials.get("accessKeyId", "")),
                server_time=server_time,
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            # OverflowError: JSON's Infinity (json.loads accepts it) as a keepalive.
            raise AuthError(f"the token response is not usable: {exc!r}") from exc

    @property
    def user_id(self) -> str:
        """The user the token is for: its client-id prefix without the dot."""
        return self.client_id_prefix.removesuffix(".")


@dataclass(frozen=True, slots=True)
class InboxPage:
    notifications: tuple[Notification, ...]
    next: str | None


@runtime_checkable
class TokenProvider(Protocol):
    """Returns a fresh connection token; called once per (re)connect, from one
    of the subscriber's threads (never two calls at once). Raise
    :class:`~iotnotify.errors.ConnectionLost` or ``Throttled`` for what is
    worth retrying, ``AuthError``/``Forbidden`` for a refusal."""

    def token(self) -> ConnectionToken: ...


@runtime_checkable
class InboxReader(Protocol):
    """Reads the signed-in user's inbox: ids greater than ``since``, oldest first."""

    def notifications(self, *, since: str | None, limit: int) -> InboxPage: ...


def error_message(body: bytes) -> str:
    """The ``message`` (else ``error``) of an API error body, else the body itself,
    as one printable line of at most 200 characters (:func:`one_line`: an
    HTML error page or a message with newlines or terminal escapes is a
    server's text, not ours)."""
    from iotnotify.display_text import one_line

    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return one_line(body[:4096].decode("utf-8", "replace"))
    if isinstance(raw, dict):
        return one_line(str(raw.get("message") or raw.get("error") or raw))
    return one_line(str(raw))


class ApiClient:
    """``TokenProvider`` and ``InboxReader`` over the iotnotify HTTP API."""

    def __init__(
        self,
        *,
        api_url: str,
        id_tokens: IdTokenSource,
        timeout: float = _DEFAULT_TIMEOUT,
        ca_file: str | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._id_tokens = id_tokens
        self._timeout = timeout
        # The shared context (iotnotify.tls), built here so that a bad ca_file
        # fails at construction; None for plain http://.
        self._ssl = https_context(self.api_url, ca_file)

    def token(self) -> ConnectionToken:
        headers: dict[str, str] = {}
        raw = self._get("/token", headers=headers)
        return ConnectionToken.from_response(raw, server_time=_http_date(headers.get("date")))

    def notifications(self, *, since: str | None, limit: int = 100) -> InboxPage:
        query: dict[str, str] = {"limit": str(limit)}
        if since:
            query["since"] = since
        raw = self._get("/notifications?" + urllib.parse.urlencode(query))
        try:
            notes = tuple(Notification.from_dict(item) for item in raw["notifications"])
            next_since = raw.get("next")
        except (KeyError, TypeError) as exc:
            raise InvalidEnvelope(f"unexpected /notifications answer: {exc!r}") from exc
        return InboxPage(notifications=notes, next=str(next_since) if next_since else None)

    def _get(self, path: str, *, headers: dict[str, str] | None = None) -> dict[str, Any]:
        # One retry with a renewed ID token: the cached one may have expired
        # between our freshness check and the authorizer's.
        for attempt in (1, 2):
            token = self._id_tokens.id_token(force_refresh=attempt == 2)
            request = urllib.request.Request(  # noqa: S310 - the scheme comes from configuration
                self.api_url + path,
                headers={"Authorization": token, "Accept": "application/json"},
            )
            try:
                with open_without_redirects(
                    request, timeout=self._timeout, context=self._ssl
                ) as answer:
                    body = read_answer(answer, f"GET {path.split('?')[0]}")
                    if headers is not None:
                        headers.update({k.lower(): v for k, v in answer.headers.items()})
            except urllib.error.HTTPError as exc:
                message = error_message(exc.read())
                if exc.code == 401 and attempt == 1:
                    continue
                raise http_error(exc.code, f"GET {path.split('?')[0]}", message) from exc
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                raise ConnectionLost(f"GET {path.split('?')[0]} failed: {exc}") from exc
            try:
                raw = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
                # RecursionError: JSON nested deeper than the parser recurses.
                raise ConnectionLost(f"GET {path.split('?')[0]} answered non-JSON") from exc
            if not isinstance(raw, dict):
                raise ConnectionLost(f"GET {path.split('?')[0]} answered non-object JSON")
            return raw
        raise AssertionError("unreachable")  # pragma: no cover


def read_answer(answer: Any, route: str) -> bytes:
    """The body of ``answer``, at most :data:`MAX_ANSWER_BYTES`; a larger one
    raises :class:`ConnectionLost` (retried like a 5xx) after reading one byte
    more than the limit, not all of it."""
    body: bytes = answer.read(MAX_ANSWER_BYTES + 1)
    if len(body) > MAX_ANSWER_BYTES:
        raise ConnectionLost(
            f"{route} answered more than {MAX_ANSWER_BYTES // (1024 * 1024)} MiB, "
            "more than API Gateway can send"
        )
    return body


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Follows no redirect: the 3xx reaches the caller as an ``HTTPError``."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


def open_without_redirects(
    request: urllib.request.Request, *, timeout: float, context: ssl.SSLContext | None
) -> Any:
    """``urllib.request.urlopen`` that follows no redirect (a 3xx raises ``HTTPError``).

    The API never redirects, and urllib's redirect handler copies every header
    but the body's, ``Authorization`` (the user's ID token) included, to
    whatever host a ``Location`` names, over plain ``http://`` too: a captive
    portal or a misconfigured proxy in front of the API URL would receive it.
    """
    handlers: list[urllib.request.BaseHandler] = [_NoRedirects()]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers).open(request, timeout=timeout)


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def http_error(status: int, route: str, message: str) -> IotNotifyError:
    """The SDK error for an API answer of ``status`` to ``route`` (``"GET /token"``):
    401 :class:`AuthError`, 403 :class:`Forbidden`, 429 :class:`Throttled`, 5xx
    :class:`ConnectionLost` (worth a retry with backoff, like a dropped
    connection), anything else :class:`IotNotifyError`."""
    if status == 401:
        return AuthError(f"{route}: not signed in: {message}")
    if status == 403:
        return Forbidden(f"{route}: forbidden: {message}")
    if status == 429:
        return Throttled(f"{route}: throttled: {message}")
    if status >= 500:
        return ConnectionLost(f"{route}: server error {status}: {message}")
    return IotNotifyError(f"{route}: HTTP {status}: {message}")
