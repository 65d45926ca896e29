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
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import BotoCoreError, ClientError

from iotnotify.contract import Notification, loads_strict, validate_user_id
from iotnotify.errors import ContractError, InvalidArgument, InvalidEnvelope, PublishError

__all__ = [
    "BATCH_WRITE_LIMIT",
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_BYTES",
    "MAX_PAGE_SIZE",
    "BatchWrite",
    "Inbox",
    "InboxPage",
]

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
log = logging.getLogger("iotnotify.inbox")
# DynamoDB BatchWriteItem takes at most 25 put/delete requests (and 16 MB)
# per call (DynamoDB API reference, BatchWriteItem).
BATCH_WRITE_LIMIT: Final = 25
_DAY: Final = 86_400
# UnprocessedItems are retried with exponential backoff, as the BatchWriteItem
# reference asks: 50 ms, 100 ms, 200 ms, 400 ms, then the rest fail.
_UNPROCESSED_ATTEMPTS: Final = 5
_UNPROCESSED_BACKOFF: Final = 0.05


@dataclass(frozen=True, slots=True)
class InboxPage:
    notifications: tuple[Notification, ...]
    # Pass as ``since`` to get the next page; None when this was the last.
    next_since: str | None


# (table name, flat items) -> the items DynamoDB left unprocessed; raises
# botocore's errors. FastBatchWrite.write has this shape.
BatchWrite = Callable[[str, Sequence[Mapping[str, Any]]], Sequence[Mapping[str, Any]]]


class Inbox:
    """Reads and writes one DynamoDB inbox table (a boto3 ``Table`` resource).

    ``batch_write`` sends :meth:`put_batch`'s BatchWriteItem calls (a
    :class:`~iotnotify.dynamodb_batch.FastBatchWrite`'s ``write``, as
    ``Publisher.create`` wires it); by default the table's own client does.
    """

    def __init__(
        self,
        table: Any,
        *,
        ttl_days: int = 7,
        clock: Any = time.time,
        sleep: Callable[[float], None] = time.sleep,
        batch_write: BatchWrite | None = None,
    ) -> None:
        self._table = table
        self._ttl_seconds = ttl_days * _DAY
        self._clock = clock
        self._sleep = sleep
        self._batch_write = batch_write or self._resource_batch_write

    def _resource_batch_write(
        self, name: str, items: Sequence[Mapping[str, Any]]
    ) -> Sequence[Mapping[str, Any]]:
        # The resource's client serialises plain Python values (boto3's
        # TransformationInjector), as ``batch_writer`` relies on too.
        requests = [{"PutRequest": {"Item": item}} for item in items]
        answer = self.client.batch_write_item(RequestItems={name: requests})
        left = answer.get("UnprocessedItems", {}).get(name, [])
        return [request["PutRequest"]["Item"] for request in left]

    @property
    def client(self) -> Any:
        """The low-level DynamoDB client under the table (its HTTP pool bounds concurrency)."""
        return self._table.meta.client

    def _item(
        self, user_id: str, note: Notification, envelope: str | None = None
    ) -> dict[str, Any]:
        return {
            "userId": user_id,
            "id": note.id,
            "expiresAt": int(self._clock()) + self._ttl_seconds,
            # Kept as the exact JSON sent on the wire, so catch-up returns
            # byte-for-byte what a live subscriber would have seen.
            "envelope": envelope if envelope is not None else note.to_json().decode("utf-8"),
        }

    def put(self, user_id: str, note: Notification) -> None:
        validate_user_id(user_id)
        try:
            self._table.put_item(Item=self._item(user_id, note))
        except (BotoCoreError, ClientError) as exc:
            raise PublishError(f"inbox write for {user_id!r} failed: {exc}") from exc

    def put_batch(self, entries: Sequence[tuple[str, Notification]]) -> dict[str, str]:
        """Write at most :data:`BATCH_WRITE_LIMIT` notifications in one BatchWriteItem.

        Returns the user ids whose item was not written, with the reason
        (empty when all were). Items DynamoDB hands back as
        ``UnprocessedItems`` (throttling) are resent with exponential
        backoff, 5 attempts in all; botocore itself retries throttled and
        transient errors per its retry configuration; a call that still
        fails fails the whole batch. Raises
        :class:`~iotnotify.errors.InvalidUserId` for a bad user id (before
        any AWS call) and :class:`~iotnotify.errors.InvalidArgument` (a
        ``ValueError``) for more than 25 entries.
        """
        if len(entries) > BATCH_WRITE_LIMIT:
            raise InvalidArgument(f"a batch holds at most {BATCH_WRITE_LIMIT} items")
        # A fan-out's batch is one notification for 25 users: encode it once.
        envelopes: dict[int, str] = {}
        for _, note in entries:
            if id(note) not in envelopes:
                envelopes[id(note)] = note.to_json().decode("utf-8")
        # One item per key: BatchWriteItem refuses a batch that names a key twice.
        items = {
            (user_id, note.id): self._item(validate_user_id(user_id), note, envelopes[id(note)])
            for user_id, note in entries
        }
        if not items:
            return {}
        pending: Sequence[Mapping[str, Any]] = list(items.values())
        name = self._table.name
        try:
            for attempt in range(_UNPROCESSED_ATTEMPTS):
                if attempt:
                    self._sleep(_UNPROCESSED_BACKOFF * 2 ** (attempt - 1))
                pending = self._batch_write(name, pending)
                if not pending:
                    return {}
        except (BotoCoreError, ClientError) as exc:
            reason = f"inbox batch write failed: {exc}"
            return {user_id: reason for user_id, _ in items}
        reason = f"inbox write unprocessed after {_UNPROCESSED_ATTEMPTS} attempts (throttled)"
        return {str(item["userId"]): reason for item in pending}

    def put_many(
        self,
        entries: Iterable[tuple[str, Notification]],
        *,
        executor: Executor | None = None,
        max_workers: int = 8,
    ) -> dict[str, str]:
        """Write many notifications, batches of 25 in parallel; returns the failures.

        The result maps each user id whose item was not written to the
        reason (empty when everything was written), so a failed batch costs
        only its own recipients. Batches run on ``executor`` when given,
        else on a pool of ``max_workers`` threads; each batch in flight
        holds one HTTP connection, so the DynamoDB client's
        ``max_pool_connections`` should be at least the concurrency.
        """
        failed: dict[str, str] = {}
        batches: list[list[tuple[str, Notification]]] = []
        for user_id, note in entries:
            try:
                validate_user_id(user_id)
            except ContractError as exc:
                failed[user_id] = str(exc)
                continue
            if not batches or len(batches[-1]) == BATCH_WRITE_LIMIT:
                batches.append([])
            batches[-1].append((user_id, note))
        if len(batches) <= 1:
            return failed | (self.put_batch(batches[0]) if batches else {})
        own = executor is None
        pool = executor or ThreadPoolExecutor(
            max_workers=min(max_workers, len(batches)), thread_name_prefix="iotnotify-inbox"
        )
        try:
            for outcome in [pool.submit(self.put_batch, batch) for batch in batches]:
                failed |= outcome.result()
        finally:
            if own:
                pool.shutdown(wait=True)
        return failed

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
        cap ended the page. The read is strongly consistent: it sees every
        write that completed before it. Raises ``PublishError`` if DynamoDB fails and
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
            # Strongly consistent: a catch-up starts right after the client
            # subscribed, and a notification written a moment before (whose
            # live copy it missed) must be in it. An eventually consistent
            # Query "may not reflect the results of a recently completed
            # write" (DynamoDB developer guide, "Read consistency"); the
            # price is twice the read units of one page per (re)connect.
            "ConsistentRead": True,
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
                    try:
                        found.append(self._parse(item))
                    except InvalidEnvelope as exc:
                        # One corrupt item (written before envelopes were strict)
                        # must not make the whole page unreadable.
                        log.warning("skipping inbox item of %s: %s", user_id, exc)
                        continue
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
            # Strict: an envelope holding NaN would make the whole page non-JSON.
            return Notification.from_dict(loads_strict(str(item["envelope"]), what="envelope"))
        except (KeyError, ContractError) as exc:
            raise InvalidEnvelope(f"corrupt inbox item {item.get('id')!r}") from exc
