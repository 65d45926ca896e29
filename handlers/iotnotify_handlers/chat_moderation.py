"""Moderated chat input: what the moderator Lambda does with one message.

The topic rule (:func:`iotnotify.topic_rules.chat_moderation_rule`) delivers
``{"payload", "room", "clientId", "receivedAt"}``, ``payload`` being the
client's bytes in base64, whatever they are: a rule that read fields of a
non-JSON payload would fail in the rules engine and send the message to the
error action's queue, so one client could fill the DLQ with garbage. Here a
payload over ``MAX_CHAT_INPUT_BYTES``, not UTF-8, or not a JSON object with a
string ``text`` is a rejection like any other (logged, counted in
:class:`Rejections`, the sender told), and the invocation returns normally:
Lambda neither retries nor dead-letters an invocation that returns (AWS
Lambda developer guide, "Asynchronous invocation"). Only AWS failures
raise. The sender is the user id
of ``clientId`` (the session policy only lets a user connect as
``{userId}.*``), never a field of the payload. Control, bidirectional
override and invisible characters are removed first
(:func:`iotnotify_handlers.chat_text.clean`; it also cuts runs of stacked
combining marks). A message is rejected when its text then shows nothing
(:func:`iotnotify_handlers.chat_text.is_blank`) or is longer than
``MAX_CHAT_TEXT_CHARS``, or when the sender is
over the per-sender rate; the sender then gets a ``chat.rejected``
notification on their own topic (ephemeral: no inbox entry). Otherwise
denylisted words are masked (compared case-, accent- and width-blind:
:func:`iotnotify_handlers.chat_text.mask`), the message is appended to the room's history
and the ``chat.message`` envelope is published to ``chat/{room}``. Its
``id`` and ``ts`` come from ``receivedAt`` (when the broker got it), so the
order of a room's messages is their arrival order at the broker, however
the parallel invocations finish.

Handling is idempotent. The rule's Lambda action invokes asynchronously, and
Lambda retries a failed asynchronous invocation up to twice and may deliver
an event more than once even when it succeeded (AWS Lambda developer guide,
"Asynchronous invocation": "How Lambda handles errors and retries with
asynchronous invocation"). The id's random part is therefore a hash of the
event, the history write is conditional on that id, and a repeated event
publishes the message stored the first time (same id: clients show an id
once) instead of a second row.

A *resent* line is another event, though: a client whose connection dropped
before the PUBACK publishes the line again after reconnecting (MQTT 3.1.1
4.4; a QoS 1 message is delivered at least once), or its user presses Send
again; the broker receives it at another time and the rule invokes the
moderator again. For that the input may carry ``"cid"``, the client's own id
for the line (:func:`iotnotify.contract.validate_chat_cid`). The first input
with a given (room, sender, cid) claims it for ``CHAT_CID_WINDOW_SECONDS``
(:meth:`ChatHistory.claim_cid`, one conditional write); a later one within
the window is dropped (``duplicate``) before the rate is counted, with no
publish and no history item. The published envelope carries the ``cid``
back. An input without ``cid`` is handled as before; one whose ``cid``
breaks the contract is rejected (``invalid_cid``).

A claim must not outlive a line that never got out, or the user's resend is
dropped as a copy of a message nobody saw. So an attempt that fails after
the claim and before the message is stored (the rate counter's or the
history's write fails) releases it; one that stored the message but could
not publish it marks the claim ``undelivered``, and the next copy publishes
that stored message (same id, one history item) instead of being dropped;
and a claim older than ``STALE_CID_CLAIM_SECONDS`` whose message is not
stored (its attempt timed out or crashed, running no code to release it) is
taken over by the next copy. A copy of a line that was published is still
dropped.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aws_lambda_powertools import Logger, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from iotnotify.contract import (
    CHAT_REJECTED_TYPE,
    MAX_CHAT_CID_CHARS,
    MAX_CHAT_TEXT_CHARS,
    MIN_CHAT_CID_CHARS,
    ChatMessage,
    Notification,
    TopicScheme,
    is_chat_cid,
    user_of_client_id,
    validate_name,
)
from iotnotify.errors import ContractError
from iotnotify_handlers.chat_history import ChatHistory, CidClaim, RateLimited
from iotnotify_handlers.chat_text import clean, is_blank, mask
from iotnotify_handlers.errors import ServiceUnavailable

__all__ = [
    "CHAT_CID_WINDOW_SECONDS",
    "MAX_CHAT_INPUT_BYTES",
    "MAX_CLOCK_SKEW_MS",
    "MAX_RECEIVED_AGE_MS",
    "STALE_CID_CLAIM_SECONDS",
    "Denylist",
    "ModerationResult",
    "Moderator",
    "Rejections",
]

logger = Logger(service="iotnotify")

# Lambda keeps an asynchronous event at most 6 hours (MaximumEventAgeInSeconds,
# AWS Lambda developer guide, "Asynchronous invocation": "Configuring error
# handling"), retries included; a receivedAt older than that (plus margin) did
# not come from the rule through Lambda.
MAX_RECEIVED_AGE_MS: Final = (6 * 3600 + 600) * 1000
# The JSON of the longest text: MAX_CHAT_TEXT_CHARS characters, each at most
# 12 bytes as JSON (an escaped surrogate pair), plus the object around it. Anything
# bigger is refused before it is decoded or parsed.
MAX_CHAT_INPUT_BYTES: Final = 16 * 1024
_MAX_ENCODED_CHARS: Final = (MAX_CHAT_INPUT_BYTES + 2) // 3 * 4
# How far ahead of the Lambda's clock the broker's may be.
MAX_CLOCK_SKEW_MS: Final = 5 * 1000
# How long a (room, sender, cid) is remembered, so that a second copy of the
# line is dropped. A copy comes from a client that published, lost the
# connection before the PUBACK and resent after reconnecting (MQTT 3.1.1
# 4.4, "Message delivery retry"), or from a person pressing Send again after
# "not sent". The first takes at most: noticing the dead connection (1.5 x
# keepalive, 75 s at the default 50 s), the reconnect backoff (capped at 60 s
# in the SDK, 30 s in the page), a new token and the resend: under 3 minutes.
# Ten minutes covers that with margin, and a person's retry after an error
# message, while a line typed again on purpose later gets a fresh cid anyway
# from our clients. A longer window only costs a small item per line kept
# longer (DynamoDB TTL, see ChatHistory.claim_cid).
CHAT_CID_WINDOW_SECONDS: Final = 10 * 60
# How long after its claim an attempt has surely ended: the moderator's Lambda
# timeout is 10 s (infra functions.py, FunctionSpec's default). A claim this
# old whose message is not stored belongs to an attempt that died without
# releasing it (timed out, crashed), and a copy of the line takes it over.
STALE_CID_CLAIM_SECONDS: Final = 60


def _event_key(event: Mapping[str, Any]) -> bytes:
    """What identifies one input across retries: the whole rule output.

    Lambda re-delivers an asynchronous event unchanged, so its canonical JSON
    (sender's client id, room, the broker's receipt time in ms and the
    payload) is the same on every attempt, and different for any other
    message, except the same payload from the same client in the same
    millisecond, which is one message for every reader anyway.
    """
    return json.dumps(
        event, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str
    ).encode()


class _BadInput(Exception):
    def __init__(self, reason: str, size: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.size = size


def _input_fields(encoded: Any) -> tuple[str, str | None]:
    """The ``text`` and ``cid`` (None when absent) of one input payload (the
    rule's ``encode(*, 'base64')``).

    Raises :class:`_BadInput` with reason ``too_long`` (more than
    ``MAX_CHAT_INPUT_BYTES``, refused before it is decoded), ``invalid`` (not
    UTF-8), ``malformed`` (not a JSON object with a string ``text``, or
    nested too deeply to parse) or ``invalid_cid`` (a ``cid`` key whose value
    is not a :func:`iotnotify.contract.is_chat_cid`: wrong type, null, too
    short or long, characters outside ``A-Z a-z 0-9 _ -``). The text itself
    is checked by the caller.
    """
    if not isinstance(encoded, str):
        raise _BadInput("malformed", -1)
    if len(encoded) > _MAX_ENCODED_CHARS:
        raise _BadInput("too_long", len(encoded) * 3 // 4)
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _BadInput("malformed", -1) from None
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _BadInput("invalid", len(raw)) from None
    except (ValueError, RecursionError):
        # RecursionError: "[[[[...", a few thousand levels deep, within the limit.
        raise _BadInput("malformed", len(raw)) from None
    if not isinstance(document, dict) or not isinstance(document.get("text"), str):
        raise _BadInput("malformed", len(raw))
    text: str = document["text"]
    if "cid" not in document:
        return text, None
    # A cid that breaks the contract refuses the line rather than being
    # ignored: ignored, the client's resends would quietly double again, and
    # a refusal tells its author at the first line (README, "Chat rooms").
    cid = document["cid"]
    if not is_chat_cid(cid):
        raise _BadInput("invalid_cid", len(raw))
    return text, cid


class Rejections:
    """Rejected inputs, counted by reason.

    In process (``counts``, for tests and the local stack) and, with a
    ``namespace``, as the CloudWatch metric ``ChatInputRejected`` with a
    ``reason`` dimension, written to the log in CloudWatch embedded metric
    format (Powertools ``single_metric``; CloudWatch Logs turns the line into
    the metric, so counting needs no API call and no permission).
    """

    def __init__(self, namespace: str = "") -> None:
        self._namespace = namespace
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def count(self, reason: str) -> None:
        with self._lock:
            self.counts[reason] += 1
        if self._namespace:
            with single_metric(
                name="ChatInputRejected",
                unit=MetricUnit.Count,
                value=1,
                namespace=self._namespace,
                default_dimensions={"reason": reason},
            ):
                pass


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Denylist:
    """Words from the SSM StringList ``/{app}/{ssmStage}/chat-denylist``, cached ``ttl`` s.

    ``provider`` is a Powertools ``SSMProvider`` (its ``max_age`` is the
    cache). A missing or unreadable parameter means "no words" for one TTL,
    so chat keeps working and SSM is not asked on every message.
    """

    def __init__(
        self,
        provider: Any,
        *,
        parameter: str,
        ttl_seconds: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._provider = provider
        self._parameter = parameter
        self._ttl = ttl_seconds
        self._clock = clock
        self._failed_until = 0.0

    def words(self) -> tuple[str, ...]:
        if self._clock() < self._failed_until:
            return ()
        try:
            value = self._provider.get(self._parameter, max_age=self._ttl)
        except Exception:  # powertools wraps SDK errors in GetParameterError
            logger.warning("chat denylist unreadable; masking nothing for now")
            self._failed_until = self._clock() + self._ttl
            return ()
        if not isinstance(value, str):
            return ()
        return tuple(w.strip() for w in value.replace("\n", ",").split(",") if w.strip())


@dataclass(frozen=True, slots=True)
class ModerationResult:
    """``published`` (the envelope), ``republished`` (a repeated event: the message
    stored the first time, published again), ``duplicate`` (another copy of a
    line whose ``cid`` was seen: nothing published or stored; ``duplicate_of``
    is the first copy's message id) or ``rejected`` with a reason."""

    status: str
    reason: str = ""
    message: ChatMessage | None = None
    duplicate_of: str = ""


class Moderator:
    """One moderation step per message; AWS clients and the denylist are injected."""

    def __init__(
        self,
        *,
        scheme: TopicScheme,
        history: ChatHistory,
        iot_data: Any,
        denylist: Callable[[], Sequence[str]],
        rate_messages: int,
        rate_window_seconds: int,
        max_chars: int = MAX_CHAT_TEXT_CHARS,
        clock: Callable[[], float] = time.time,
        rejections: Rejections | None = None,
        cid_window_seconds: int = CHAT_CID_WINDOW_SECONDS,
    ) -> None:
        self._scheme = scheme
        self._cid_window = cid_window_seconds
        self._rejections = rejections or Rejections()
        self._history = history
        self._iot_data = iot_data
        self._denylist = denylist
        self._rate_messages = rate_messages
        self._rate_window = rate_window_seconds
        self._max_chars = max_chars
        self._clock = clock

    def handle(self, event: Mapping[str, Any]) -> ModerationResult:
        """Moderate one rule output; raises :class:`ServiceUnavailable` if AWS fails
        (the invocation fails, and Lambda's retry and DLQ take over)."""
        try:
            sender = user_of_client_id(str(event.get("clientId", "")))
            room = validate_name(event.get("room"), what="room name")
        except ContractError as exc:
            # Only a misconfigured rule gets here: clients cannot choose either.
            logger.warning("chat input without a valid sender or room", extra={"error": str(exc)})
            return ModerationResult("rejected", "invalid_source")
        received_at = self._received_at(event.get("receivedAt"))
        if received_at is None:
            # The rule always sets it (timestamp()); a missing or implausible
            # one means a misconfigured rule or an event older than Lambda
            # keeps any, and without it the id could not be the same on a retry.
            logger.warning(
                "chat input without a plausible receivedAt",
                extra={"room": room, "receivedAt": repr(event.get("receivedAt"))[:40]},
            )
            return ModerationResult("rejected", "invalid_source")
        try:
            text, cid = _input_fields(event.get("payload"))
        except _BadInput as exc:
            return self._reject(sender, room, exc.reason, size=exc.size)
        if not _is_unicode(text):
            # A lone surrogate ("\\ud800" in the client's JSON) cannot be
            # encoded as UTF-8: DynamoDB and every reader would fail on it,
            # after the retries, far from the sender.
            return self._reject(sender, room, "invalid")
        # Controls, bidi overrides and invisible characters go first, so that
        # neither the length check nor the denylist sees them (chat_text).
        text = clean(text).strip()
        if is_blank(text):  # nothing left, or nothing that shows (braille blanks)
            return self._reject(sender, room, "empty")
        if len(text) > self._max_chars:
            return self._reject(sender, room, "too_long")
        message = ChatMessage.create(
            room=room,
            sender=sender,
            text=mask(text, self._denylist()),
            received_at_ms=received_at,
            id_seed=_event_key(event),
            cid=cid,
        )
        if cid is not None:
            # Before the rate: a resent copy must not use the sender's allowance.
            first = self._history.claim_cid(
                message, now=self._clock(), window_seconds=self._cid_window
            )
            if first is not None:
                copy = self._copy(message, first)
                if copy is not None:
                    return copy
        try:
            stored = self._store(message)
        except BaseException:
            # Not stored: a copy sent after this failed attempt is the line's
            # only chance (Lambda's retries may fail too), so it must not be
            # dropped as a duplicate of a message that does not exist.
            self._unclaim(message)
            raise
        if isinstance(stored, ModerationResult):
            return stored
        try:
            result = self._deliver(stored, repeat=stored is not message)
        except BaseException:
            # Stored but not published: the claim stays (one history row), and
            # a later copy publishes the stored message instead of being dropped.
            self._quietly(self._history.mark_cid_undelivered, stored)
            raise
        if cid is not None and result.status == "republished":
            # A retry published what an earlier attempt stored: copies are
            # dropped again from now on.
            self._quietly(self._history.mark_cid_delivered, stored)
        return result

    def _copy(self, message: ChatMessage, first: CidClaim) -> ModerationResult | None:
        """Another copy of a line whose ``cid`` an earlier copy claimed: dropped,
        unless the earlier copy never got its message out. If that message is
        stored but was never published (every attempt failed after the history
        write), it is published now, once, under its own id. If the claim is
        older than ``STALE_CID_CLAIM_SECONDS`` and its message is not stored,
        its attempt died without releasing it: this copy takes the claim over
        and None says "handle it as the line"."""
        if first.undelivered:
            stored = self._history.get(message.room, first.message_id)
            if stored is not None:
                result = self._deliver(stored, repeat=True)
                self._quietly(self._history.mark_cid_delivered, stored)
                return result
        now = self._clock()
        if (
            first.claimed_at is not None
            and now - first.claimed_at >= STALE_CID_CLAIM_SECONDS
            and self._history.get(message.room, first.message_id) is None
            and self._history.take_over_cid(
                message, first, now=now, window_seconds=self._cid_window
            )
        ):
            return None
        logger.info(
            "chat message dropped: a copy of a line already handled",
            extra={"room": message.room, "sender": message.sender, "id": first.message_id},
        )
        return ModerationResult("duplicate", duplicate_of=first.message_id)

    def _store(self, message: ChatMessage) -> ChatMessage | ModerationResult:
        """Count ``message`` against its sender's rate and append it to the history:
        what is stored under its id (``message``, or what an earlier attempt of
        the same event stored), or the rejection for the rate."""
        try:
            self._history.take_rate_token(
                message.sender, per_window=self._rate_messages, window_seconds=self._rate_window
            )
        except RateLimited:
            # A retry of a message that was stored (its first attempt then
            # failed to publish) counts again; it must not be refused now.
            stored = self._history.get(message.room, message.id)
            if stored is not None:
                return stored
            # Refused, so not handled: the same line sent again once the
            # rate allows must not count as a copy.
            self._unclaim(message)
            return self._reject(message.sender, message.room, "rate_limited")
        return self._history.append(message)

    def _unclaim(self, message: ChatMessage) -> None:
        if message.cid is not None:
            self._quietly(
                lambda claimed: self._history.release_cid(claimed, now=self._clock()), message
            )

    @staticmethod
    def _quietly(update: Callable[[ChatMessage], None], message: ChatMessage) -> None:
        """Run a bookkeeping write on ``message``'s claim whose own failure must not
        hide the failure being handled (that one raises, for Lambda's retry)."""
        try:
            update(message)
        except ServiceUnavailable:
            logger.warning(
                "could not update a chat line's cid claim",
                extra={"room": message.room, "id": message.id},
            )

    def _deliver(self, message: ChatMessage, *, repeat: bool) -> ModerationResult:
        """Publish the stored ``message`` to its room (again, for a repeated input:
        same id, so clients that already show it drop the copy)."""
        self._publish(str(self._scheme.chat(message.room)), message.to_json())
        status = "republished" if repeat else "published"
        logger.info(f"chat message {status}", extra={"room": message.room, "id": message.id})
        return ModerationResult(status, message=message)

    def _received_at(self, raw: Any) -> int | None:
        """The rule's ``receivedAt`` (IoT SQL ``timestamp()``: epoch ms when the
        broker received the message) if plausible, else None.

        Ids come from it so that lines sent quickly, whose invocations run in
        parallel and finish in any order, still sort in the order the broker
        received them, and so that a retried invocation of the same event
        makes the same id. Plausible: an int in [now - ``MAX_RECEIVED_AGE_MS``,
        now + ``MAX_CLOCK_SKEW_MS``].
        """
        if not isinstance(raw, int) or isinstance(raw, bool):
            return None
        now_ms = int(self._clock() * 1000)
        if not now_ms - MAX_RECEIVED_AGE_MS <= raw <= now_ms + MAX_CLOCK_SKEW_MS:
            return None
        return raw

    def _reject(self, sender: str, room: str, reason: str, *, size: int = -1) -> ModerationResult:
        # INFO, not WARNING: one client can send 100 a second (IoT's
        # per-connection publish limit), and each line is paid for.
        logger.info(
            "chat message rejected",
            extra={"room": room, "sender": sender, "reason": reason, "payloadBytes": size},
        )
        self._rejections.count(reason)
        note = Notification.create(
            title="Message not sent",
            body={
                "empty": "The message was empty.",
                "malformed": 'Send a JSON object with a string "text".',
                "invalid": "The message is not valid Unicode text.",
                "too_long": f"Messages are at most {self._max_chars} characters.",
                "invalid_cid": (
                    f'A "cid" must be {MIN_CHAT_CID_CHARS} to {MAX_CHAT_CID_CHARS} '
                    "characters from A-Z a-z 0-9 _ - (or left out)."
                ),
                "rate_limited": "You are sending too fast; wait a moment.",
            }[reason],
            type=CHAT_REJECTED_TYPE,
            data={"room": room, "reason": reason},
        )
        self._publish(str(self._scheme.user_notifications(sender)), note.to_json())
        return ModerationResult("rejected", reason)

    def _publish(self, topic: str, payload: bytes) -> None:
        try:
            self._iot_data.publish(topic=topic, qos=0, payload=payload)
        except (BotoCoreError, ClientError) as exc:
            raise ServiceUnavailable(f"could not publish to {topic}") from exc
