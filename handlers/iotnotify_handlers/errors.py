"""The exception hierarchy of the Lambda handlers, mapped to HTTP in one place.

Domain code raises these (or the wire contract's :class:`ContractError`);
:mod:`iotnotify_handlers.http` turns them into ``{"error", "message"}``
responses with the right status.
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "HandlerError",
    "NotFound",
    "PayloadTooLarge",
    "QuotaExceeded",
    "ServiceUnavailable",
    "Unauthorized",
    "UnsupportedMediaType",
]


class HandlerError(Exception):
    """Base of every error a handler answers with a JSON error body."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(HandlerError):
    status = 400
    code = "bad_request"


class Unauthorized(HandlerError):
    status = 401
    code = "unauthorized"


class Forbidden(HandlerError):
    status = 403
    code = "forbidden"


class QuotaExceeded(HandlerError):
    """The caller used up a per-user allowance (rooms created, ...)."""

    status = 403
    code = "quota_exceeded"


class NotFound(HandlerError):
    status = 404
    code = "not_found"


class Conflict(HandlerError):
    status = 409
    code = "conflict"


class PayloadTooLarge(HandlerError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(HandlerError):
    status = 415
    code = "unsupported_media_type"


class ServiceUnavailable(HandlerError):
    status = 503
    code = "service_unavailable"
