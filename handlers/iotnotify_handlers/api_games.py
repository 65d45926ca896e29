"""``POST /games`` (IAM) and ``POST /games/key`` (API key): a game server registers a game.

Body ``{"gameId", "players": [userId, ...]}`` -> 201 ``{"gameId", "players",
"topic", "createdAt", "updatedAt"}``. Registering an existing game replaces
its players. 400 for an invalid id or player list (1..1000 valid user ids),
401 without IAM auth or with a wrong API key (the same rule as ``POST /notify``;
a missing or blank ``x-api-key`` is API Gateway's 400 before this function runs).
Players then get the game's channel with ``GET /token?games={gameId}``.
"""

from __future__ import annotations

from typing import Any, Final

from iotnotify.games import Game, GameStoreError, InvalidGame
from iotnotify_handlers import clients
from iotnotify_handlers.backend_auth import authorize_backend
from iotnotify_handlers.errors import BadRequest, ServiceUnavailable
from iotnotify_handlers.http import Request, api_handler, reject_unknown_fields
from iotnotify_handlers.settings import settings

__all__ = ["game_json", "handler"]

_FIELDS: Final = frozenset({"gameId", "players"})


def game_json(game: Game) -> dict[str, Any]:
    return {
        "gameId": game.game_id,
        "players": sorted(game.players),
        "topic": str(game.channel.topic(settings().scheme)),
        "createdAt": game.created_at,
        "updatedAt": game.updated_at,
    }


@api_handler
def handler(request: Request) -> tuple[int, Any]:
    authorize_backend(request)
    raw = request.json()
    if not isinstance(raw, dict):
        raise BadRequest('body must be a JSON object {"gameId", "players"}')
    reject_unknown_fields(raw, _FIELDS)
    if not isinstance(raw.get("gameId"), str) or not isinstance(raw.get("players"), list):
        raise BadRequest('body must be {"gameId": string, "players": [user ids]}')
    try:
        game = clients.games().register(raw["gameId"], raw["players"])
    except InvalidGame as exc:
        raise BadRequest(str(exc)) from exc
    except GameStoreError as exc:
        raise ServiceUnavailable("could not register the game, try again") from exc
    return 201, game_json(game)
