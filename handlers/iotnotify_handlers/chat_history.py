"""Chat history: the moderated messages of each room, newest kept, oldest expiring.

Table (``{app}-{stage}-chat-history``): partition key ``room``, sort key
``id`` (the message's ULID, so ids sort by time), TTL attribute
``expiresAt`` (epoch seconds). The same table keeps the moderator's
per-sender rate counters under partition keys ``#rate#{userId}`` and the
``cid`` of each recent input (:meth:`ChatHistory.claim_cid`) under
``#cid#{room}``, sort key ``{userId}#{cid}``, attributes ``messageId``,
``claimedAt`` (epoch s) and, while that message is stored but not yet
published, ``undelivered``; ``#``
is outside the room-name, user-id and cid alphabets, so they never mix with
a room's messages or with each other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from boto3.dynamodb.conditions import Key
from botocore.exceptions import BotoCoreError, ClientError

from iotnotify.contract import ChatMessage, is_notification_id
from iotnotify_handlers.errors import BadRequest, ServiceUnavailable

__all__ = ["ChatHistory", "CidClaim", "HistoryPage", "RateLimited"]

_RATE_PREFIX: Final = "#rate#"
_CID_PREFIX: Final = "#cid#"


def _conditional_write(write: Callable[[], object], *, failure: str) -> bool:
    """Run one conditional DynamoDB write: True when it was applied, False when
    its condition did not hold (``ConditionalCheckFailedException``); any other
    failure is a 503 (:class:`ServiceUnavailable`) saying ``could not {failure}``."""
    try:
        write()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise ServiceUnavailable(f"could not {failure}") from exc
        return False
    except BotoCoreError as exc:
        raise ServiceUnavailable(f"could not {failure}") from exc
    return True


class RateLimited(Exception):
    """A sender went over the per-sender message rate (the message is dropped)."""


@dataclass(frozen=True, slots=True)
class CidClaim:
    """The claim an earlier copy of a line holds on its ``cid``: ``message_id``
    is the id of the message that copy became; ``undelivered`` is True while
    that message is stored but every attempt to publish it has failed
    (:meth:`ChatHistory.mark_cid_undelivered`)."""

    message_id: str
    undelivered: bool = False
    claimed_at: int | None = None  # epoch s; None for a claim written before it was kept


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Oldest first; ``before`` is what to pass for the page before this one (None: no more)."""

    messages: tuple[ChatMessage, ...]
    before: str | None

    def to_json(self) -> dict[str, Any]:
        return {"messages": [m.to_dict() for m in self.messages], "next": self.before}


class ChatHistory:
    """``table`` is a boto3 ``Table`` resource; entries live ``ttl_days``."""

    def __init__(self, table: Any, *, ttl_days: int = 30) -> None:
        self._table = table
        self._ttl_seconds = ttl_days * 86400

    def append(self, message: ChatMessage) -> ChatMessage:
        """Store ``message`` unless its id is already stored; returns what is stored.

        A conditional put (``attribute_not_exists(id)``), so a message whose id
        is derived from its input (a retried invocation of the moderator gets
        the same id: :meth:`ChatMessage.create` with ``id_seed``) is kept once.
        On a repeat the answer is the message stored first, which the caller
        publishes again instead of the new one (its masked text may differ if
        the denylist changed in between); 503 (:class:`ServiceUnavailable`) if
        DynamoDB fails.
        """
        item = {
            **message.to_dict(),
            "expiresAt": int(time.time()) + self._ttl_seconds,
        }
        if _conditional_write(
            lambda: self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(id)"),
            failure="store the message",
        ):
            return message
        stored = self.get(message.room, message.id)
        # Gone between the two calls only if its TTL ran out: keep this one.
        return message if stored is None else stored

    def claim_cid(
        self, message: ChatMessage, *, now: float, window_seconds: int
    ) -> CidClaim | None:
        """Record that ``message.sender`` sent ``message.cid`` in ``message.room``;
        None if this is the first copy, else the claim of the copy that was
        first (this one is a copy of it: :class:`CidClaim`).

        One conditional put, so two copies handled at once by two Lambda
        instances cannot both win. The claim holds ``window_seconds`` from
        ``now`` (epoch s). It is won when no claim exists, when the one there
        has expired (TTL deletes expired items only eventually, typically
        within two days, and reads see them until then: DynamoDB developer
        guide, "Working with expired items"), or when it names this
        message's id: a retried invocation of the same event makes the same
        id (:meth:`ChatMessage.create` with ``id_seed``) and must go on, so
        that a message whose first attempt failed is still delivered.
        ``message.cid`` must be set. 503 (:class:`ServiceUnavailable`) if
        DynamoDB fails.
        """
        if message.cid is None:
            raise ValueError("claim_cid needs a message with a cid")
        key = self._cid_key(message)
        if _conditional_write(
            lambda: self._table.put_item(
                Item=self._claim_item(message, now=now, window_seconds=window_seconds),
                ConditionExpression=(
                    "attribute_not_exists(id) OR expiresAt <= :now OR messageId = :mid"
                ),
                ExpressionAttributeValues={":now": int(now), ":mid": message.id},
            ),
            failure="check the message id",
        ):
            return None
        try:
            item = self._table.get_item(Key=key, ConsistentRead=True).get("Item") or {}
        except (BotoCoreError, ClientError) as exc:
            raise ServiceUnavailable("could not check the message id") from exc
        claimed_at = item.get("claimedAt")
        return CidClaim(
            str(item.get("messageId", "")),
            undelivered=bool(item.get("undelivered")),
            claimed_at=None if claimed_at is None else int(claimed_at),
        )

    def take_over_cid(
        self, message: ChatMessage, first: CidClaim, *, now: float, window_seconds: int
    ) -> bool:
        """Claim ``message.cid`` for ``message`` in place of ``first``, the claim
        read from the table; False if that claim changed meanwhile (another copy
        took it). For a claim whose attempt died before it could store or
        release anything (a Lambda timeout, a crash). 503
        (:class:`ServiceUnavailable`) if DynamoDB fails."""
        if first.claimed_at is None:
            return False
        return _conditional_write(
            lambda: self._table.put_item(
                Item=self._claim_item(message, now=now, window_seconds=window_seconds),
                ConditionExpression="messageId = :first AND claimedAt = :at",
                ExpressionAttributeValues={":first": first.message_id, ":at": first.claimed_at},
            ),
            failure="check the message id",
        )

    def _claim_item(
        self, message: ChatMessage, *, now: float, window_seconds: int
    ) -> dict[str, Any]:
        """The item of ``message``'s claim of its cid, made at ``now`` (epoch s)."""
        return {
            **self._cid_key(message),
            "messageId": message.id,
            "claimedAt": int(now),
            "expiresAt": int(now) + window_seconds,
        }

    def release_cid(self, message: ChatMessage, *, now: float) -> None:
        """Undo :meth:`claim_cid` for ``message`` (it was refused, so a later copy
        is not a duplicate): the claim is marked expired at ``now`` (epoch s),
        if it is still this message's. An update, not a delete, so the
        moderator needs no permission it did not have; TTL removes the item."""
        # A claim no longer this message's (expired, taken by a later copy) is left.
        _conditional_write(
            lambda: self._table.update_item(
                Key=self._cid_key(message),
                UpdateExpression="SET expiresAt = :now",
                ConditionExpression="messageId = :mid",
                ExpressionAttributeValues={":now": int(now), ":mid": message.id},
            ),
            failure="release the message id",
        )

    def mark_cid_undelivered(self, message: ChatMessage) -> None:
        """Note on ``message``'s claim that it is stored but could not be published,
        so that a later copy of the line publishes it instead of being dropped
        (its claim stays: the line is stored once). Left alone if the claim is
        no longer this message's. 503 (:class:`ServiceUnavailable`) if DynamoDB fails."""
        self._set_undelivered(message, undelivered=True)

    def mark_cid_delivered(self, message: ChatMessage) -> None:
        """Undo :meth:`mark_cid_undelivered` once ``message`` has been published."""
        self._set_undelivered(message, undelivered=False)

    def _set_undelivered(self, message: ChatMessage, *, undelivered: bool) -> None:
        values: dict[str, Any] = {":mid": message.id}
        if undelivered:
            values[":yes"] = True
        _conditional_write(
            lambda: self._table.update_item(
                Key=self._cid_key(message),
                UpdateExpression="SET undelivered = :yes" if undelivered else "REMOVE undelivered",
                ConditionExpression="messageId = :mid",
                ExpressionAttributeValues=values,
            ),
            failure="record the message's delivery",
        )

    @staticmethod
    def _cid_key(message: ChatMessage) -> dict[str, str]:
        return {"room": f"{_CID_PREFIX}{message.room}", "id": f"{message.sender}#{message.cid}"}

    def get(self, room: str, message_id: str) -> ChatMessage | None:
        """The stored message ``message_id`` of ``room`` (a consistent read), or None."""
        try:
            item = self._table.get_item(
                Key={"room": room, "id": message_id}, ConsistentRead=True
            ).get("Item")
        except (BotoCoreError, ClientError) as exc:
            raise ServiceUnavailable("could not read the history, try again") from exc
        return None if item is None else ChatMessage.from_dict(item)

    def page(self, room: str, *, limit: int, before: str | None) -> HistoryPage:
        """The ``limit`` messages before ``before`` (a message id), oldest first."""
        # Message ids are ULIDs, as notification ids are (the contract's rule).
        if before is not None and not is_notification_id(before):
            raise BadRequest("before must be a message id (a 26-character ULID)")
        condition: Any = Key("room").eq(room)
        if before is not None:
            condition = condition & Key("id").lt(before)
        try:
            answer = self._table.query(
                KeyConditionExpression=condition,
                ScanIndexForward=False,  # newest first, so the page is the latest ones
                Limit=limit,
            )
        except (BotoCoreError, ClientError) as exc:
            raise ServiceUnavailable("could not read the history, try again") from exc
        items = answer.get("Items", [])
        messages = tuple(ChatMessage.from_dict(item) for item in reversed(items))
        more = bool(answer.get("LastEvaluatedKey")) and bool(messages)
        return HistoryPage(messages=messages, before=messages[0].id if more else None)

    def take_rate_token(self, sender: str, *, per_window: int, window_seconds: int) -> None:
        """Count one message of ``sender`` in the current fixed window, or :class:`RateLimited`.

        One conditional update per message, so the limit holds across every
        concurrent Lambda instance, not per process.
        """
        window = int(time.time()) // window_seconds
        counted = _conditional_write(
            lambda: self._table.update_item(
                Key={"room": f"{_RATE_PREFIX}{sender}", "id": str(window)},
                UpdateExpression="ADD #n :one SET expiresAt = :expires",
                ConditionExpression="attribute_not_exists(#n) OR #n < :max",
                ExpressionAttributeNames={"#n": "count"},
                ExpressionAttributeValues={
                    ":one": 1,
                    ":max": per_window,
                    ":expires": (window + 2) * window_seconds,
                },
            ),
            failure="count the message",
        )
        if not counted:
            raise RateLimited(
                f"{sender} sent more than {per_window} messages in {window_seconds} s"
            )
