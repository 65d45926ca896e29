"""The per-user inbox: every notification worth keeping, for catch-up.

QoS 0 loses what is sent while a client is offline, so publishers also write
each notification here; a client that (re)connects asks for everything after
the last id it saw. Items live in DynamoDB under (``userId``, ``id``) with a
TTL attribute; ids are ULIDs, so key order is send order and ``id > since``
is exactly "what I missed". A caller can only name its own ``userId``: the
HTTP handler takes it from the verified token, never from the query.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import BotoCoreError, ClientError

from iotnotify.contract import Notification, loads_strict, validate_user_id
from iotnotify.errors import ContractError, InvalidEnvelope, PublishError

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "Inbox", "InboxPage"]

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 100
log = logging.getLogger("iotnotify.inbox")
_DAY: Final = 86_400


@dataclass(frozen=True, slots=True)
class InboxPage:
    notifications: tuple[Notification, ...]
    # Pass as ``since`` to get the next page; None when this was the last.
    next_since: str | None


class Inbox:
    """Reads and writes one DynamoDB inbox table (a boto3 ``Table`` resource)."""

    def __init__(self, table: Any, *, ttl_days: int = 7, clock: Any = time.time) -> None:
        self._table = table
        self._ttl_seconds = ttl_days * _DAY
        self._clock = clock

    def _item(self, user_id: str, note: Notification) -> dict[str, Any]:
        return {
            "userId": user_id,
            "id": note.id,
            "expiresAt": int(self._clock()) + self._ttl_seconds,
            # Kept as the exact JSON sent on the wire, so catch-up returns
            # byte-for-byte what a live subscriber would have seen.
            "envelope": note.to_json().decode("utf-8"),
        }

    def put(self, user_id: str, note: Notification) -> None:
        validate_user_id(user_id)
        try:
            self._table.put_item(Item=self._item(user_id, note))
        except (BotoCoreError, ClientError) as exc:
            raise PublishError(f"inbox write for {user_id!r} failed: {exc}") from exc

    def put_many(self, entries: Iterable[tuple[str, Notification]]) -> None:
        """Batch writes (25 per request; boto3 retries unprocessed items)."""
        try:
            with self._table.batch_writer(overwrite_by_pkeys=["userId", "id"]) as batch:
                for user_id, note in entries:
                    batch.put_item(Item=self._item(validate_user_id(user_id), note))
        except (BotoCoreError, ClientError) as exc:
            raise PublishError(f"inbox batch write failed: {exc}") from exc

    def since(
        self, user_id: str, since: str | None = None, *, limit: int = DEFAULT_PAGE_SIZE
    ) -> InboxPage:
        """Notifications of ``user_id`` with id greater than ``since``, oldest first."""
        validate_user_id(user_id)
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        condition: Any = Key("userId").eq(user_id)
        if since:
            condition = condition & Key("id").gt(since)
        query: dict[str, Any] = {
            "KeyConditionExpression": condition,
            # TTL deletion is lazy (up to days late): never serve expired items.
            "FilterExpression": Attr("expiresAt").gt(int(self._clock())),
            "ScanIndexForward": True,
            "Limit": limit,
        }
        found: list[Notification] = []
        try:
            while True:
                answer = self._table.query(**query)
                for item in answer.get("Items", []):
                    try:
                        found.append(self._parse(item))
                    except InvalidEnvelope as exc:
                        # One corrupt item (written before envelopes were strict)
                        # must not make the whole page unreadable.
                        log.warning("skipping inbox item of %s: %s", user_id, exc)
                last_key = answer.get("LastEvaluatedKey")
                # A filtered page can come back short; keep reading until the
                # page is full or the partition is exhausted.
                if last_key is None or len(found) >= limit:
                    break
                query["ExclusiveStartKey"] = last_key
                query["Limit"] = limit - len(found)
        except (BotoCoreError, ClientError) as exc:
            raise PublishError(f"inbox read for {user_id!r} failed: {exc}") from exc
        more = last_key is not None
        page = tuple(found[:limit])
        next_since = page[-1].id if more and page else None
        return InboxPage(notifications=page, next_since=next_since)

    @staticmethod
    def _parse(item: dict[str, Any]) -> Notification:
        try:
            # Strict: an envelope holding NaN would make the whole page non-JSON.
            return Notification.from_dict(loads_strict(str(item["envelope"]), what="envelope"))
        except (KeyError, ContractError) as exc:
            raise InvalidEnvelope(f"corrupt inbox item {item.get('id')!r}") from exc
