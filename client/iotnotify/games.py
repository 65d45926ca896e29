"""Games: which users play which game (the game channel, DESIGN.md "Channels").

A game server registers ``{gameId, players}`` (:meth:`Publisher.register_game`
or ``POST /games``); the token API then grants each player subscribe +
receive on ``{app}/{stage}/game/{gameId}`` (``GET /token?games=g``) and
refuses everyone else. Game updates go to that topic
(:meth:`Publisher.notify_game`); "your turn" goes to one player's own topic.

Storage (the games table, partition key ``gameId``): one item
``{gameId, players: string set, createdAt, updatedAt}``. Registering again
replaces the player list (players join and leave between rounds); the
creation time is kept. Both the SDK (game servers write) and the handlers
(the token API and presence read) use this module, so the item layout is
spelled once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from iotnotify.contract import Channel, validate_name, validate_user_id
from iotnotify.errors import ContractError, IotNotifyError

__all__ = [
    "MAX_PLAYERS_PER_GAME",
    "Game",
    "GameRegistry",
    "GameStoreError",
    "InvalidGame",
    "validate_players",
]

# A game's item holds its player set; 1000 ids of 64 characters stay far
# below DynamoDB's 400 KB item limit, and no turn-based game seats more.
MAX_PLAYERS_PER_GAME: Final = 1000


class InvalidGame(ContractError):
    """A game id or player list that cannot be registered (a 400 over HTTP)."""


class GameStoreError(IotNotifyError):
    """The games table could not be read or written (a 503 over HTTP)."""


def validate_players(players: object) -> tuple[str, ...]:
    """The distinct player ids of ``players`` in order: 1..MAX_PLAYERS_PER_GAME valid user ids.

    Raises :class:`InvalidGame` otherwise.
    """
    if isinstance(players, str) or not isinstance(players, Iterable):
        raise InvalidGame("players must be a list of user ids")
    try:
        distinct = tuple(dict.fromkeys(validate_user_id(p) for p in players))
    except ContractError as exc:
        raise InvalidGame(f"players: {exc}") from exc
    if not distinct:
        raise InvalidGame("a game needs at least one player")
    if len(distinct) > MAX_PLAYERS_PER_GAME:
        raise InvalidGame(f"a game has at most {MAX_PLAYERS_PER_GAME} players")
    return distinct


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Game:
    """One registered game; ``players`` in no particular order."""

    game_id: str
    players: frozenset[str]
    created_at: str = ""
    updated_at: str = ""

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Game:
        return cls(
            game_id=str(item["gameId"]),
            players=frozenset(str(p) for p in item.get("players") or ()),
            created_at=str(item.get("createdAt", "")),
            updated_at=str(item.get("updatedAt", "")),
        )

    @property
    def channel(self) -> Channel:
        return Channel("game", self.game_id)

    def may_use(self, user_id: str) -> bool:
        """Only players read a game's channel."""
        return user_id in self.players


class GameRegistry:
    """Games in DynamoDB; ``table`` is a boto3 ``Table`` resource."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def register(self, game_id: str, players: Iterable[str]) -> Game:
        """Create the game or replace its players; returns what is stored.

        Raises :class:`InvalidGame` for a bad id or player list (nothing is
        written) and :class:`GameStoreError` if DynamoDB fails.
        """
        try:
            game_id = validate_name(game_id, what="game id")
        except ContractError as exc:
            raise InvalidGame(str(exc)) from exc
        members = validate_players(players)
        now = _now()
        try:
            answer = self._table.update_item(
                Key={"gameId": game_id},
                UpdateExpression=(
                    "SET players = :players, updatedAt = :now, "
                    "createdAt = if_not_exists(createdAt, :now)"
                ),
                ExpressionAttributeValues={":players": set(members), ":now": now},
                ReturnValues="ALL_NEW",
            )
        except (BotoCoreError, ClientError) as exc:
            raise GameStoreError(f"could not register game {game_id!r}: {exc}") from exc
        return Game.from_item(answer["Attributes"])

    def get(self, game_id: str) -> Game | None:
        """The game, or None if none is registered under ``game_id``.

        Raises :class:`InvalidGame` for an invalid id, :class:`GameStoreError`
        if DynamoDB fails.
        """
        try:
            game_id = validate_name(game_id, what="game id")
        except ContractError as exc:
            raise InvalidGame(str(exc)) from exc
        try:
            item = self._table.get_item(Key={"gameId": game_id}, ConsistentRead=True).get("Item")
        except (BotoCoreError, ClientError) as exc:
            raise GameStoreError(f"could not read game {game_id!r}: {exc}") from exc
        return None if item is None else Game.from_item(item)

    def games_of(self, user_id: str) -> Iterator[Game]:
        """Every game ``user_id`` plays (a full, paginated scan: for presence checks)."""
        from boto3.dynamodb.conditions import Attr

        kwargs: dict[str, Any] = {"FilterExpression": Attr("players").contains(user_id)}
        while True:
            try:
                page = self._table.scan(**kwargs)
            except (BotoCoreError, ClientError) as exc:
                raise GameStoreError(f"could not list games: {exc}") from exc
            for item in page.get("Items", []):
                yield Game.from_item(item)
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last
