"""Chat rooms: created once (conditionally), listed for the room picker.

A conditional put makes "create" race-free: two users creating ``lobby`` at
the same moment get one 201 and one 409, never a silent overwrite.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from iotnotify.contract import TopicScheme, validate_name
from iotnotify.errors import ContractError
from iotnotify_handlers.errors import BadRequest, Conflict, ServiceUnavailable

__all__ = ["MAX_ROOMS_LISTED", "ChatRooms"]

MAX_ROOMS_LISTED: Final = 100


class ChatRooms:
    def __init__(self, table: Any, scheme: TopicScheme) -> None:
        self._table = table
        self._scheme = scheme

    def _view(self, item: dict[str, Any]) -> dict[str, Any]:
        room = str(item["room"])
        return {
            "room": room,
            "createdBy": item.get("createdBy"),
            "createdAt": item.get("createdAt"),
            "topic": str(self._scheme.chat(room)),
            "inputTopic": str(self._scheme.chat_input(room)),
        }

    def create(self, raw: Any, *, user_id: str) -> dict[str, Any]:
        if not isinstance(raw, dict) or not isinstance(raw.get("room"), str):
            raise BadRequest("body must be a JSON object with a string 'room'")
        try:
            room = validate_name(raw["room"], what="room name")
        except ContractError as exc:
            raise BadRequest(str(exc)) from exc
        item = {
            "room": room,
            "createdBy": user_id,
            "createdAt": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        try:
            self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(room)")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise Conflict(f"room {room!r} already exists") from exc
            raise ServiceUnavailable("could not create the room, try again") from exc
        except BotoCoreError as exc:
            raise ServiceUnavailable("could not create the room, try again") from exc
        return self._view(item)

    def list(self) -> list[dict[str, Any]]:
        try:
            items = self._table.scan(Limit=MAX_ROOMS_LISTED).get("Items", [])
        except (BotoCoreError, ClientError) as exc:
            raise ServiceUnavailable("could not list rooms, try again") from exc
        return sorted((self._view(item) for item in items), key=lambda r: r["room"])
