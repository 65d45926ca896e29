"""API Gateway REST proxy events in, JSON responses out, errors mapped once.

Every HTTP handler is ``@api_handler``-wrapped: it receives a parsed
:class:`Request` and returns ``(status, body)``; any :class:`HandlerError` or
contract error becomes ``{"error": code, "message": text}`` with its status,
and anything unexpected is logged with its traceback and answered with a
generic 500 that leaks nothing.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Final

from aws_lambda_powertools import Logger

from iotnotify.contract import loads_strict, validate_user_id
from iotnotify.errors import ContractError, InvalidUserId
from iotnotify.errors import PayloadTooLarge as ContractPayloadTooLarge
from iotnotify_handlers.errors import (
    BadRequest,
    HandlerError,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from iotnotify_handlers.settings import settings

__all__ = [
    "MAX_BODY_BYTES",
    "Request",
    "Response",
    "api_handler",
    "json_response",
    "reject_unknown_fields",
]

logger = Logger(service="iotnotify")

# The largest valid body, a notify: an envelope of up to 128 KB (its UTF-8
# JSON, MAX_PAYLOAD_BYTES) written by a client that escapes every non-ASCII
# character (json.dumps's default: \uXXXX, 6 bytes for a 2-byte character,
# 12 for a 4-byte one; at most 3x, 384 KB) plus 1,000 recipients of up to 64
# characters (67 KB). 1 MiB leaves room for pretty-printing; anything larger
# is abuse, refused (413) before it is parsed. API Gateway's own cap is 10 MB.
MAX_BODY_BYTES: Final = 1024 * 1024

Response = dict[str, Any]


def reject_unknown_fields(raw: Mapping[str, Any], allowed: AbstractSet[str]) -> None:
    """Raise :class:`BadRequest` (400) naming the fields of ``raw`` not in ``allowed``.

    Every route with a JSON body refuses fields it does not know: a typo
    such as ``"Private": true`` would otherwise make a public room, silently.
    """
    unknown = sorted(set(raw) - allowed)
    if unknown:
        # A few names, each shortened: the message must not echo a 1 MiB body.
        names = ", ".join(n if len(n) <= 40 else f"{n[:40]}..." for n in unknown[:5])
        more = f" and {len(unknown) - 5} more ({len(unknown)} in all)" if len(unknown) > 5 else ""
        raise BadRequest(f"unknown field(s): {names}{more}")


_JSON_HEADERS: Final = {
    "Content-Type": "application/json",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class Request:
    """The parts of a REST proxy event the handlers use."""

    method: str
    path: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    raw_body: bytes
    claims: Mapping[str, Any]
    iam_user_arn: str | None
    resource: str = ""
    path_parameters: Mapping[str, str] = field(default_factory=dict)
    # Lower-case names of headers sent more than once (``headers`` holds the last).
    repeated_headers: frozenset[str] = frozenset()

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Request:
        body = event.get("body") or ""
        if event.get("isBase64Encoded"):
            try:
                raw = base64.b64decode(body)
            except ValueError as exc:
                raise BadRequest("body is not valid base64") from exc
        else:
            raw = body.encode("utf-8")
        context = event.get("requestContext") or {}
        authorizer = context.get("authorizer") or {}
        identity = context.get("identity") or {}
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        # API Gateway passes a repeated key's last value in
        # queryStringParameters and every value in the multi-value map
        # (developer guide, "Support for multi-value headers and query string
        # parameters"). Reading the last alone half-answers `?rooms=a&rooms=b`
        # (a token for b only), so a repeated key is refused instead.
        multi = event.get("multiValueQueryStringParameters") or {}
        repeated = sorted(str(k) for k, values in multi.items() if len(values or ()) > 1)
        if repeated:
            raise BadRequest(
                f"query parameter(s) given more than once: {', '.join(repeated)}; "
                "give each once (a list is comma-separated: rooms=a,b)"
            )
        return cls(
            method=str(event.get("httpMethod", "")),
            path=str(event.get("path", "")),
            headers=headers,
            query=dict(event.get("queryStringParameters") or {}),
            raw_body=raw,
            claims=dict(authorizer.get("claims") or {}),
            iam_user_arn=identity.get("userArn") or None,
            resource=str(event.get("resource", "")),
            path_parameters={
                str(k): str(v) for k, v in (event.get("pathParameters") or {}).items()
            },
            repeated_headers=frozenset(
                str(k).lower()
                for k, values in (event.get("multiValueHeaders") or {}).items()
                if len(values or ()) > 1
            ),
        )

    def user_id(self) -> str:
        """The caller's user id: the ``sub`` claim the Cognito authorizer verified."""
        if "sub" not in self.claims:
            raise Unauthorized("no verified identity: the token carries no 'sub' claim")
        try:
            return validate_user_id(self.claims["sub"])
        except InvalidUserId as exc:
            raise BadRequest(str(exc)) from exc

    def json(self) -> Any:
        """The body as strict JSON: 413 over ``MAX_BODY_BYTES``, 415 when the
        ``Content-Type`` names another format, 400 when empty or not JSON."""
        media_type = self.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        # No Content-Type is read as JSON; a declared other format is not
        # guessed at (RFC 9110 15.5.16). `curl -d` without -H sends
        # form-urlencoded: the message says what to send.
        if media_type and media_type != "application/json" and not media_type.endswith("+json"):
            raise UnsupportedMediaType(
                f"the body is declared as {media_type[:64]!r}; send it as JSON with "
                "Content-Type: application/json"
            )
        if len(self.raw_body) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"request body is over {MAX_BODY_BYTES} bytes")
        if not self.raw_body:
            raise BadRequest("request body is empty; expected JSON")
        # Strict JSON at the edge, for every route and every text field in it:
        # no NaN/Infinity, no lone surrogates, bounded nesting.
        try:
            return loads_strict(self.raw_body, what="request body")
        except ContractError as exc:
            raise BadRequest(str(exc)) from exc


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    cors = {"Access-Control-Allow-Origin": settings().cors_origin}
    return {
        "statusCode": status,
        "headers": {**_JSON_HEADERS, **cors, **(headers or {})},
        # allow_nan=False: a response is always JSON any client can parse.
        "body": json.dumps(body, separators=(",", ":"), allow_nan=False),
    }


def _error(status: int, code: str, message: str) -> Response:
    return json_response(status, {"error": code, "message": message})


Handler = Callable[[Request], tuple[int, Any]]
LambdaHandler = Callable[[Mapping[str, Any], Any], Response]


def api_handler(func: Handler) -> LambdaHandler:
    """Wrap a ``Request -> (status, body)`` function as a Lambda proxy handler."""

    @functools.wraps(func)
    def wrapper(event: Mapping[str, Any], context: Any = None) -> Response:
        try:
            status, body = func(Request.from_event(event))
        except HandlerError as exc:
            logger.info("request refused", extra={"status": exc.status, "error": exc.code})
            return _error(exc.status, exc.code, exc.message)
        except ContractPayloadTooLarge as exc:
            return _error(413, "payload_too_large", str(exc))
        except ContractError as exc:
            return _error(400, "bad_request", str(exc))
        except Exception:
            logger.exception("unhandled error")
            return _error(500, "internal_error", "internal error")
        return json_response(status, body)

    return wrapper
