"""What an MQTT 5 connection adds to a session: AWS IoT Core's CONNACK, topic
aliases, subscription options, forwarded properties, reason codes.

Kept apart from :mod:`iotnotify_emulator.broker` (which owns the behaviour
both versions share: IAM, limits, routing) so that version-specific rules
live in one place. Sources:

* OASIS MQTT Version 5.0 (sections cited per function).
* AWS IoT developer guide, "MQTT" -> "MQTT 5 supported features",
  "MQTT 5 properties" and "MQTT reason codes"; AWS general reference,
  "AWS IoT Core endpoints and quotas" (message broker). AWS IoT Core accepts
  QoS 0 and 1 only (Maximum QoS 1), does not support Subscription
  Identifiers (re:Post "mqtt5 subscription identifiers": the CONNACK says
  Subscription Identifier Available = 0), supports retained messages,
  wildcard and shared subscriptions, at most 8 topic aliases from a client,
  packets up to 146 KB, and always sends Server Keep Alive: the client's
  keepalive clamped to 30..1200 s, changed or not.
* botocore's ``iot-data`` model (``Publish``): how the HTTP API carries the
  MQTT 5 fields (:func:`properties_from_http`).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from iotnotify.contract import Topic
from iotnotify.errors import InvalidTopic
from iotnotify_emulator.mqtt import Connect, Disconnect, Publish
from iotnotify_emulator.mqtt5 import Properties, ReasonCode

__all__ = [
    "MAX_PACKET_SIZE",
    "MAX_USER_PROPERTIES_BYTES",
    "NO_LOCAL",
    "RECEIVE_MAXIMUM",
    "RETAIN_AS_PUBLISHED",
    "TOPIC_ALIAS_MAXIMUM",
    "HttpPropertiesError",
    "ProtocolViolation",
    "State5",
    "check_publish",
    "connack_properties",
    "disconnect_reason",
    "forwarded",
    "properties_from_http",
    "retain_handling",
]

# AWS IoT Core's values (module docstring). 146 KB = 149,504 bytes.
MAX_PACKET_SIZE: Final = 146 * 1024
TOPIC_ALIAS_MAXIMUM: Final = 8
# AWS quota "Maximum inbound unacknowledged QoS 1 publish requests" (100 per
# client), which AWS IoT Core's CONNACK carries as Receive Maximum (a real
# CONNACK, awscrt's log: ``receive_maximum=100``).
RECEIVE_MAXIMUM: Final = 100
# AWS quota "size of user properties" for MQTT 5 messages (8 KB).
MAX_USER_PROPERTIES_BYTES: Final = 8 * 1024
# AWS's persistent-session expiry default and cap (1 hour, adjustable on AWS).
MAX_SESSION_EXPIRY: Final = 3600
# Subscription option bits (section 3.8.3.1).
NO_LOCAL: Final = 0x04
RETAIN_AS_PUBLISHED: Final = 0x08


class ProtocolViolation(Exception):
    """A v5 peer broke a rule whose answer is DISCONNECT with ``reason_code``."""

    def __init__(self, message: str, reason_code: int) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class HttpPropertiesError(ValueError):
    """An iot-data request carries an MQTT 5 field that is not valid (HTTP 400)."""


@dataclass(slots=True)
class State5:
    """Per-connection MQTT 5 state, created from the CONNECT.

    ``max_packet_size``: the client's Maximum Packet Size (section
    3.1.2.11.4): larger PUBLISHes are not sent to it. ``receive_maximum``:
    its Receive Maximum (section 3.1.2.11.3), the cap on unacknowledged QoS 1
    PUBLISHes sent to it. ``problem_info``:
    Request Problem Information (section 3.1.2.11.7): when 0, reason
    strings are sent only on CONNACK, PUBLISH and DISCONNECT.
    """

    max_packet_size: int | None = None
    receive_maximum: int | None = None
    problem_info: bool = True
    session_expiry: int = 0
    aliases: dict[int, str] = field(default_factory=dict)
    # filter -> option bits beyond QoS (No Local, Retain As Published, Retain Handling)
    options: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_connect(cls, packet: Connect) -> State5:
        props = packet.properties or Properties()
        return cls(
            max_packet_size=props.maximum_packet_size,
            receive_maximum=props.receive_maximum,
            problem_info=props.request_problem_information != 0,
            session_expiry=min(props.session_expiry_interval or 0, MAX_SESSION_EXPIRY),
        )

    def disconnect_allowed(self, packet: Disconnect) -> bool:
        """Apply a client DISCONNECT's Session Expiry Interval (section 3.14.2.2.2).

        False when it is a Protocol Error: the CONNECT's interval was 0 and
        the DISCONNECT sets a non-zero one.
        """
        expiry = packet.properties.session_expiry_interval if packet.properties else None
        if expiry is None:
            return True
        if expiry and not self.session_expiry:
            return False
        self.session_expiry = min(expiry, MAX_SESSION_EXPIRY)
        return True

    def reason(self, text: str) -> Properties | None:
        """A Reason String for an ack, if the client did not turn them off."""
        return Properties(reason_string=text) if self.problem_info else None

    def resolve_topic(self, packet: Publish) -> str:
        """The topic of an inbound PUBLISH, applying its Topic Alias (section 3.3.2.3.4).

        Raises :class:`ProtocolViolation`: alias 0 or above
        :data:`TOPIC_ALIAS_MAXIMUM` is 0x94 Topic Alias invalid; an empty
        topic with an alias never set is 0x82 Protocol Error.
        """
        alias = packet.properties.topic_alias if packet.properties else None
        if alias is None:
            return packet.topic
        if not 0 < alias <= TOPIC_ALIAS_MAXIMUM:
            raise ProtocolViolation(
                f"topic alias {alias} outside 1..{TOPIC_ALIAS_MAXIMUM}",
                ReasonCode.TOPIC_ALIAS_INVALID,
            )
        if packet.topic:
            self.aliases[alias] = packet.topic
            return packet.topic
        topic = self.aliases.get(alias)
        if topic is None:
            raise ProtocolViolation(
                f"topic alias {alias} used before it was set", ReasonCode.PROTOCOL_ERROR
            )
        return topic


def connack_properties(
    packet: Connect, *, keepalive: int, assigned_client_id: str | None
) -> Properties:
    """The CONNACK properties AWS IoT Core sends (module docstring).

    Server Keep Alive always, also when it is the keepalive the client asked
    for (section 3.2.2.3.14 lets a server send it either way). Session Expiry
    Interval only when the server's differs from the request (section
    3.2.2.3.2). Receive Maximum
    :data:`RECEIVE_MAXIMUM` (section 3.2.2.3.3): without it a client assumes
    65,535 and may keep more unacknowledged QoS 1 publishes in flight than
    AWS accepts (AWS general reference, "AWS IoT Core endpoints and quotas",
    message broker: "Maximum inbound unacknowledged QoS 1 publish requests",
    100, "no new publish requests are accepted from this client until a
    PUBACK message is returned"). A CONNACK from AWS IoT Core, printed by
    awscrt's MQTT 5 client, carries ``receive_maximum=100``,
    ``maximum_packet_size=149504``, ``topic_alias_maximum=8``,
    ``server_keep_alive_sec=1200`` for the 1200 s the client asked for, and
    ``session_expiry_interval_sec=None`` for a requested 0 (a client built
    with ``awsiot.mqtt5_client_builder.mtls_from_path`` without a keepalive
    option, whose default is 1200: m-ochi-4/otameshi-aws-iot-provisioning,
    its JITP/JITR READMEs and ``resource/client_jit.py``).
    """
    requested = packet.properties or Properties()
    expiry = requested.session_expiry_interval or 0
    return Properties(
        session_expiry_interval=MAX_SESSION_EXPIRY if expiry > MAX_SESSION_EXPIRY else None,
        assigned_client_identifier=assigned_client_id,
        server_keep_alive=keepalive,
        receive_maximum=RECEIVE_MAXIMUM,
        topic_alias_maximum=TOPIC_ALIAS_MAXIMUM,
        maximum_qos=1,
        retain_available=1,
        maximum_packet_size=MAX_PACKET_SIZE,
        wildcard_subscription_available=1,
        subscription_identifier_available=0,
        shared_subscription_available=1,
    )


def check_publish(packet: Publish, topic: str) -> None:
    """Rules on an inbound v5 PUBLISH beyond the codec's.

    Raises :class:`ProtocolViolation`: a Subscription Identifier from a
    client is 0x82 (section 3.3.4: only the server sends it); a Response
    Topic with wildcards or over AWS's topic limits is 0x82 (section
    3.3.2.3.5); a payload marked UTF-8 that is not is 0x99 Payload format
    invalid (section 3.3.2.3.2); user properties over 8 KB are 0x97 Quota
    exceeded.
    """
    props = packet.properties
    if props is None:
        return
    if props.subscription_identifiers:
        raise ProtocolViolation(
            "a client PUBLISH must not carry a Subscription Identifier", ReasonCode.PROTOCOL_ERROR
        )
    if props.response_topic is not None:
        try:
            Topic(props.response_topic)
        except InvalidTopic as exc:
            raise ProtocolViolation(
                f"invalid response topic: {exc}", ReasonCode.PROTOCOL_ERROR
            ) from exc
    if props.payload_format_indicator == 1:
        try:
            packet.payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolViolation(
                f"payload on {topic} is marked UTF-8 but is not", ReasonCode.PAYLOAD_FORMAT_INVALID
            ) from exc
    size = sum(len(k.encode()) + len(v.encode()) for k, v in props.user_properties)
    if size > MAX_USER_PROPERTIES_BYTES:
        raise ProtocolViolation(
            f"user properties of {size} bytes exceed {MAX_USER_PROPERTIES_BYTES}",
            ReasonCode.QUOTA_EXCEEDED,
        )


def forwarded(props: Properties | None, *, received_at: float | None = None) -> Properties | None:
    """The properties a subscriber receives (section 3.3.2.3).

    Topic Alias and Subscription Identifiers belong to one connection and
    are dropped; Message Expiry Interval is reduced by the time the message
    waited (section 3.3.2.3.3; ``received_at`` is ``time.monotonic()``).
    Returns None when the message has expired.
    """
    if props is None:
        return None
    out = replace(props, topic_alias=None, subscription_identifiers=())
    if props.message_expiry_interval is not None and received_at is not None:
        left = props.message_expiry_interval - int(time.monotonic() - received_at)
        if left <= 0:
            return None
        out = replace(out, message_expiry_interval=left)
    return out


def retain_handling(options: int) -> int:
    """Retain Handling of a subscription's option bits: 0 send, 1 if new, 2 never."""
    return (options >> 4) & 0x03


def disconnect_reason(reason: str) -> int | None:
    """The reason code of the server's DISCONNECT for a lifecycle ``disconnectReason``.

    None: no DISCONNECT is sent (the client left, or the socket is gone).
    Section 4.13: a server that closes for an error SHOULD send DISCONNECT
    with a reason code first.
    """
    return _DISCONNECT_REASONS.get(reason)


_DISCONNECT_REASONS: Final[Mapping[str, int]] = {
    # iot-data DeleteConnection: the connection is ended by an administrator.
    "API_INITIATED_DISCONNECT": ReasonCode.ADMINISTRATIVE_ACTION,
    "AUTH_ERROR": ReasonCode.NOT_AUTHORIZED,
    "CLIENT_ERROR": ReasonCode.PROTOCOL_ERROR,
    "DUPLICATE_CLIENTID": ReasonCode.SESSION_TAKEN_OVER,
    "MQTT_KEEP_ALIVE_TIMEOUT": ReasonCode.KEEP_ALIVE_TIMEOUT,
    "SERVER_INITIATED_DISCONNECT": ReasonCode.SERVER_SHUTTING_DOWN,
    "WEBSOCKET_TTL_EXPIRATION": ReasonCode.MAXIMUM_CONNECT_TIME,
}


def properties_from_http(headers: Mapping[str, str], query: Mapping[str, str]) -> Properties | None:
    """The MQTT 5 properties of an iot-data ``Publish`` request.

    botocore's iot-data model (``Publish``): ``contentType``,
    ``responseTopic`` and ``messageExpiry`` (seconds) in the query;
    ``x-amz-mqtt5-user-properties`` (base64 of a JSON array of one-key
    objects, e.g. ``[{"deviceName": "alpha"}]``),
    ``x-amz-mqtt5-payload-format-indicator`` (``UNSPECIFIED_BYTES`` or
    ``UTF8_DATA``) and ``x-amz-mqtt5-correlation-data`` (base64) in headers.

    Raises :class:`HttpPropertiesError` for a value that cannot be decoded.
    """
    values: dict[str, object] = {}
    for name in ("contentType", "responseTopic"):
        if name in query:
            _check_mqtt_string(query[name], name)
    if "contentType" in query:
        values["content_type"] = query["contentType"]
    if "responseTopic" in query:
        try:
            Topic(query["responseTopic"])
        except InvalidTopic as exc:
            raise HttpPropertiesError(f"Invalid responseTopic: {exc}") from exc
        values["response_topic"] = query["responseTopic"]
    if "messageExpiry" in query:
        text = query["messageExpiry"]
        if not (text.isascii() and text.isdigit()) or int(text) > 0xFFFFFFFF:
            raise HttpPropertiesError(f"Invalid messageExpiry {text!r}")
        values["message_expiry_interval"] = int(text)
    indicator = headers.get("x-amz-mqtt5-payload-format-indicator")
    if indicator is not None:
        if indicator not in ("UNSPECIFIED_BYTES", "UTF8_DATA"):
            raise HttpPropertiesError(f"Invalid payloadFormatIndicator {indicator!r}")
        values["payload_format_indicator"] = int(indicator == "UTF8_DATA")
    correlation = headers.get("x-amz-mqtt5-correlation-data")
    if correlation is not None:
        try:
            values["correlation_data"] = base64.b64decode(correlation, validate=True)
        except binascii.Error as exc:
            raise HttpPropertiesError("correlationData is not base64") from exc
    encoded = headers.get("x-amz-mqtt5-user-properties")
    pairs: tuple[tuple[str, str], ...] = ()
    if encoded is not None:
        pairs = _user_properties(encoded)
    if not values and not pairs:
        return None
    return Properties(**values, user_properties=pairs)  # type: ignore[arg-type]


def _check_mqtt_string(text: str, what: str) -> None:
    """Refuse what an MQTT 5 UTF-8 Encoded String cannot carry (MQTT5 1.5.4).

    A lone surrogate cannot be encoded at all, and U+0000 makes the packet
    malformed for the receiver, which then closes its connection (paho does):
    one publish would disconnect every MQTT 5 subscriber of the topic.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise HttpPropertiesError(f"{what} is not valid Unicode (lone surrogate)") from exc
    if "\x00" in text:
        raise HttpPropertiesError(f"{what} contains U+0000, which MQTT 5 strings may not")


def _user_properties(encoded: str) -> tuple[tuple[str, str], ...]:
    try:
        items = json.loads(base64.b64decode(encoded, validate=True))
        if isinstance(items, str):
            # botocore JSON-encodes the value it is given (serialize.py,
            # jsonvalue headers), and boto3's documentation shows a JSON
            # *string*: such a value arrives encoded twice.
            items = json.loads(items)
    except (binascii.Error, ValueError) as exc:
        raise HttpPropertiesError("userProperties is not base64-encoded JSON") from exc
    if not isinstance(items, list):
        raise HttpPropertiesError("userProperties must be a JSON array of objects")
    pairs: list[tuple[str, str]] = []
    for item in items:
        if not isinstance(item, dict):
            raise HttpPropertiesError("userProperties must be a JSON array of objects")
        for key, value in item.items():
            if not isinstance(value, str):
                raise HttpPropertiesError(f"userProperties value of {key!r} must be a string")
            _check_mqtt_string(key, "userProperties key")
            _check_mqtt_string(value, "userProperties value")
            pairs.append((key, value))
    size = sum(len(k.encode()) + len(v.encode()) for k, v in pairs)
    if size > MAX_USER_PROPERTIES_BYTES:
        raise HttpPropertiesError(
            f"userProperties of {size} bytes exceed {MAX_USER_PROPERTIES_BYTES}"
        )
    return tuple(pairs)
