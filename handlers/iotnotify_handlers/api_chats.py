"""Chat rooms over HTTP (one function for every ``/chats`` route).

==============================================  =====================================
``GET  /chats?limit=&next=``                    rooms the caller may see, one page
``POST /chats {"room", "private"?}``            create (201; 409 taken; 403 quota)
``POST /chats/{room}/members {"user"}``         owner adds a user (403; 404 unknown)
``GET  /chats/{room}/messages?limit=&before=``  history, oldest first (members only)
==============================================  =====================================
"""

from __future__ import annotations

from typing import Any

from iotnotify_handlers import clients
from iotnotify_handlers.chat_rooms import page_size
from iotnotify_handlers.errors import BadRequest, NotFound
from iotnotify_handlers.http import Request, api_handler
from iotnotify_handlers.user_directory import pool_of_issuer

__all__ = ["handler"]


def _room(request: Request) -> str:
    room = request.path_parameters.get("room")
    if not room:
        raise BadRequest("the path names no room")
    return room


@api_handler
def handler(request: Request) -> tuple[int, Any]:
    user_id = request.user_id()
    rooms = clients.chat_rooms()
    route = (request.method, request.resource)
    if route == ("GET", "/chats"):
        return 200, rooms.list(
            user_id=user_id,
            limit=page_size(request.query.get("limit")),
            next_token=request.query.get("next") or None,
        )
    if route == ("POST", "/chats"):
        return 201, rooms.create(request.json(), user_id=user_id)
    if route == ("POST", "/chats/{room}/members"):
        # Members come from the pool that signed the caller in (its iss claim).
        pool_id = pool_of_issuer(request.claims.get("iss"))
        directory = clients.user_directory()
        return 200, rooms.add_member(
            _room(request),
            request.json(),
            user_id=user_id,
            user_exists=lambda member: directory.exists(member, pool_id=pool_id),
        )
    if route == ("GET", "/chats/{room}/messages"):
        room = rooms.usable(_room(request), user_id=user_id)
        page = clients.chat_history().page(
            room.name,
            limit=page_size(request.query.get("limit")),
            before=request.query.get("before") or None,
        )
        return 200, page.to_json()
    raise NotFound(f"no route {request.method} {request.resource or request.path}")
