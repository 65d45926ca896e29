"""The one exception hierarchy of the ``iotnotify`` package.

Callers catch :class:`IotNotifyError` to handle anything this package raises;
third-party errors (botocore, paho-mqtt, aiohttp) are translated at the
boundary with ``raise ... from exc`` so their types never leak.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConnectionLost",
    "ContractError",
    "Forbidden",
    "InvalidArgument",
    "InvalidClientId",
    "InvalidEnvelope",
    "InvalidJson",
    "InvalidTopic",
    "InvalidUserId",
    "IotNotifyError",
    "PayloadTooLarge",
    "PublishError",
    "SessionTakenOver",
    "SubscriptionRefused",
    "Throttled",
    "UnknownUser",
]


class IotNotifyError(Exception):
    """Base of every error this package raises on purpose."""


class ContractError(IotNotifyError, ValueError):
    """A value breaks the wire contract (user id, client id, topic, envelope)."""


class InvalidArgument(IotNotifyError, ValueError):
    """An option given to the SDK outside the values it documents (a caller's
    mistake, e.g. a negative keepalive); raised when the object is made."""


class InvalidUserId(ContractError):
    """A user id outside ``^[A-Za-z0-9_-]{1,64}$``."""


class InvalidClientId(ContractError):
    """A client id that is not ``{userId}.{suffix}`` or breaks IoT's limits."""


class InvalidTopic(ContractError):
    """A topic or topic filter that MQTT or AWS IoT Core would refuse."""


class InvalidEnvelope(ContractError):
    """A payload that is not a valid notification envelope."""


class InvalidJson(ContractError):
    """Text that is not strict JSON: NaN/Infinity, lone surrogates, too deep, malformed."""


class PayloadTooLarge(ContractError):
    """A payload over AWS IoT Core's 128 KB message limit."""


class PublishError(IotNotifyError):
    """Publishing to AWS IoT Core (or the inbox) failed."""


class AuthError(IotNotifyError):
    """Sign-in failed or credentials were refused."""


class Forbidden(IotNotifyError):
    """The service understood the request and refused it (HTTP 403 or MQTT refusal)."""


class Throttled(IotNotifyError):
    """The service asked us to slow down (HTTP 429 or throttling error)."""


class ConnectionLost(IotNotifyError):
    """An MQTT or HTTP connection dropped; callers reconnect on this."""


class SessionTakenOver(ConnectionLost):
    """The server dropped us for a newer connection with our client id (DUPLICATE_CLIENTID).

    Subscribers draw a client id per process, so this means another program
    was given the same ``client_id``/``device_id`` explicitly.
    """


class SubscriptionRefused(Forbidden):
    """The server refused a SUBSCRIBE to ``topics`` (SUBACK 0x80, or on MQTT 3.1.1
    AWS IoT closes the connection). The subscriber keeps the other topics and
    stops asking for these."""

    def __init__(self, message: str, topics: tuple[str, ...]) -> None:
        super().__init__(message)
        self.topics = topics


class UnknownUser(IotNotifyError):
    """A recipient nobody in the user pool has (no such name, e-mail or user id)."""
