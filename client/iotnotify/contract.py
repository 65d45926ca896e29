"""The wire contract of iotnotify: the one place that spells topics and ids.

Everything that crosses a process boundary is defined here and nowhere else:
user ids, client ids, the topic scheme and AWS IoT Core's topic limits, MQTT
topic and topic-filter values with ``matches()``, IAM resource ARNs for IoT,
and the JSON notification envelope. The publisher, the Lambda handlers, the
CDK stack and the local emulator all import these, so a topic string is never
assembled by hand anywhere else.

Limits follow the AWS IoT Core quotas page: topics at most 256 UTF-8 bytes and
7 forward slashes, payloads at most 128 KB, client ids at most 128 bytes and
not starting with ``$``.
"""

from __future__ import annotations

import builtins
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, TypeGuard

from iotnotify.errors import (
    ContractError,
    InvalidArgument,
    InvalidClientId,
    InvalidEnvelope,
    InvalidJson,
    InvalidTopic,
    InvalidUserId,
    PayloadTooLarge,
)

if TYPE_CHECKING:  # pragma: no cover
    from ulid import ULID

__all__ = [
    "CHAT_MESSAGE_TYPE",
    "CHAT_REJECTED_TYPE",
    "DEFAULT_KEEPALIVE_SECONDS",
    "ENVELOPE_VERSION",
    "MAX_CHAT_CID_CHARS",
    "MAX_CHAT_TEXT_CHARS",
    "MAX_CLIENT_ID_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_PAYLOAD_BYTES",
    "MAX_TITLE_CHARS",
    "MAX_TOPIC_BYTES",
    "MAX_TOPIC_SLASHES",
    "MIN_CHAT_CID_CHARS",
    "Channel",
    "ChannelKind",
    "ChatMessage",
    "Notification",
    "Topic",
    "TopicFilter",
    "TopicScheme",
    "client_id_for",
    "client_id_prefix",
    "dumps_strict",
    "id_floor",
    "id_lower_bound",
    "id_millis",
    "iot_arn",
    "is_chat_cid",
    "is_notification_id",
    "loads_strict",
    "new_chat_cid",
    "new_notification_id",
    "own_notifications_topic",
    "quoted_excerpt",
    "user_of_client_id",
    "validate_chat_cid",
    "validate_client_suffix",
    "validate_name",
    "validate_notification_id",
    "validate_title",
    "validate_user_id",
]

MAX_TOPIC_BYTES: Final = 256
MAX_TOPIC_SLASHES: Final = 7
MAX_PAYLOAD_BYTES: Final = 128 * 1024
MAX_CLIENT_ID_BYTES: Final = 128
ENVELOPE_VERSION: Final = 1
# A chat line, not a document: long enough for a paragraph, short enough that
# a room's history page (50 lines) stays far below Lambda's 6 MB response.
MAX_CHAT_TEXT_CHARS: Final = 1000
CHAT_MESSAGE_TYPE: Final = "chat.message"
# A chat input's optional client-made message id (``"cid"``): what lets the
# moderator drop the second copy of a line that a client resent because the
# PUBACK of the first was lost. At least 16 characters, so that it is a random
# token (``new_chat_cid``: 22) or a ULID (26) or a UUID (32/36), not a counter
# that starts again with every page load; at most 64, the names' limit, which
# keeps the dedupe key small. The alphabet is the names' one (no ``#``, which
# separates the key's parts, no ``/``, no control characters).
MIN_CHAT_CID_CHARS: Final = 16
MAX_CHAT_CID_CHARS: Final = 64
# What the moderator sends to a sender's own topic about a line it refused.
CHAT_REJECTED_TYPE: Final = "chat.rejected"
# The MQTT keepalive clients use unless told otherwise (the token response's
# ``keepalive``; the SDK's default). A connection must never sit idle longer
# than the shortest idle timeout on its path, or a middlebox forgets it and
# notifications pile up unseen until the next ping fails (field report: a
# 120 s proxy made notifications 400-700 s late at keepalive 600). Common
# timeouts: 60 s (nginx's default proxy_read_timeout, AWS ALB's default idle
# timeout), 120 s (corporate proxies), 350 s (AWS NAT Gateway, "Timeout
# behavior" in the VPC user guide). 50 s stays below all of them. A short
# keepalive costs wake-ups, not money: AWS IoT Core does not meter
# PINGREQ/PINGRESP ("AWS IoT Core pricing", additional metering details),
# and IoT accepts 30..1200 s. Override per client (``listen --keepalive``,
# ``Subscriber(keepalive=)``) or per deployment (IOTNOTIFY_KEEPALIVE_SECONDS).
DEFAULT_KEEPALIVE_SECONDS: Final = 50
# Arrays and objects nest at most this deep in anything we accept: the
# depth DynamoDB allows for a document attribute (DynamoDB developer guide,
# "Quotas": nested attributes up to 32 levels), and far below what would
# exhaust Python's recursion limit in json or boto3.
MAX_JSON_DEPTH: Final = 32

# A Cognito ``sub`` (a UUID) fits. Anything outside this alphabet could widen
# an IAM pattern (``*`` ``?``), an MQTT filter (``+`` ``#``) or a topic level
# (``/``), or reach a reserved topic (``$``); ``.`` is excluded because it
# separates the user id from the device suffix in client ids.
_USER_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
# App, stage, game and room names share the user-id alphabet for the same reasons.
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CLIENT_SUFFIX_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,63}")
_CHAT_CID_RE: Final = re.compile(rf"[A-Za-z0-9_-]{{{MIN_CHAT_CID_CHARS},{MAX_CHAT_CID_CHARS}}}")


_JSON_TYPES: Final = (
    (bool, "a boolean"),
    (int | float, "a number"),
    (list | tuple, "an array"),
    (dict, "an object"),
)
_SHOWN_CHARS: Final = 80


def _json_kind(value: object) -> str:
    """What a value that is not a string is, in JSON's words ("null", "a number", ...)."""
    kind = "null" if value is None else "not text"
    return next((name for t, name in _JSON_TYPES if isinstance(value, t)), kind)


def quoted_excerpt(value: str) -> str:
    """``value`` quoted (``repr``) for an error message: its first 80
    characters and its length when it is longer, so that a 1 MiB id sent by
    a client is not echoed back whole, and control characters are escaped."""
    if len(value) > _SHOWN_CHARS:
        return f"{value[:_SHOWN_CHARS]!r}... ({len(value)} characters)"
    return repr(value)


def _quoted(value: object) -> str:
    """:func:`quoted_excerpt` for a string, else ``repr`` (a value of another type)."""
    return quoted_excerpt(value) if isinstance(value, str) else repr(value)


def _invalid(what: str, value: object) -> str:
    """The message for an invalid id or name: a string is quoted, shortened
    (:func:`quoted_excerpt`); anything else is named by its JSON type."""
    rule = "expected 1 to 64 characters from A-Z a-z 0-9 _ -"
    if not isinstance(value, str):
        return f"invalid {what}: {_json_kind(value)}, {rule}"
    return f"invalid {what} {quoted_excerpt(value)}: {rule}"


def validate_user_id(value: object) -> str:
    """Return ``value`` if it is a valid user id, else raise :class:`InvalidUserId`."""
    if not isinstance(value, str) or not _USER_ID_RE.fullmatch(value):
        raise InvalidUserId(_invalid("user id", value))
    return value


def validate_name(value: object, *, what: str) -> str:
    """Validate an app, stage, game or room name (same alphabet as user ids)."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise InvalidTopic(_invalid(what, value))
    return value


def client_id_prefix(user_id: str) -> str:
    """The prefix every client id of ``user_id`` starts with (``alice.``)."""
    return f"{validate_user_id(user_id)}."


def client_id_for(user_id: str, suffix: str | None = None) -> str:
    """A client id ``{userId}.{suffix}``; a random suffix when none is given.

    Each device of a user needs its own suffix: AWS IoT disconnects the older
    of two connections that share a client id.
    """
    suffix = secrets.token_hex(6) if suffix is None else validate_client_suffix(suffix)
    return f"{client_id_prefix(user_id)}{suffix}"


def validate_client_suffix(value: object) -> str:
    """Return ``value`` if it can follow ``{userId}.`` in a client id, else raise
    :class:`InvalidClientId`: 1 to 63 characters from ``A-Z a-z 0-9 _ . -``
    (with a 64-character user id and the dot, 128 bytes: AWS IoT's client id
    limit, "AWS IoT Core message broker and protocol limits and quotas")."""
    if not isinstance(value, str) or not _CLIENT_SUFFIX_RE.fullmatch(value):
        raise InvalidClientId(
            f"invalid client id suffix {_quoted(value)}: expected 1 to 63 characters "
            "from A-Z a-z 0-9 _ . -"
        )
    return value


def is_chat_cid(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a valid chat input ``cid``: a string of
    ``MIN_CHAT_CID_CHARS``..``MAX_CHAT_CID_CHARS`` characters from ``A-Z a-z 0-9 _ -``."""
    return isinstance(value, str) and _CHAT_CID_RE.fullmatch(value) is not None


def validate_chat_cid(value: object) -> str:
    """Return ``value`` if it is a valid chat input ``cid`` (:func:`is_chat_cid`),
    else raise :class:`InvalidEnvelope` (the message names the rule and shows
    at most 80 characters of the value)."""
    if not is_chat_cid(value):
        rule = (
            f"expected {MIN_CHAT_CID_CHARS} to {MAX_CHAT_CID_CHARS} characters from A-Z a-z 0-9 _ -"
        )
        if isinstance(value, str):
            raise InvalidEnvelope(f"invalid cid {quoted_excerpt(value)}: {rule}")
        raise InvalidEnvelope(f"invalid cid: {_json_kind(value)}, {rule}")
    return value


def new_chat_cid() -> str:
    """A fresh ``cid`` for one chat line: 128 random bits, base64url, 22 characters.

    Make one per line and send it again with every resend of that line, so
    the moderator keeps one copy (README, "Chat rooms").
    """
    return secrets.token_urlsafe(16)


def user_of_client_id(client_id: str) -> str:
    """The user id a client id belongs to, or :class:`InvalidClientId`."""
    user_id, dot, suffix = client_id.partition(".")
    if not dot or not suffix:
        raise InvalidClientId(
            f"client id {quoted_excerpt(client_id)} is not '{{userId}}.{{suffix}}'"
        )
    try:
        return validate_user_id(user_id)
    except InvalidUserId as exc:
        raise InvalidClientId(f"client id {quoted_excerpt(client_id)}: {exc}") from exc


def _check_topic_limits(text: str, *, what: str) -> None:
    if not text:
        raise InvalidTopic(f"{what} must not be empty")
    if "\x00" in text:
        raise InvalidTopic(f"{what} {quoted_excerpt(text)} contains a NUL character")
    size = len(text.encode("utf-8"))
    if size > MAX_TOPIC_BYTES:
        raise InvalidTopic(f"{what} is {size} bytes; AWS IoT allows at most {MAX_TOPIC_BYTES}")
    slashes = text.count("/")
    if slashes > MAX_TOPIC_SLASHES:
        raise InvalidTopic(
            f"{what} {text!r} has {slashes} slashes; AWS IoT allows at most {MAX_TOPIC_SLASHES}"
        )


@dataclass(frozen=True, slots=True)
class Topic:
    """An MQTT topic name (no wildcards) within AWS IoT Core's limits."""

    value: str

    def __post_init__(self) -> None:
        _check_topic_limits(self.value, what="topic")
        if "+" in self.value or "#" in self.value:
            raise InvalidTopic(f"topic {self.value!r} must not contain the wildcards + or #")

    @property
    def is_reserved(self) -> bool:
        """``$``-topics belong to the broker (``$aws/events/...``), not to clients."""
        return self.value.startswith("$")

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(self.value.split("/"))

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class TopicFilter:
    """An MQTT 3.1.1 topic filter (``+`` one level, ``#`` the rest) with ``matches()``."""

    value: str
    _levels: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_topic_limits(self.value, what="topic filter")
        levels = tuple(self.value.split("/"))
        for index, level in enumerate(levels):
            if "#" in level and (level != "#" or index != len(levels) - 1):
                raise InvalidTopic(
                    f"topic filter {self.value!r}: '#' must be a whole level and the last one"
                )
            if "+" in level and level != "+":
                raise InvalidTopic(f"topic filter {self.value!r}: '+' must be a whole level")
        object.__setattr__(self, "_levels", levels)

    @property
    def levels(self) -> tuple[str, ...]:
        return self._levels

    @property
    def has_wildcards(self) -> bool:
        return "+" in self._levels or "#" in self._levels

    def matches(self, topic: Topic | str) -> bool:
        """Whether a message published to ``topic`` is delivered to this filter."""
        name = topic.value if isinstance(topic, Topic) else topic
        # MQTT 3.1.1 section 4.7.2: a filter starting with a wildcard does not
        # match topics starting with '$'.
        if name.startswith("$") and self._levels[0] in ("+", "#"):
            return False
        topic_levels = name.split("/")
        for index, level in enumerate(self._levels):
            if level == "#":
                # AWS IoT developer guide, "AWS IoT differences from MQTT
                # version 3.1.1": "the parent topic is not matched": `sensor/#`
                # receives `sensor/`, `sensor/temperature`, but not `sensor`
                # (MQTT 3.1.1 would match it). The topic needs a level where
                # '#' stands.
                return index < len(topic_levels)
            if index >= len(topic_levels):
                return False
            if level != "+" and level != topic_levels[index]:
                return False
        return len(topic_levels) == len(self._levels)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class TopicScheme:
    """The topic layout of one deployment: ``{app}/{stage}/...``.

    No leading slash: AWS counts it as a level, and IAM patterns would need it.
    """

    app: str
    stage: str

    def __post_init__(self) -> None:
        validate_name(self.app, what="app name")
        validate_name(self.stage, what="stage name")

    @property
    def prefix(self) -> str:
        return f"{self.app}/{self.stage}"

    def user_notifications(self, user_id: str) -> Topic:
        return Topic(f"{self.prefix}/user/{validate_user_id(user_id)}/notifications")

    def broadcast(self) -> Topic:
        return Topic(f"{self.prefix}/broadcast")

    def game(self, game_id: str) -> Topic:
        return Topic(f"{self.prefix}/game/{validate_name(game_id, what='game id')}")

    def chat(self, room: str) -> Topic:
        return Topic(f"{self.prefix}/chat/{validate_name(room, what='room name')}")

    def chat_input(self, room: str) -> Topic:
        return Topic(f"{self.prefix}/chat/{validate_name(room, what='room name')}/input")

    def chat_input_filter(self) -> TopicFilter:
        """``{app}/{stage}/chat/+/input``: every room's input, the moderation rule's FROM."""
        return TopicFilter(f"{self.prefix}/chat/+/input")

    @property
    def chat_room_level(self) -> int:
        """The 1-based level of the room name in a chat topic: ``topic(n)`` in IoT SQL."""
        return len(self.prefix.split("/")) + 2

    def room_of_input_topic(self, topic: Topic | str) -> str:
        """The room an input topic belongs to; :class:`InvalidTopic` for any other topic."""
        name = str(topic)
        if not self.chat_input_filter().matches(name):
            raise InvalidTopic(f"{name!r} is not a chat input topic of {self.prefix!r}")
        return validate_name(name.split("/")[self.chat_room_level - 1], what="room name")

    def user_topics(self, user_id: str) -> tuple[Topic, ...]:
        """The topics a plain subscriber listens to: their own and the broadcast."""
        return (self.user_notifications(user_id), self.broadcast())


def own_notifications_topic(topics: Iterable[str], user_id: str) -> str | None:
    """The user's own notifications topic among a token answer's ``topics``
    (``{app}/{stage}/user/{user_id}/notifications``, its app and stage read
    from the topic itself), or None when it is not there."""
    for topic in topics:
        levels = topic.split("/")
        if len(levels) < 2:
            continue
        try:
            own = TopicScheme(levels[0], levels[1]).user_notifications(user_id)
        except ContractError:
            continue
        if own.value == topic:
            return topic
    return None


ChannelKind = Literal["room", "game"]


@dataclass(frozen=True, slots=True)
class Channel:
    """A many-to-many channel: a chat room (``chat/{room}``) or a game (``game/{gameId}``).

    Members subscribe to and receive from :meth:`topic`; nobody but server code
    publishes there. Rooms also have an :meth:`input_topic` members publish
    to, which the moderation rule reads. Names follow :func:`validate_name`.
    """

    kind: ChannelKind
    name: str

    def __post_init__(self) -> None:
        if self.kind not in ("room", "game"):
            raise InvalidTopic(f"unknown channel kind {self.kind!r}: expected room or game")
        validate_name(self.name, what=f"{self.kind} name")

    def topic(self, scheme: TopicScheme) -> Topic:
        return scheme.chat(self.name) if self.kind == "room" else scheme.game(self.name)

    def input_topic(self, scheme: TopicScheme) -> Topic | None:
        """Where members publish (rooms); None for games, which only servers publish to."""
        return scheme.chat_input(self.name) if self.kind == "room" else None

    def topics_json(self, scheme: TopicScheme) -> dict[str, str]:
        """The token response's entry: ``{"topic", "inputTopic"?}``."""
        entry = {"topic": str(self.topic(scheme))}
        input_topic = self.input_topic(scheme)
        if input_topic is not None:
            entry["inputTopic"] = str(input_topic)
        return entry


def iot_arn(region: str, account: str, kind: str, name: str) -> str:
    """An AWS IoT resource ARN: ``kind`` is client, topic or topicfilter."""
    if kind not in ("client", "topic", "topicfilter"):
        raise ValueError(f"unknown IoT resource kind {kind!r}")
    return f"arn:aws:iot:{region}:{account}:{kind}/{name}"


class _MonotonicUlid:
    """ULIDs that strictly increase within this process.

    Plain ULIDs are random within one millisecond, so two notifications sent
    to a user in the same millisecond could sort in the wrong order and
    ``since=`` would skip one; bumping the previous value keeps order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def __call__(self, at_ms: int | None = None) -> ULID:
        """The next id: at the current time, or at ``at_ms`` (epoch ms) when given.

        With ``at_ms`` the id keeps that millisecond even when it is earlier
        than the last one issued (its event was handled late); ids of the same
        millisecond still increase in the order they are asked for.
        """
        # Imported on first use: only senders make ids, and python-ulid (with
        # what it imports) is several MiB a subscriber does not need.
        from ulid import ULID

        with self._lock:
            if at_ms is None:
                candidate = ULID.from_timestamp(time.time()).__int__()
                if candidate <= self._last:
                    candidate = self._last + 1
                self._last = candidate
                return ULID.from_int(candidate)
            candidate = ULID.from_timestamp(at_ms).__int__()
            # The top 48 of a ULID's 128 bits are its millisecond (ulid/spec).
            if candidate >> 80 == self._last >> 80 and candidate <= self._last:
                candidate = self._last + 1
            self._last = max(self._last, candidate)
            return ULID.from_int(candidate)


_next_ulid: Final = _MonotonicUlid()
# Chat ids follow the broker's receipt times, not this process's clock, so
# they are kept apart from the notification ids above.
_next_chat_ulid: Final = _MonotonicUlid()


_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ULID_MAX_MS: Final = (1 << 48) - 1


def _seeded_chat_ulid(at_ms: int, seed: bytes) -> ULID:
    """The ULID of millisecond ``at_ms`` whose 80 random bits come from ``seed``."""
    # Imported here, like python-ulid below: subscribers never make ids, and
    # hashlib loads OpenSSL (issue 11 counts the tray's resident memory).
    import hashlib

    from ulid import ULID

    # The top 48 of a ULID's 128 bits are its millisecond, the rest random
    # (ulid/spec); a hash is as good a source of those bits as a RNG, and the
    # same seed always gives the same id.
    millis = min(max(at_ms, 0), _ULID_MAX_MS)
    entropy = int.from_bytes(hashlib.sha256(seed).digest()[:10], "big")
    return ULID.from_int((millis << 80) | entropy)


# A notification's title is what a toast or tray pop-up shows; one rule for
# the CLI, the publisher and POST /notify.
MAX_TITLE_CHARS: Final = 512


def validate_title(value: object) -> str:
    """A title: a string with at least one non-space character, at most 512 characters.

    Raises :class:`InvalidEnvelope` otherwise; returns the title unchanged.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidEnvelope("title is required and must be a non-empty string")
    if len(value) > MAX_TITLE_CHARS:
        raise InvalidEnvelope(f"title is longer than {MAX_TITLE_CHARS} characters")
    return value


# 26 Crockford base32 characters hold 130 bits and a ULID 128, so the first
# is 0..7 (ULID spec, "Overflow Errors when Parsing Base32 Strings").
_NOTIFICATION_ID_RE: Final = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")


def validate_notification_id(value: object) -> str:
    """A notification id (a 26-character ULID, Crockford base32, upper case); returned as is.

    Raises :class:`InvalidEnvelope` otherwise.
    """
    if not is_notification_id(value):
        raise InvalidEnvelope(
            f"not a notification id: {_quoted(value)} (expected a 26-character ULID such as "
            "01JD5Z3Q8W9V4X2Y6Z7A8B9C0D)"
        )
    return value


def is_notification_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a notification id (:func:`validate_notification_id`)."""
    return isinstance(value, str) and _NOTIFICATION_ID_RE.fullmatch(value) is not None


# A ULID is 26 Crockford base32 characters: the first 10 spell the 48-bit
# millisecond timestamp, the last 16 the 80 random bits (ulid/spec).
_ULID_TIME_CHARS: Final = 10
_ULID_RANDOM_CHARS: Final = 16


def _millis_floor(millis: int) -> str:
    """The smallest ULID of epoch millisecond ``millis`` (clamped to ULID's 0..2**48-1)."""
    millis = min(max(millis, 0), _ULID_MAX_MS)
    chars = [
        _CROCKFORD[(millis >> (5 * shift)) & 31] for shift in range(_ULID_TIME_CHARS - 1, -1, -1)
    ]
    return "".join(chars) + "0" * _ULID_RANDOM_CHARS


def id_floor(epoch_seconds: float) -> str:
    """The smallest notification id at ``epoch_seconds``: every id made later sorts after it.

    A ULID is a 48-bit millisecond timestamp and 80 random bits, in 26
    Crockford base32 characters (ulid/spec); this is the timestamp with the
    random part zero. ``listen --since now`` uses it with the *server's*
    time, so a client whose clock is wrong neither skips nor replays.
    """
    return _millis_floor(int(epoch_seconds * 1000))


def id_millis(note_id: str) -> int:
    """The epoch millisecond a notification id was made at: its first 10 characters.

    Raises :class:`InvalidEnvelope` for a value that is not a notification id
    (:func:`validate_notification_id`). A 26-character value whose first
    character is above ``7`` does not fit ULID's 128 bits; its time is read
    as the largest ULID time, 2**48 - 1 ms.
    """
    validate_notification_id(note_id)
    millis = 0
    for char in note_id[:_ULID_TIME_CHARS]:
        millis = millis * 32 + _CROCKFORD.index(char)
    return min(millis, _ULID_MAX_MS)


def id_lower_bound(note_id: str, *, lookback_seconds: float) -> str:
    """The smallest id made ``lookback_seconds`` before ``note_id``: a ``since=`` bound.

    ``GET /notifications?since=<bound>`` then returns every notification
    whose id was made at most ``lookback_seconds`` before ``note_id`` (and
    ``note_id`` itself and anything newer). Catch-up asks for this instead
    of its cursor because an id's time is when the id was *made*, not when
    the notification reached the inbox: ``notify_many`` makes one id and
    spends seconds writing it to thousands of inboxes, and publisher hosts'
    clocks differ, so an inbox can receive an id older than one its reader
    already saw. ``lookback_seconds`` is rounded to the millisecond; the
    bound never goes below the epoch. Raises :class:`InvalidEnvelope` for a
    bad ``note_id`` and :class:`InvalidArgument` (a ``ValueError``) for a
    negative or non-finite look-back.
    """
    if not math.isfinite(lookback_seconds) or lookback_seconds < 0:
        raise InvalidArgument(f"lookback_seconds must be finite and >= 0, not {lookback_seconds!r}")
    return _millis_floor(id_millis(note_id) - round(lookback_seconds * 1000))


def new_notification_id() -> str:
    """A new sortable notification id (a 26-character ULID)."""
    return str(_next_ulid())


def _iso_millis(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf
        raise InvalidJson(f"number {text[:32]} is out of range: JSON has no Infinity")
    return value


# Digits of the largest integer an IEEE 754 double holds (about 1.8e308).
_MAX_INT_DIGITS: Final = 309


def _int_in_range(value: int) -> bool:
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _finite_int(text: str) -> int:
    # Before int(): a run of 4,301 digits would otherwise be Python's own
    # "Exceeds the limit (4300 digits)" error, and a shorter one still
    # reads as Infinity in JavaScript, as 1e999 does.
    if len(text.lstrip("-")) > _MAX_INT_DIGITS or not _int_in_range(value := int(text)):
        raise InvalidJson(
            f"number {text[:32]}... is out of range: beyond what a double holds "
            "(JavaScript reads it as Infinity)"
        )
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # RFC 8259 section 4: names SHOULD be unique, and parsers disagree on a
    # repeated one (Python keeps the last, others the first or fail), so a
    # document read by two of them could mean two things. Refused.
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidJson(f"object names the key {key[:64]!r} more than once")
            seen.add(key)
    return value


def _non_json_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _check_tree(value: Any, what: str) -> None:
    """Depth and lone-surrogate check, iteratively (no recursion on hostile input)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise InvalidJson(
                        f"{what} contains a lone surrogate (\\u{ord(item[exc.start]):04x}); "
                        "text must be valid Unicode"
                    ) from exc
        elif isinstance(item, int) and not isinstance(item, bool):
            if not _int_in_range(item):
                raise InvalidJson(
                    f"{what} holds an integer out of range: beyond what a double holds "
                    "(JavaScript reads it as Infinity)"
                )
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise InvalidJson(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)


def loads_strict(payload: bytes | str, *, what: str = "payload") -> Any:
    """Parse RFC 8259 JSON and nothing more; raises :class:`InvalidJson`.

    Python's ``json`` also accepts ``NaN``, ``Infinity`` and ``-Infinity``
    (and turns ``1e999`` into ``inf``), which no other JSON parser reads
    back: a browser's ``JSON.parse`` fails on the whole document. Refused
    as well: lone UTF-16 surrogates (``"\\ud800"``, which cannot be encoded
    as UTF-8 and so fail later, far from the sender), nesting deeper than
    :data:`MAX_JSON_DEPTH`, integers beyond what a double holds (about
    1.8e308: ``JSON.parse`` reads them as Infinity), an object naming a key
    twice, and bytes that are not UTF-8.
    """
    if isinstance(payload, bytes | bytearray):
        # json.loads would guess UTF-16 or UTF-32 from the bytes; RFC 8259
        # section 8.1 has UTF-8 only (a leading BOM may be ignored).
        try:
            payload = payload.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            raise InvalidJson(f"{what} is not UTF-8: {exc}") from exc
    try:
        value = json.loads(
            payload,
            parse_constant=_non_json_constant,
            parse_float=_finite,
            parse_int=_finite_int,
            object_pairs_hook=_unique_keys,
        )
    except InvalidJson:
        raise
    except RecursionError as exc:
        raise InvalidJson(f"{what} nests deeper than {MAX_JSON_DEPTH} levels") from exc
    except ValueError as exc:  # malformed, not UTF-8, or an integer over 4,300 digits
        raise InvalidJson(f"{what} is not valid JSON: {exc}") from exc
    _check_tree(value, what)
    return value


def dumps_strict(value: Any) -> str:
    """Compact JSON that any parser reads back; raises :class:`InvalidJson` for NaN,
    Infinity, lone surrogates, too deep nesting or values JSON cannot hold."""
    _check_tree(value, "value")
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidJson(f"not JSON-serialisable: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Notification:
    """The JSON envelope ``{"v":1,"id","type","title","body","data","ts"}``."""

    id: str
    title: str
    body: str = ""
    type: str = "notification"
    data: Mapping[str, Any] = field(default_factory=dict)
    ts: str = ""
    v: int = ENVELOPE_VERSION

    @classmethod
    def create(
        cls,
        *,
        title: str,
        body: str = "",
        type: str = "notification",
        data: Mapping[str, Any] | None = None,
    ) -> Notification:
        """A new notification with a fresh sortable id and a timestamp from it.

        Raises :class:`InvalidEnvelope` for a blank or over-long title
        (:func:`validate_title`), a ``body`` that is not a string, a ``type``
        that is not a non-empty string or ``data`` that is not a mapping with
        string keys (what ``POST /notify`` refuses with a 400), and
        :class:`PayloadTooLarge` over 128 KB.
        """
        validate_title(title)
        if not isinstance(body, str):
            raise InvalidEnvelope(f"body must be a string, not {builtins.type(body).__name__}")
        if not isinstance(type, str) or not type:
            raise InvalidEnvelope("type must be a non-empty string")
        if data is not None and (
            not isinstance(data, Mapping) or not all(isinstance(key, str) for key in data)
        ):
            raise InvalidEnvelope("data must be a JSON object (a mapping with string keys)")
        ulid = _next_ulid()
        note = cls(
            id=str(ulid),
            title=title,
            body=body,
            type=type,
            data=dict(data or {}),
            ts=_iso_millis(ulid.datetime),
        )
        note.to_json()  # refuse an oversized or unserialisable envelope now, not at send time
        return note

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "id": self.id,
            "type": self.type,
            "title": self.title,
            "body": self.body,
            "data": dict(self.data),
            "ts": self.ts,
        }

    def to_json(self) -> bytes:
        """Compact UTF-8 JSON; :class:`PayloadTooLarge` over 128 KB."""
        try:
            payload = dumps_strict(self.to_dict()).encode("utf-8")
        except InvalidJson as exc:
            raise InvalidEnvelope(f"notification is not valid JSON: {exc}") from exc
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLarge(
                f"notification is {len(payload)} bytes; AWS IoT allows at most "
                f"{MAX_PAYLOAD_BYTES} bytes per message"
            )
        return payload

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Notification:
        """Raises :class:`InvalidEnvelope` for anything but a version-1 envelope object."""
        if not isinstance(raw, Mapping):  # an inbox page's item comes from a server
            raise InvalidEnvelope(f"not a notification envelope: {type(raw).__name__}")
        try:
            note = cls(
                v=int(raw.get("v", ENVELOPE_VERSION)),
                id=str(raw["id"]),
                type=str(raw.get("type", "notification")),
                title=str(raw.get("title", "")),
                body=str(raw.get("body", "")),
                data=dict(raw.get("data") or {}),
                ts=str(raw.get("ts", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidEnvelope(f"not a notification envelope: {exc!r}") from exc
        if note.v != ENVELOPE_VERSION:
            raise InvalidEnvelope(f"unsupported envelope version {note.v}")
        return note

    @classmethod
    def from_json(cls, payload: bytes | str) -> Notification:
        if isinstance(payload, bytes) and len(payload) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLarge(f"payload is {len(payload)} bytes; at most {MAX_PAYLOAD_BYTES}")
        try:
            raw = loads_strict(payload)
        except InvalidJson as exc:
            raise InvalidEnvelope(str(exc)) from exc
        if not isinstance(raw, dict):
            raise InvalidEnvelope("payload is not a JSON object")
        return cls.from_dict(raw)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A moderated chat line: ``{"v":1,"id","type":"chat.message","room","sender","text","ts"}``
    plus ``"cid"`` when the sender's input carried one.

    Published by the moderator to ``chat/{room}`` and kept in the room's
    history. ``sender`` is the user id taken from the publishing client's id,
    never from the payload; ``id`` is a sortable ULID, ``ts`` ISO 8601 UTC
    with milliseconds; ``cid`` is the sender's own id for the line
    (:func:`validate_chat_cid`), echoed so a sender can match its line. A
    ``cid`` that is not valid is left out when reading.
    """

    id: str
    room: str
    sender: str
    text: str
    ts: str
    type: str = CHAT_MESSAGE_TYPE
    v: int = ENVELOPE_VERSION
    cid: str | None = None

    @classmethod
    def create(
        cls,
        *,
        room: str,
        sender: str,
        text: str,
        received_at_ms: int | None = None,
        id_seed: bytes | None = None,
        cid: str | None = None,
    ) -> ChatMessage:
        """A new message; ``received_at_ms`` (epoch ms: when the broker received
        it) sets ``id`` and ``ts``, so messages handled in parallel still sort
        in arrival order. Without it, the current time.

        ``id_seed`` (with ``received_at_ms``) makes the id a function of the
        input: the ULID's 80 random bits become the first 80 bits of the seed's
        SHA-256, so handling the same input twice (a retried invocation) gives
        the same id, and a conditional write on it stores the message once.
        Ids of one millisecond then sort by their hash, not by request order.
        ``cid`` (the sender's id for the line) must pass :func:`validate_chat_cid`.
        """
        if id_seed is not None and received_at_ms is not None:
            ulid = _seeded_chat_ulid(received_at_ms, id_seed)
        else:
            ulid = _next_chat_ulid(received_at_ms)
        return cls(
            id=str(ulid),
            room=validate_name(room, what="room name"),
            sender=validate_user_id(sender),
            text=text,
            ts=_iso_millis(ulid.datetime),
            cid=None if cid is None else validate_chat_cid(cid),
        )

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "v": self.v,
            "id": self.id,
            "type": self.type,
            "room": self.room,
            "sender": self.sender,
            "text": self.text,
            "ts": self.ts,
        }
        if self.cid is not None:
            body["cid"] = self.cid
        return body

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ChatMessage:
        try:
            message = cls(
                v=int(raw.get("v", ENVELOPE_VERSION)),
                id=str(raw["id"]),
                type=str(raw.get("type", CHAT_MESSAGE_TYPE)),
                room=str(raw["room"]),
                sender=str(raw["sender"]),
                text=str(raw["text"]),
                ts=str(raw.get("ts", "")),
                cid=raw["cid"] if is_chat_cid(raw.get("cid")) else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidEnvelope(f"not a chat message: {exc!r}") from exc
        if message.type != CHAT_MESSAGE_TYPE:
            raise InvalidEnvelope(f"not a chat message: type {message.type!r}")
        return message
