"""``GET /presence?users=a,b``: who of these is online, for lobbies and member lists.

Answers only for users who share a channel with the caller: a room the
caller belongs to and the user has themself joined (its owner, or a member
who asked ``GET /token?rooms=`` for it; being added by the owner alone does
not count, or anyone could add a stranger to a private room and watch them),
or a game both play (players are registered by the game server), and the
caller themself. Anyone else is left out of the answer exactly as an unknown user
would be, so the endpoint cannot be used to watch strangers. Response::

    {"presence": {"<userId>": {"online": bool, "connections": int,
                               "lastSeen": ms since the epoch | null}}}

400 for an invalid id or more than ``MAX_PRESENCE_USERS``; 503 where the
deployment has no presence table. Finding the caller's channels scans the
rooms and games tables (filtered on membership): fine for the sizes a
lobby has; a membership index is the next step if those tables grow large.
"""

from __future__ import annotations

from typing import Any

from iotnotify.contract import validate_user_id
from iotnotify.errors import ContractError
from iotnotify.games import GameStoreError
from iotnotify.presence import MAX_PRESENCE_USERS, PresenceError
from iotnotify_handlers import clients
from iotnotify_handlers.errors import BadRequest, ServiceUnavailable
from iotnotify_handlers.http import Request, api_handler

__all__ = ["handler", "sharing_a_channel"]


def _users(raw: str | None) -> list[str]:
    names = list(dict.fromkeys(n.strip() for n in (raw or "").split(",") if n.strip()))
    if not names:
        raise BadRequest("name the users to look up: ?users=a,b")
    if len(names) > MAX_PRESENCE_USERS:
        raise BadRequest(f"at most {MAX_PRESENCE_USERS} users per request; asked for {len(names)}")
    try:
        return [validate_user_id(name) for name in names]
    except ContractError as exc:
        raise BadRequest(str(exc)) from exc


def sharing_a_channel(user_id: str) -> set[str]:
    """``user_id``, the members who joined a room ``user_id`` is in, and their co-players."""
    shared = {user_id}
    for room in clients.chat_rooms().rooms_of(user_id):
        shared |= room.joined
    try:
        for game in clients.games().games_of(user_id):
            shared |= game.players
    except GameStoreError as exc:
        raise ServiceUnavailable("could not read games, try again") from exc
    return shared


@api_handler
def handler(request: Request) -> tuple[int, Any]:
    user_id = request.user_id()
    asked = _users(request.query.get("users"))
    presence = clients.presence()
    if presence is None:
        raise ServiceUnavailable("this deployment keeps no presence")
    visible = sharing_a_channel(user_id)
    try:
        answer = {u: presence.of(u).to_json() for u in asked if u in visible}
    except PresenceError as exc:
        raise ServiceUnavailable("could not read presence, try again") from exc
    return 200, {"presence": answer}
