"""DynamoDB ``BatchWriteItem`` of flat items, without the boto3 resource's per-call work.

A fan-out writes one inbox item per user, 25 per ``BatchWriteItem``. Through
a boto3 ``Table`` resource a call costs 2.3 ms of CPU single-threaded
(``Inbox.put_batch`` against ``iotnotify local``; 0.7 ms through this
module), and in the 64-thread fan-out of ``bench/fanout_latency.py`` these
calls were 40% of the publisher's CPU: boto3's ``TypeSerializer`` walks
every attribute, then botocore validates and serialises the typed items
against the service model and parses the answer the same way. The
items here are flat (strings and integers), so their DynamoDB JSON is one
dictionary comprehension and ``json.dumps``; the request is the one botocore
sends (``POST /``, ``X-Amz-Target: DynamoDB_20120810.BatchWriteItem``,
``Content-Type: application/x-amz-json-1.0``, DynamoDB API reference,
"BatchWriteItem" and "DynamoDB low-level API") and goes through
:class:`~iotnotify.signed_http.SignedEndpoint`, so signing, hooks, the
client's retry handler (standard mode: 4 attempts for DynamoDB, the CRC32
check of each answer) and botocore's errors stay the client's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from botocore.exceptions import BotoCoreError

from iotnotify.signed_http import SignedEndpoint

__all__ = ["FastBatchWrite", "PlainItem", "UnexpectedAnswer"]

# A flat item: attribute name -> string (S) or integer (N).
PlainItem = Mapping[str, str | int]


class UnexpectedAnswer(BotoCoreError):
    """A 2xx answer that is not BatchWriteItem's JSON.

    A ``BotoCoreError``, so callers that handle botocore's failures (the
    inbox fails the batch's users) handle this one too; botocore's own
    ``parsers.ResponseParserError`` is a bare ``Exception``.
    """

    fmt = "unexpected BatchWriteItem answer ({error})"


_TARGET: Final = "DynamoDB_20120810.BatchWriteItem"
_HEADERS: Final = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": _TARGET}


def _typed(item: PlainItem) -> dict[str, dict[str, str]]:
    typed: dict[str, dict[str, str]] = {}
    for name, value in item.items():
        if isinstance(value, str):
            typed[name] = {"S": value}
        elif isinstance(value, int) and not isinstance(value, bool):
            typed[name] = {"N": str(value)}
        else:
            raise TypeError(f"attribute {name!r}: only str and int are written, not {value!r}")
    return typed


def _plain(item: Mapping[str, Mapping[str, str]]) -> dict[str, str | int]:
    plain: dict[str, str | int] = {}
    for name, value in item.items():
        if "S" in value:
            plain[name] = value["S"]
        elif "N" in value:
            plain[name] = int(value["N"])
        else:
            raise ValueError(f"attribute {name!r}: unexpected type {sorted(value)}")
    return plain


class FastBatchWrite:
    """``write(table, items)``: put up to 25 flat items; returns the unprocessed ones.

    ``client`` is a boto3 ``dynamodb`` client (a resource's
    ``meta.client`` will do); ``credentials`` returns botocore credentials.
    Raises the client's ``ClientError`` for an error answer (after its
    retries), :class:`UnexpectedAnswer` (a ``BotoCoreError``) for a 2xx answer that is
    not BatchWriteItem's JSON (or names attributes other than S and N),
    ``TypeError`` for an item attribute that is neither ``str`` nor ``int``,
    or botocore's transport errors. Thread-safe.
    """

    def __init__(
        self,
        client: Any,
        credentials: Callable[[], Any],
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._endpoint = SignedEndpoint(client, credentials, sleep=sleep or time.sleep)
        self.meta = client.meta  # its config's max_pool_connections bounds the fan-out

    def write(self, table: str, items: Sequence[PlainItem]) -> list[dict[str, str | int]]:
        """Put ``items`` into ``table`` in one BatchWriteItem (at most 25, DynamoDB's limit)."""
        requests = [{"PutRequest": {"Item": _typed(item)}} for item in items]
        body = json.dumps({"RequestItems": {table: requests}}, separators=(",", ":"))
        answer = self._endpoint.call(
            "BatchWriteItem", path="/", headers=_HEADERS, body=body.encode("utf-8")
        )
        try:
            parsed = json.loads(answer.content or b"{}")
            left = parsed.get("UnprocessedItems", {}).get(table, [])
            return [_plain(request["PutRequest"]["Item"]) for request in left]
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            # Callers fail the batch's users on a BotoCoreError; a ValueError
            # escaping here would abort the whole fan-out instead.
            raise UnexpectedAnswer(error=f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Release the idle kept-alive connections (the client itself stays usable)."""
        self._endpoint.close()
