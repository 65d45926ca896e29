"""``GET /chats`` lists rooms; ``POST /chats`` creates one (409 if taken)."""

from __future__ import annotations

from typing import Any

from iotnotify_handlers import clients
from iotnotify_handlers.errors import BadRequest
from iotnotify_handlers.http import Request, api_handler

__all__ = ["handler"]


@api_handler
def handler(request: Request) -> tuple[int, Any]:
    user_id = request.user_id()
    rooms = clients.chat_rooms()
    if request.method == "GET":
        return 200, {"rooms": rooms.list()}
    if request.method == "POST":
        return 201, rooms.create(request.json(), user_id=user_id)
    raise BadRequest(f"method {request.method} is not supported on /chats")
