"""Race to 21: a small turn-based game server that uses the iotnotify publisher.

2 to 4 players take turns adding 1, 2 or 3 to a running total; whoever
brings it to 21 wins. The game is the example of the game-server user of
iotnotify (DESIGN.md): it never polls and never holds a connection to a
player. After each move it

* sends a game update to the game channel (``notify_game``: every player
  whose token asked for ``?games={gameId}`` receives it), and
* sends "Your turn in <game>" to the next player's own topic, with
  ``data.url`` the link to their seat, so the tray or the web page can
  open the game on click; the inbox keeps it for a player who is away.

HTTP API (JSON; errors are ``{"error", "message"}`` like iotnotify's):

=================================  ==================================================
``POST /api/games {"players"}``    a new game; players are demo names or user ids;
                                   201 ``{"gameId", "name", "seats": {name: url}}``
``GET  /api/games/{id}?seat=``     the game as that seat sees it, with which players
                                   are online (presence); 403: no such seat
``POST /api/games/{id}/moves``     ``{"seat", "add": 1..3}``; 409 when it is not
                                   your turn or the game is over
``GET  /g/{id}?seat=``             the game page
=================================  ==================================================

A seat is a secret per player and game, sent only to that player (in the
"your turn" notification on their own topic, or printed by ``--demo``): it
stands in for the sign-in a real game server has. Run it beside ``iotnotify
local``::

    python examples/turns/turns.py --wait --demo alice,bob

(``make demo`` starts both.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from iotnotify.errors import IotNotifyError
from iotnotify.publisher import Publisher

__all__ = [
    "GOAL",
    "MAX_PLAYERS",
    "Game",
    "GameError",
    "Lobby",
    "build_app",
    "main",
]

GOAL: Final = 21
MAX_PLAYERS: Final = 4
PAGE: Final = Path(__file__).resolve().with_name("page.html")

Resolver = Callable[[str], str]


class GameError(Exception):
    """A refused request: ``status`` and ``code`` as the HTTP answer carries them."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Game:
    """One game of Race to 21; ``players`` are iotnotify user ids in turn order."""

    game_id: str
    name: str
    players: list[str]
    labels: dict[str, str]  # user id -> what the players call each other
    seats: dict[str, str] = field(default_factory=dict)  # seat secret -> user id
    total: int = 0
    turn: int = 0
    winner: str | None = None
    moves: list[dict[str, Any]] = field(default_factory=list)

    @property
    def next_player(self) -> str:
        return self.players[self.turn % len(self.players)]

    def seat_of(self, user_id: str) -> str:
        return next(seat for seat, user in self.seats.items() if user == user_id)

    def play(self, seat: str, add: object) -> str:
        """Apply a move; returns the mover's user id. Raises :class:`GameError`."""
        user_id = self.seats.get(seat)
        if user_id is None:
            raise GameError(403, "forbidden", "that seat is not in this game")
        if self.winner is not None:
            raise GameError(409, "conflict", "the game is over")
        if user_id != self.next_player:
            raise GameError(409, "conflict", f"it is {self.labels[self.next_player]}'s turn")
        if isinstance(add, bool) or not isinstance(add, int) or not 1 <= add <= 3:
            raise GameError(400, "bad_request", "add must be 1, 2 or 3")
        self.total = min(GOAL, self.total + add)
        self.moves.append({"player": self.labels[user_id], "add": add, "total": self.total})
        if self.total == GOAL:
            self.winner = user_id
        else:
            self.turn += 1
        return user_id

    def view(self, seat: str) -> dict[str, Any]:
        """The game as one seat sees it (no other seat's secret)."""
        you = self.seats[seat]
        return {
            "gameId": self.game_id,
            "name": self.name,
            "goal": GOAL,
            "total": self.total,
            "players": [self.labels[p] for p in self.players],
            "you": self.labels[you],
            "next": None if self.winner else self.labels[self.next_player],
            "yourTurn": self.winner is None and self.next_player == you,
            "winner": None if self.winner is None else self.labels[self.winner],
            "moves": self.moves,
        }


class Lobby:
    """Every game of this server (in memory) and what is sent when they change.

    ``publisher`` is an iotnotify :class:`Publisher` with a games table;
    ``resolve`` maps a player name to a user id; ``base_url`` is where this
    server is reachable (for the links in notifications).
    """

    def __init__(self, publisher: Publisher, resolve: Resolver, base_url: str) -> None:
        self.publisher = publisher
        self.resolve = resolve
        self.base_url = base_url.rstrip("/")
        self.games: dict[str, Game] = {}

    def seat_url(self, game: Game, user_id: str) -> str:
        return f"{self.base_url}/g/{game.game_id}?seat={game.seat_of(user_id)}"

    def create(self, names: object) -> tuple[Game, dict[str, str]]:
        """A new game; returns it and each player's seat link. Blocking (AWS calls)."""
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise GameError(400, "bad_request", "players must be a list of names or user ids")
        if not 2 <= len(set(names)) == len(names) <= MAX_PLAYERS:
            raise GameError(400, "bad_request", f"2 to {MAX_PLAYERS} different players")
        try:
            players = [self.resolve(name) for name in names]
        except IotNotifyError as exc:  # UnknownUser, InvalidUserId: they name the player
            raise GameError(400, "bad_request", str(exc)) from exc
        game_id = f"race21-{secrets.token_hex(4)}"
        game = Game(
            game_id=game_id,
            name=f"Race to 21 #{game_id[-4:]}",
            players=players,
            labels=dict(zip(players, names, strict=True)),
            seats={secrets.token_urlsafe(16): user for user in players},
        )
        # Players may now ask for the game channel in their token.
        self.publisher.register_game(game_id, players)
        self.games[game_id] = game
        # The game exists from here on: a failed notice must not hide its seat links.
        self._send(
            lambda: self._your_turn(
                game, "The game starts: add 1, 2 or 3; whoever reaches 21 wins."
            ),
            f"first turn notice of {game_id}",
        )
        return game, {game.labels[u]: self.seat_url(game, u) for u in players}

    def move(self, game_id: str, seat: object, add: object) -> Game:
        """Apply a move and tell everyone. Blocking (AWS calls).

        Raises :class:`GameError` for a refused move (nothing is sent). A
        message that cannot be sent once the move is applied is logged to
        stderr; the move stands and the other message still goes out.
        """
        game = self.get(game_id)
        if not isinstance(seat, str):
            raise GameError(400, "bad_request", "seat must be a string")
        mover = game.play(seat, add)
        label = game.labels[mover]
        update = f"{label} added {add}: {game.total}"
        if game.winner is not None:
            update = f"{label} reached {GOAL} and wins {game.name}"
        # The move stands from here on (a retry would be refused as out of
        # turn), so each message is sent on its own: a failed game update must
        # not keep the next player from hearing it is their turn, nor turn the
        # applied move into an error. A failure is logged; players see the
        # state when their page loads the game.
        self._send(
            lambda: self.publisher.notify_game(
                game.game_id,
                title=update,
                type="game.update",
                data={
                    "game": game.game_id,
                    "gameName": game.name,
                    "total": game.total,
                    "winner": game.winner,
                },
            ),
            f"game update of {game.game_id}",
        )
        if game.winner is None:
            self._send(
                lambda: self._your_turn(game, f"{label} added {add}; the total is {game.total}."),
                f"turn notice of {game.game_id}",
            )
        return game

    @staticmethod
    def _send(send: Callable[[], object], what: str) -> None:
        try:
            send()
        except IotNotifyError as exc:
            print(f"turns: {what} not sent: {exc}", file=sys.stderr, flush=True)

    def _your_turn(self, game: Game, body: str) -> None:
        player = game.next_player
        self.publisher.notify(
            player,
            title=f"Your turn in {game.name}",
            body=body,
            type="game.turn",
            # The tray opens data.url on click and counts unread per data.game.
            data={"url": self.seat_url(game, player), "game": game.game_id, "gameName": game.name},
        )

    def online(self, game: Game) -> list[str] | None:
        """The players with a live iotnotify connection now; None if presence is unknown."""
        try:
            presence = self.publisher.presence(game.players)
        except (ValueError, IotNotifyError):
            return None
        return [game.labels[p] for p in game.players if presence[p].online]

    def get(self, game_id: str) -> Game:
        game = self.games.get(game_id)
        if game is None:
            raise GameError(404, "not_found", f"no game {game_id!r}")
        return game


_CORS: Final = {"Access-Control-Allow-Origin": "*"}


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=_CORS)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GameError as exc:
        return _error(exc.status, exc.code, exc.message)
    except IotNotifyError as exc:  # AWS (or the offline stack) did not take the publish
        return _error(503, "service_unavailable", str(exc))
    except web.HTTPException as exc:
        return _error(exc.status, "http_error", exc.reason)


async def _body(request: web.Request) -> Mapping[str, Any]:
    try:
        raw = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GameError(400, "bad_request", "body must be JSON") from exc
    if not isinstance(raw, dict):
        raise GameError(400, "bad_request", "body must be a JSON object")
    return raw


def build_app(lobby: Lobby) -> web.Application:
    """The game's HTTP API and page over ``lobby``."""
    app = web.Application(middlewares=[_errors], client_max_size=64 * 1024)

    async def blocking(func: Callable[[], Any]) -> Any:
        # The publisher is synchronous (boto3): keep the loop free.
        return await asyncio.get_running_loop().run_in_executor(None, func)

    async def create(request: web.Request) -> web.Response:
        body = await _body(request)
        game, seats = await blocking(lambda: lobby.create(body.get("players")))
        answer = {"gameId": game.game_id, "name": game.name, "seats": seats}
        return web.json_response(answer, status=201, headers=_CORS)

    async def show(request: web.Request) -> web.Response:
        game = lobby.get(request.match_info["game"])
        seat = request.query.get("seat", "")
        if seat not in game.seats:
            raise GameError(403, "forbidden", "that seat is not in this game")
        online = await blocking(lambda: lobby.online(game))
        return web.json_response({**game.view(seat), "online": online}, headers=_CORS)

    async def move(request: web.Request) -> web.Response:
        body = await _body(request)
        seat = body.get("seat")
        game = await blocking(lambda: lobby.move(request.match_info["game"], seat, body.get("add")))
        return web.json_response(game.view(str(seat)), headers=_CORS)

    async def page(_: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE, headers={"Cache-Control": "no-store"})

    app.router.add_post("/api/games", create)
    app.router.add_get("/api/games/{game}", show)
    app.router.add_post("/api/games/{game}/moves", move)
    app.router.add_get("/g/{game}", page)
    return app


def _wait_for_stack(state_file: Path, timeout: float) -> None:
    from iotnotify.state_file import LocalState, StateFileError

    deadline = time.monotonic() + timeout
    while True:
        try:
            LocalState.read(state_file)
            return
        except StateFileError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


async def _serve(lobby: Lobby, host: str, port: int, demo: list[str]) -> None:
    runner = web.AppRunner(build_app(lobby), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"Race to 21 is at {lobby.base_url}/  (Ctrl-C stops it)", flush=True)
    if demo:
        loop = asyncio.get_running_loop()
        game, seats = await loop.run_in_executor(None, lambda: lobby.create(demo))
        print(f"demo game {game.name} ({game.game_id}):", flush=True)
        for name, url in seats.items():
            print(f"  {name}: {url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Race to 21, a turn-based game on iotnotify")
    parser.add_argument("--state-file", type=Path, default=Path(".iotnotify/local.json"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8780)
    parser.add_argument("--wait", action="store_true", help="wait for iotnotify local to start")
    parser.add_argument("--demo", default="", help="start a game for these players: alice,bob")
    args = parser.parse_args(argv)
    from iotnotify.sending import publisher_for_local

    if args.wait:
        _wait_for_stack(args.state_file, timeout=180)
    publisher, resolve = publisher_for_local(args.state_file)
    lobby = Lobby(publisher, resolve, f"http://{args.host}:{args.port}")
    demo = [n.strip() for n in args.demo.split(",") if n.strip()]
    try:
        asyncio.run(_serve(lobby, args.host, args.port, demo))
    except KeyboardInterrupt:
        pass
    finally:
        publisher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
