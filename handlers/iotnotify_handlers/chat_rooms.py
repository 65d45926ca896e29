"""Chat rooms: public or private, an owner, members, a per-user creation quota.

Storage (the rooms table, partition key ``room``):

* a room item ``{room, createdBy, createdAt, private, members, joined?}``;
  ``members`` is a string set holding the owner and everyone the owner added;
  ``joined`` is the string set of members who have themselves taken part
  (asked ``GET /token?rooms=`` for it; the owner always counts). Being added
  is the owner's one-sided act, so only ``joined`` members are visible to
  other members' ``GET /presence``;
* one quota item per user, ``{room: "#quota#{userId}", count}``. ``#`` is
  outside the room-name alphabet, so it can never collide with a room.

Creating a room is one DynamoDB transaction: a conditional put of the room
(409 if taken, never a silent overwrite) and a conditional increment of the
creator's counter (403 ``quota_exceeded`` at the quota), so two concurrent creates can neither
share a name nor both slip under the quota.

Listing is a scan filtered to public rooms and private rooms the caller
belongs to, returned a page at a time with a ``next`` token, so no number of
other rooms can hide one. DynamoDB applies ``Limit`` before the filter, so
the scan continues until a page is full; the token names only the last room
listed (never a room or quota item the caller cannot see).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import BotoCoreError, ClientError

from iotnotify.contract import Channel, TopicScheme, validate_name, validate_user_id
from iotnotify.errors import ContractError
from iotnotify_handlers.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    QuotaExceeded,
    ServiceUnavailable,
)
from iotnotify_handlers.http import reject_unknown_fields

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_MEMBERS_PER_ROOM",
    "MAX_PAGE_SIZE",
    "ChatRooms",
    "Room",
    "decode_page_token",
    "encode_page_token",
]

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 100
_LIMIT_RE: Final = re.compile(r"[0-9]{1,6}", re.ASCII)
# A room item holds its member set; 1000 user ids of 64 characters stay far
# below DynamoDB's 400 KB item limit.
MAX_MEMBERS_PER_ROOM: Final = 1000
_QUOTA_PREFIX: Final = "#quota#"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def encode_page_token(key: dict[str, Any]) -> str:
    """An opaque ``next`` token for a DynamoDB key of string attributes."""
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_page_token(token: str, *, keys: Iterable[str]) -> dict[str, str]:
    """The ``ExclusiveStartKey`` a ``next`` token stands for; 400 if forged or garbled."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("'next' is not a token this API issued") from exc
    wanted = set(keys)
    if (
        not isinstance(raw, dict)
        or set(raw) != wanted
        or not all(isinstance(v, str) for v in raw.values())
    ):
        raise BadRequest("'next' is not a token this API issued")
    return raw


def page_size(raw: str | None) -> int:
    """``limit`` query parameter: 1..MAX_PAGE_SIZE, default DEFAULT_PAGE_SIZE."""
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    # ASCII digits only: int() also reads "+5", " 12", "1_0" and Arabic-Indic
    # "١٢" (as 12), none of which API Gateway callers mean as a page size.
    if not _LIMIT_RE.fullmatch(raw) or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise BadRequest(f"limit must be an integer 1..{MAX_PAGE_SIZE}")
    return int(raw)


@dataclass(frozen=True, slots=True)
class Room:
    """One room as stored: ``owner`` created it; ``members`` includes the owner;
    ``joined`` is the members who took part themselves (the owner, and any member
    who asked a token for the room), a subset of ``members``."""

    name: str
    owner: str
    private: bool
    members: frozenset[str]
    created_at: str
    joined: frozenset[str] = frozenset()

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Room:
        owner = str(item.get("createdBy", ""))
        members = frozenset(str(m) for m in item.get("members") or ()) | {owner}
        joined = frozenset(str(m) for m in item.get("joined") or ()) | {owner}
        return cls(
            name=str(item["room"]),
            owner=owner,
            private=bool(item.get("private", False)),
            members=members - {""},
            created_at=str(item.get("createdAt", "")),
            joined=(joined & members) - {""},
        )

    def may_use(self, user_id: str) -> bool:
        """Public rooms are open to every signed-in user; private ones to members."""
        return not self.private or user_id in self.members

    @property
    def channel(self) -> Channel:
        return Channel("room", self.name)


class ChatRooms:
    """Rooms in DynamoDB; ``table`` is a boto3 ``Table`` resource."""

    def __init__(self, table: Any, scheme: TopicScheme, *, max_rooms_per_user: int = 10) -> None:
        self._table = table
        self._scheme = scheme
        self._max_rooms_per_user = max_rooms_per_user

    def view(self, room: Room, *, for_user: str) -> dict[str, Any]:
        """The JSON of a room: members are shown to members only."""
        body: dict[str, Any] = {
            "room": room.name,
            "private": room.private,
            "owner": room.owner,
            "createdBy": room.owner,
            "createdAt": room.created_at,
            **room.channel.topics_json(self._scheme),
        }
        if for_user in room.members:
            body["members"] = sorted(room.members)
        return body

    # --- create -----------------------------------------------------------------

    def create(self, raw: Any, *, user_id: str) -> dict[str, Any]:
        """``POST /chats {"room", "private"?}`` -> the room; 400, 409, or 403 at the quota."""
        if not isinstance(raw, dict) or not isinstance(raw.get("room"), str):
            raise BadRequest("body must be a JSON object with a string 'room'")
        reject_unknown_fields(raw, {"room", "private"})
        private = raw.get("private", False)
        if not isinstance(private, bool):
            raise BadRequest("'private' must be true or false")
        try:
            name = validate_name(raw["room"], what="room name")
        except ContractError as exc:
            raise BadRequest(str(exc)) from exc
        room = Room(
            name=name,
            owner=user_id,
            private=private,
            members=frozenset({user_id}),
            created_at=_now(),
            joined=frozenset({user_id}),
        )
        item = {
            "room": room.name,
            "createdBy": room.owner,
            "createdAt": room.created_at,
            "private": room.private,
            "members": set(room.members),
        }
        # The resource's client serialises Python values itself (boto3's
        # DynamoDB transformation hooks), so items are given as plain values.
        client = self._table.meta.client
        try:
            client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table.name,
                            "Item": item,
                            "ConditionExpression": "attribute_not_exists(room)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table.name,
                            "Key": {"room": f"{_QUOTA_PREFIX}{user_id}"},
                            "UpdateExpression": "ADD #count :one",
                            "ConditionExpression": "attribute_not_exists(#count) OR #count < :max",
                            "ExpressionAttributeNames": {"#count": "count"},
                            "ExpressionAttributeValues": {
                                ":one": 1,
                                ":max": self._max_rooms_per_user,
                            },
                        }
                    },
                ]
            )
        except ClientError as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", []) if r]
            if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    raise Conflict(f"room {name!r} already exists") from exc
                if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                    raise QuotaExceeded(
                        f"you have created {self._max_rooms_per_user} rooms, the most one "
                        "user may create"
                    ) from exc
            raise ServiceUnavailable("could not create the room, try again") from exc
        except BotoCoreError as exc:
            raise ServiceUnavailable("could not create the room, try again") from exc
        return self.view(room, for_user=user_id)

    # --- read -------------------------------------------------------------------

    def get(self, name: str) -> Room:
        """The room called ``name``; 400 for an invalid name, 404 if there is none."""
        try:
            name = validate_name(name, what="room name")
        except ContractError as exc:
            raise BadRequest(str(exc)) from exc
        try:
            item = self._table.get_item(Key={"room": name}, ConsistentRead=True).get("Item")
        except (BotoCoreError, ClientError) as exc:
            raise ServiceUnavailable("could not read the room, try again") from exc
        if item is None:
            raise NotFound(f"no room {name!r}")
        return Room.from_item(item)

    def usable(self, name: str, *, user_id: str) -> Room:
        """The room if ``user_id`` may use it: 404 unknown, 403 private and not a member."""
        room = self.get(name)
        if not room.may_use(user_id):
            raise Forbidden(f"room {name!r} is private and you are not a member")
        return room

    def list(self, *, user_id: str, limit: int, next_token: str | None) -> dict[str, Any]:
        """``GET /chats``: ``{"rooms": [...], "next": token|null}``, one page.

        Lists public rooms and the private rooms ``user_id`` belongs to;
        sorted by name within a page. ``next`` is the key of the last room
        *listed*, never the scan's ``LastEvaluatedKey``: that key can be a
        private room or another user's quota item, and a base64 token would
        hand its name to anyone paging with ``limit=1``. So the scan goes on
        until ``limit`` visible rooms are found or the table ends (resuming
        after a listed room re-reads only rooms the caller could not see).
        """
        public = Attr("private").not_exists() | Attr("private").eq(False)
        visible = Attr("createdBy").exists() & (public | Attr("members").contains(user_id))
        kwargs: dict[str, Any] = {"Limit": MAX_PAGE_SIZE, "FilterExpression": visible}
        if next_token:
            start = decode_page_token(next_token, keys=("room",))
            # Tokens name a listed room; anything else is forged, and an empty
            # or oversized key would be DynamoDB's ValidationException (a 503).
            try:
                validate_name(start["room"], what="room name")
            except ContractError as exc:
                raise BadRequest("'next' is not a token this API issued") from exc
            kwargs["ExclusiveStartKey"] = start
        items: list[dict[str, Any]] = []  # in scan order, which is what a token resumes
        while True:
            try:
                answer = self._table.scan(**kwargs)
            except (BotoCoreError, ClientError) as exc:
                raise ServiceUnavailable("could not list rooms, try again") from exc
            items += answer.get("Items", [])
            last = answer.get("LastEvaluatedKey")
            if len(items) >= limit or not last:
                break
            kwargs["ExclusiveStartKey"] = last
        more = len(items) > limit or (bool(last) and bool(items))
        items = items[:limit]
        rooms = sorted((Room.from_item(item) for item in items), key=lambda r: r.name)
        return {
            "rooms": [self.view(room, for_user=user_id) for room in rooms],
            "next": encode_page_token({"room": str(items[-1]["room"])}) if more else None,
        }

    def rooms_of(self, user_id: str) -> tuple[Room, ...]:
        """Every room whose members include ``user_id`` (a full, paginated scan)."""
        kwargs: dict[str, Any] = {"FilterExpression": Attr("members").contains(user_id)}
        rooms: tuple[Room, ...] = ()
        while True:
            try:
                answer = self._table.scan(**kwargs)
            except (BotoCoreError, ClientError) as exc:
                raise ServiceUnavailable("could not list rooms, try again") from exc
            rooms += tuple(Room.from_item(item) for item in answer.get("Items", []))
            last = answer.get("LastEvaluatedKey")
            if not last:
                return rooms
            kwargs["ExclusiveStartKey"] = last

    # --- members ----------------------------------------------------------------

    def mark_joined(self, room: Room, user_id: str) -> None:
        """Record that member ``user_id`` took part in ``room`` (asked a token for it).

        A no-op for the owner, a member already joined, or a non-member (a
        public room's visitor shares no membership). The update is
        conditional on ``user_id`` still being a member, so a stale ``room``
        cannot mark someone the table no longer lists; 503 if DynamoDB fails.
        """
        if user_id not in room.members or user_id in room.joined:
            return
        try:
            self._table.update_item(
                Key={"room": room.name},
                UpdateExpression="ADD joined :u",
                ConditionExpression="contains(members, :me)",
                ExpressionAttributeValues={":u": {user_id}, ":me": user_id},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return
            raise ServiceUnavailable("could not join the room, try again") from exc
        except BotoCoreError as exc:
            raise ServiceUnavailable("could not join the room, try again") from exc

    def add_member(
        self, name: str, raw: Any, *, user_id: str, user_exists: Callable[[str], bool]
    ) -> dict[str, Any]:
        """``POST /chats/{room}/members {"user"}`` by the owner; 403 for anyone else.

        404 when ``user_exists(member)`` is false (no such user: a typo or a
        made-up id would otherwise sit in the member set, counting towards
        ``MAX_MEMBERS_PER_ROOM``, while the person meant is never let in);
        asked only of the owner, and only for someone not yet a member.
        """
        if not isinstance(raw, dict) or not isinstance(raw.get("user"), str):
            raise BadRequest("body must be a JSON object with a string 'user'")
        reject_unknown_fields(raw, {"user"})
        try:
            member = validate_user_id(raw["user"])
        except ContractError as exc:
            raise BadRequest(str(exc)) from exc
        room = self.get(name)
        if room.owner != user_id:
            raise Forbidden(f"only the owner of room {room.name!r} may add members")
        if member not in room.members:
            if len(room.members) >= MAX_MEMBERS_PER_ROOM:
                raise Conflict(f"room {room.name!r} has {MAX_MEMBERS_PER_ROOM} members, the most")
            if not user_exists(member):
                raise NotFound(f"no user {member!r}: members are user ids (Cognito 'sub')")
        try:
            answer = self._table.update_item(
                Key={"room": room.name},
                UpdateExpression="ADD members :m",
                ConditionExpression="createdBy = :owner",
                ExpressionAttributeValues={":m": {member}, ":owner": user_id},
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise Forbidden(f"only the owner of room {room.name!r} may add members") from exc
            raise ServiceUnavailable("could not add the member, try again") from exc
        except BotoCoreError as exc:
            raise ServiceUnavailable("could not add the member, try again") from exc
        return self.view(Room.from_item(answer["Attributes"]), for_user=user_id)
