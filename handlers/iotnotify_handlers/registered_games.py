"""The one way a route reads a registered game: absent is a 404, a store failure a 503.

``POST /notify`` with a ``game`` target and ``GET /token?games=`` both need
the game as a game server registered it (``POST /games``), and must answer
alike when it is not there.
"""

from __future__ import annotations

from iotnotify.games import Game, GameStoreError
from iotnotify_handlers import clients
from iotnotify_handlers.errors import NotFound, ServiceUnavailable

__all__ = ["registered_game"]


def registered_game(game_id: str, *, hint: str = "") -> Game:
    """The game registered as ``game_id``.

    Raises :class:`NotFound` (404, ``no game 'ID'`` plus ``hint``) when none
    is, :class:`ServiceUnavailable` (503) when the games table cannot be read.
    """
    try:
        game = clients.games().get(game_id)
    except GameStoreError as exc:
        raise ServiceUnavailable("could not read the game, try again") from exc
    if game is None:
        raise NotFound(f"no game {game_id!r}{hint}")
    return game
