"""Presence: who has a live connection, from AWS IoT's lifecycle events.

AWS IoT publishes ``$aws/events/presence/connected/{clientId}`` and
``.../disconnected/{clientId}`` with ``clientId``, ``timestamp`` (ms since
the epoch), ``eventType`` and ``sessionIdentifier`` (developer guide,
"Lifecycle events", life-cycle-events.html). The same page warns:
"Lifecycle messages might be sent out of order. You might receive duplicate
messages." So a counter that goes up on connect and down on disconnect
drifts. Instead the presence table keeps **one record per session**
(partition ``userId``, sort key ``sessionId``) and every event is a
conditional write that only lands if it is newer than what the record holds:

* order within a session is ``(timestamp, disconnected after connected)``,
  stored as ``seq = timestamp * 2 + (1 if disconnected)``; the write's
  condition is ``attribute_not_exists(seq) OR seq < :seq``;
* a duplicate has an equal ``seq`` and is refused; a ``connected`` that
  arrives after its own ``disconnected`` is older and refused, so the
  session stays closed (the disconnect is a tombstone);
* a user's live connections are their records in state ``connected``.

Records expire (DynamoDB TTL on ``expiresAt``) after
:data:`MAX_CONNECTION_SECONDS` plus a margin: AWS closes every WebSocket
connection after 24 h ("AWS IoT Core endpoints and quotas"), so a
``connected`` record older than that is a lost ``disconnected`` and is not
counted even before TTL removes it.

**Catch-up hint.** ``GET /notifications`` (the catch-up every client runs
after it has subscribed) records ``#catchup`` for its user *before* it reads
the inbox. :meth:`PresenceTable.reachable` counts a fresh hint as reachable,
and :class:`~iotnotify.publisher.Publisher` with ``skip_offline`` writes the
inbox *before* it reads presence. With consistent reads either the
publisher sees the hint (and publishes live to a client that has already
subscribed), or its read came before the hint was written, so its inbox
write came before the client's inbox read, and the catch-up returns it. A
connect racing a send therefore never loses the message, even while the
``connected`` event is still on its way through the rule.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from botocore.exceptions import BotoCoreError, ClientError

from iotnotify.contract import user_of_client_id
from iotnotify.errors import ContractError, IotNotifyError

__all__ = [
    "CATCH_UP_GRACE_SECONDS",
    "CATCH_UP_SESSION",
    "MAX_CONNECTION_SECONDS",
    "MAX_PRESENCE_USERS",
    "PRESENCE_EVENTS_FILTER",
    "PresenceError",
    "PresenceEvent",
    "PresenceTable",
    "UserPresence",
]

# Both lifecycle event topics; the presence rule's FROM (DESIGN.md "Presence").
PRESENCE_EVENTS_FILTER: Final = "$aws/events/presence/+/+"
# AWS IoT Core closes WebSocket connections after 24 hours (quotas page,
# "Maximum connection duration"), so no session is live longer than this.
MAX_CONNECTION_SECONDS: Final = 24 * 3600
# Records outlive the longest connection by an hour, so a late duplicate of a
# session's events still meets its record (and is refused) before TTL.
_RECORD_TTL_SECONDS: Final = MAX_CONNECTION_SECONDS + 3600
# The sort key of the catch-up hint; '#' is outside the session-id alphabet
# AWS uses (a UUID), so it never collides with a real session.
CATCH_UP_SESSION: Final = "#catchup"
# How long a catch-up counts as "reachable" while the connected event is on
# its way (the rule and Lambda take well under a second; a margin of 30 s).
CATCH_UP_GRACE_SECONDS: Final = 30
# GET /presence?users= and one presence read name at most this many users.
MAX_PRESENCE_USERS: Final = 100

EventType = Literal["connected", "disconnected"]


class PresenceError(IotNotifyError):
    """The presence table could not be read or written."""


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """One lifecycle event, reduced to what presence needs.

    ``timestamp`` is milliseconds since the epoch, as AWS sends it.
    """

    user_id: str
    client_id: str
    session_id: str
    event_type: EventType
    timestamp: int

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> PresenceEvent | None:
        """The event, or None for one presence ignores: a client id that is not
        ``{userId}.{suffix}`` (another app's device), an unknown event type, or
        missing fields."""
        event_type = raw.get("eventType")
        if event_type not in ("connected", "disconnected"):
            return None
        client_id = raw.get("clientId")
        session_id = raw.get("sessionIdentifier")
        timestamp = raw.get("timestamp")
        if not isinstance(client_id, str) or not isinstance(session_id, str) or not session_id:
            return None
        if session_id.startswith("#") or not isinstance(timestamp, int | float):
            return None
        try:
            user_id = user_of_client_id(client_id)
        except ContractError:
            return None
        return cls(user_id, client_id, session_id, event_type, int(timestamp))

    @property
    def seq(self) -> int:
        """Order within a session (:func:`_seq`)."""
        return _seq(self.timestamp, self.event_type)


def _updated(table: Any, failure: str, **update: Any) -> bool:
    """``table.update_item(**update)``: True when it was applied, False when its
    condition did not hold; :class:`PresenceError` ("{failure}: ...") when
    DynamoDB fails."""
    try:
        table.update_item(**update)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise PresenceError(f"{failure}: {exc}") from exc
    except BotoCoreError as exc:
        raise PresenceError(f"{failure}: {exc}") from exc
    return True


def _seq(timestamp: int, event_type: EventType) -> int:
    """Order within a session: later timestamps win; at an equal timestamp
    the disconnect wins (a session ends after it starts)."""
    return timestamp * 2 + (1 if event_type == "disconnected" else 0)


@dataclass(frozen=True, slots=True)
class UserPresence:
    """``connections`` live now; ``last_seen`` (ms since the epoch) is now for an
    online user, else the latest event seen, None when nothing is known."""

    user_id: str
    connections: int
    last_seen: int | None

    @property
    def online(self) -> bool:
        return self.connections > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "online": self.online,
            "connections": self.connections,
            "lastSeen": self.last_seen,
        }


class PresenceTable:
    """Per-session presence records in DynamoDB (a boto3 ``Table`` resource).

    ``clock`` returns seconds since the epoch (tests move it).
    """

    def __init__(self, table: Any, *, clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._clock = clock

    # --- writes -----------------------------------------------------------------

    def apply(self, event: PresenceEvent) -> bool:
        """Record ``event`` unless the session already holds a newer or equal one.

        Returns whether it was applied. Raises :class:`PresenceError` when
        DynamoDB fails (the Lambda invocation then fails and is retried).
        """
        # Not applied: a duplicate, or older than what the session holds.
        return _updated(
            self._table,
            f"could not record presence of {event.user_id}",
            Key={"userId": event.user_id, "sessionId": event.session_id},
            UpdateExpression=(
                "SET #state = :state, seq = :seq, ts = :ts, clientId = :client, "
                "expiresAt = :expires"
            ),
            ConditionExpression="attribute_not_exists(seq) OR seq < :seq",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={
                ":state": event.event_type,
                ":seq": event.seq,
                ":ts": event.timestamp,
                ":client": event.client_id,
                ":expires": event.timestamp // 1000 + _RECORD_TTL_SECONDS,
            },
        )

    def end_open_sessions(self) -> int:
        """Record every session still marked connected as disconnected at its last event.

        For a broker that restarted with no connection at all (``iotnotify
        local`` restoring its saved tables): those sessions ended without a
        disconnect event reaching this table, and would otherwise count as
        live connections for :data:`MAX_CONNECTION_SECONDS`. Each update is
        conditional on the session's ``seq`` being unchanged, so an event
        applied meanwhile is kept. Returns how many sessions it ended;
        raises :class:`PresenceError` when DynamoDB fails.
        """
        from boto3.dynamodb.conditions import Attr

        kwargs: dict[str, Any] = {"FilterExpression": Attr("state").eq("connected")}
        ended = 0
        while True:
            try:
                page = self._table.scan(**kwargs)
            except (BotoCoreError, ClientError) as exc:
                raise PresenceError(f"could not list open sessions: {exc}") from exc
            for item in page.get("Items", []):
                applied = _updated(
                    self._table,
                    "could not end session",
                    Key={"userId": item["userId"], "sessionId": item["sessionId"]},
                    UpdateExpression="SET #state = :state, seq = :seq",
                    ConditionExpression="seq = :old",
                    ExpressionAttributeNames={"#state": "state"},
                    ExpressionAttributeValues={
                        ":state": "disconnected",
                        # A disconnect at the connect's own timestamp.
                        ":seq": _seq(int(item.get("ts", 0)), "disconnected"),
                        ":old": int(item.get("seq", 0)),
                    },
                )
                if applied:  # else an event reached the session meanwhile: it stands
                    ended += 1
            last = page.get("LastEvaluatedKey")
            if not last:
                return ended
            kwargs["ExclusiveStartKey"] = last

    def note_catch_up(self, user_id: str) -> None:
        """Record that ``user_id`` is catching up now (see the module docstring)."""
        now = self._clock()
        try:
            self._table.put_item(
                Item={
                    "userId": user_id,
                    "sessionId": CATCH_UP_SESSION,
                    "ts": int(now * 1000),
                    "expiresAt": int(now) + CATCH_UP_GRACE_SECONDS * 2,
                }
            )
        except (BotoCoreError, ClientError) as exc:
            raise PresenceError(f"could not record the catch-up of {user_id}: {exc}") from exc

    # --- reads ------------------------------------------------------------------

    def _records(self, user_id: str) -> list[dict[str, Any]]:
        from boto3.dynamodb.conditions import Key

        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("userId").eq(user_id),
            # Strongly consistent: the catch-up argument above needs it.
            "ConsistentRead": True,
        }
        while True:
            try:
                page = self._table.query(**kwargs)
            except (BotoCoreError, ClientError) as exc:
                raise PresenceError(f"could not read presence of {user_id}: {exc}") from exc
            items.extend(page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if not last:
                return items
            kwargs["ExclusiveStartKey"] = last

    def _summarise(self, user_id: str, records: Iterable[dict[str, Any]]) -> UserPresence:
        now_ms = int(self._clock() * 1000)
        oldest_live = now_ms - MAX_CONNECTION_SECONDS * 1000
        connections = 0
        last_seen: int | None = None
        for record in records:
            if record.get("sessionId") == CATCH_UP_SESSION:
                continue
            ts = int(record.get("ts", 0))
            if record.get("state") == "connected" and ts > oldest_live:
                connections += 1
            last_seen = ts if last_seen is None else max(last_seen, ts)
        if connections:
            last_seen = now_ms
        return UserPresence(user_id, connections, last_seen)

    def of(self, user_id: str) -> UserPresence:
        """One user's presence; raises :class:`PresenceError` if DynamoDB fails."""
        return self._summarise(user_id, self._records(user_id))

    def reachable(self, user_id: str) -> bool:
        """Whether a live publish can reach ``user_id``: a live connection, or a
        catch-up within :data:`CATCH_UP_GRACE_SECONDS` (module docstring)."""
        records = self._records(user_id)
        if self._summarise(user_id, records).online:
            return True
        now_ms = int(self._clock() * 1000)
        return any(
            r.get("sessionId") == CATCH_UP_SESSION
            and now_ms - int(r.get("ts", 0)) <= CATCH_UP_GRACE_SECONDS * 1000
            for r in records
        )
