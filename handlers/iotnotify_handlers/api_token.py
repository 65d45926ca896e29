"""``GET /token?rooms=a,b&games=g``: credentials and a presigned URL for the signed-in user.

``rooms`` and ``games`` (optional, comma-separated) add each channel to the
token. Rooms and games together are at most ``MAX_CHANNELS_PER_TOKEN``
(else 400, as for an invalid name); 404 for an unknown room or game; 403 for
a private room the caller is not a member of, or a game they do not play.
Nothing is issued unless every channel asked for is allowed.

Asking a token for a room you are a member of marks you as having joined it
(:meth:`ChatRooms.mark_joined`): from then on the room's other members may
see your ``GET /presence``. Being added by the owner alone does not.
"""

from __future__ import annotations

from typing import Any

from iotnotify.contract import Channel, ChannelKind
from iotnotify.errors import ContractError
from iotnotify.policies import MAX_CHANNELS_PER_TOKEN
from iotnotify_handlers import clients
from iotnotify_handlers.chat_rooms import Room
from iotnotify_handlers.errors import BadRequest, Forbidden
from iotnotify_handlers.http import Request, api_handler
from iotnotify_handlers.registered_games import registered_game
from iotnotify_handlers.settings import settings
from iotnotify_handlers.token_vending import TokenVendor

__all__ = ["handler", "requested_channels"]


def _names(raw: str | None) -> list[str]:
    return list(dict.fromkeys(n.strip() for n in (raw or "").split(",") if n.strip()))


def requested_channels(rooms: str | None, games: str | None) -> list[Channel]:
    """The distinct channels of ``?rooms=`` and ``?games=``, rooms first, in order;
    400 if a name is invalid or there are more than ``MAX_CHANNELS_PER_TOKEN``."""
    asked: list[tuple[ChannelKind, str]] = [("room", n) for n in _names(rooms)]
    asked += [("game", n) for n in _names(games)]
    if len(asked) > MAX_CHANNELS_PER_TOKEN:
        raise BadRequest(
            f"a token can carry at most {MAX_CHANNELS_PER_TOKEN} channels, rooms and games "
            f"together (STS limits a session policy to 2048 characters); asked for {len(asked)}"
        )
    try:
        return [Channel(kind, name) for kind, name in asked]
    except ContractError as exc:
        raise BadRequest(str(exc)) from exc


def _authorised(channel: Channel, user_id: str) -> Channel | Room:
    if channel.kind == "room":
        return clients.chat_rooms().usable(channel.name, user_id=user_id)
    game = registered_game(channel.name)
    if not game.may_use(user_id):
        raise Forbidden(f"you are not a player of game {channel.name!r}")
    return game.channel


@api_handler
def handler(request: Request) -> tuple[int, Any]:
    user_id = request.user_id()  # validated before any policy is built or STS called
    asked = requested_channels(request.query.get("rooms"), request.query.get("games"))
    allowed = [_authorised(channel, user_id) for channel in asked]
    # Only once every channel is allowed (nothing is issued otherwise) does
    # the caller count as having joined the rooms they are a member of.
    for room in allowed:
        if isinstance(room, Room):
            clients.chat_rooms().mark_joined(room, user_id)
    channels = [c.channel if isinstance(c, Room) else c for c in allowed]
    vendor = TokenVendor(settings=settings(), sts=clients.sts(), endpoint=clients.iot_endpoint())
    return 200, vendor.vend(user_id, channels=channels)
