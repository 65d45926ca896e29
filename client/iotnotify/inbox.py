"""The per-user inbox: every notification worth keeping, for catch-up.

QoS 0 loses what is sent while a client is offline, so publishers also write
each notification here; a client that (re)connects asks for everything after
the last id it saw. Items live in DynamoDB under (``userId``, ``id``) with a
TTL attribute; ids are ULIDs, so key order is send order and ``id > since``
is exactly "what I missed". A caller can only name its own ``userId``: the
HTTP handler takes it from the verified token, never from the query.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import BotoCoreError, ClientError

from iotnotify.contract import Notification, validate_user_id
from iotnotify.errors import InvalidEnvelope, PublishError

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_BYTES", "MAX_PAGE_SIZE", "Inbox", "InboxPage"]

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 100
# A page is also capped by bytes: 60 notifications of 120 KB would make a
# 7.2 MB answer, over Lambda's 6 MB response limit (a 502 from API Gateway).
# Counted as the envelopes' stored UTF-8 JSON. On the way out each byte can
# grow up to 3.5 times (a 4-byte emoji stored raw becomes "\ud83d\ude00" in
# the handler's ASCII JSON, then gains a backslash per escape when the Lambda
# runtime encodes that body as a JSON string), so 1 MiB stays under 3.5 MiB
# plus framing: well inside 6 MB whatever the text.
MAX_PAGE_BYTES: Final = 1024 * 1024
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
        self,
        user_id: str,
        since: str | None = None,
        *,
        limit: int = DEFAULT_PAGE_SIZE,
        max_bytes: int = MAX_PAGE_BYTES,
    ) -> InboxPage:
        """Notifications of ``user_id`` with id greater than ``since``, oldest first.

        A page holds at most ``limit`` notifications (1..``MAX_PAGE_SIZE``) and
        at most ``max_bytes`` bytes of envelopes (UTF-8 JSON), but always at
        least one notification when there is one (an envelope is at most
        128 KB). ``next_since`` is set whenever more may follow, whichever
        cap ended the page. Raises ``PublishError`` if DynamoDB fails and
        ``InvalidEnvelope`` for a corrupt item.
        """
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
        used = 0
        full = False  # the byte cap ended the page: an item was left for the next one
        try:
            while not full:
                answer = self._table.query(**query)
                for item in answer.get("Items", []):
                    size = len(str(item.get("envelope", "")).encode("utf-8"))
                    if found and used + size > max_bytes:
                        full = True
                        break
                    found.append(self._parse(item))
                    used += size
                last_key = answer.get("LastEvaluatedKey")
                # A filtered page can come back short; keep reading until the
                # page is full or the partition is exhausted.
                if last_key is None or len(found) >= limit:
                    break
                query["ExclusiveStartKey"] = last_key
                query["Limit"] = limit - len(found)
        except (BotoCoreError, ClientError) as exc:
            raise PublishError(f"inbox read for {user_id!r} failed: {exc}") from exc
        more = full or last_key is not None
        page = tuple(found[:limit])
        next_since = page[-1].id if more and page else None
        return InboxPage(notifications=page, next_since=next_since)

    @staticmethod
    def _parse(item: dict[str, Any]) -> Notification:
        try:
            return Notification.from_dict(json.loads(str(item["envelope"])))
        except (KeyError, json.JSONDecodeError) as exc:
            raise InvalidEnvelope(f"corrupt inbox item {item.get('id')!r}") from exc
