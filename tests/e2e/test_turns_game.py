"""The example game (examples/turns) with two players on the iotnotify page (issue 14).

The game server runs beside ``iotnotify local`` (as ``make demo`` runs it)
and publishes with the iotnotify publisher; alice and bob are signed in to
the iotnotify page in their own browser contexts and play on the game page.
Each move must bring "Your turn" to the other player within 2 s, and a user
who is not a player is refused the game channel.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from playwright.sync_api import Page, expect

from examples.turns.turns import Lobby, build_app
from iotnotify.auth import CognitoAuth
from iotnotify.sending import publisher_for_local
from tests.e2e.conftest import LocalStack, OpenPage, sign_in, toast

TOAST_WITHIN_MS = 2_000


class GameServer:
    """The example game's aiohttp app on a free port, in its own thread and loop."""

    def __init__(self, stack: LocalStack) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.publisher, resolve = publisher_for_local(stack.state_file)
        self.lobby = Lobby(self.publisher, resolve, self.url)
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(build_app(self.lobby), access_log=None)
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._call(self._start())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    async def _start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def create(self, players: list[str]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/api/games",
            data=json.dumps({"players": players}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 201
            created: dict[str, Any] = json.load(answer)
            return created

    def stop(self) -> None:
        self._call(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self.publisher.close()


@pytest.fixture
def game_server(stack: LocalStack) -> Iterator[GameServer]:
    server = GameServer(stack)
    try:
        yield server
    finally:
        server.stop()


def token_status(stack: LocalStack, id_token: str, game_id: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{stack.state['apiUrl']}/token?games={game_id}", headers={"Authorization": id_token}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status), json.load(answer)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def play(page: Page, add: int) -> None:
    page.get_by_role("button", name=f"+{add}").click()


def test_each_player_sees_your_turn_within_2_s_of_the_others_move(
    stack: LocalStack, open_page: OpenPage, game_server: GameServer
) -> None:
    # Given alice and bob signed in to the iotnotify page
    alice, bob = open_page("alice"), open_page("bob")
    sign_in(alice, stack, "alice")
    sign_in(bob, stack, "bob")

    # When a game starts, alice (first) is told it is her turn
    game = game_server.create(["alice", "bob"])
    your_turn = f"Your turn in {game['name']}"
    expect(toast(alice.page, your_turn)).to_be_visible(timeout=TOAST_WITHIN_MS)

    # And she plays +2 on her game page
    alice_game = alice.context.new_page()
    alice_game.goto(game["seats"]["alice"])
    expect(alice_game.get_by_role("status")).to_have_text("Your turn.")
    # The game's player list says who is online (both have the iotnotify page open)
    expect(alice_game.locator("#players")).to_have_text("alice (online), bob (online)")
    play(alice_game, 2)
    expect(alice_game.get_by_role("status")).to_have_text("Waiting for bob.")

    # Then bob sees "your turn" within 2 s
    expect(toast(bob.page, your_turn)).to_be_visible(timeout=TOAST_WITHIN_MS)

    # And when bob plays +3, alice sees her turn come back within 2 s
    bob_game = bob.context.new_page()
    bob_game.goto(game["seats"]["bob"])
    expect(bob_game.locator("#total")).to_have_text("2")
    play(bob_game, 3)
    region = alice.page.get_by_role("region", name="New notifications")
    after_bob = region.locator(".toast", has_text="bob added 3; the total is 5")
    expect(after_bob).to_be_visible(timeout=TOAST_WITHIN_MS)
    expect(after_bob).to_contain_text(your_turn)

    # And a move out of turn is refused by the game (bob's buttons are off)
    expect(bob_game.get_by_role("button", name="+1")).to_be_disabled()
    seat = game["seats"]["bob"].split("seat=", 1)[1]
    refused = urllib.request.Request(
        f"{game_server.url}/api/games/{game['gameId']}/moves",
        data=json.dumps({"seat": seat, "add": 1}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(refused, timeout=30)
    assert answer.value.code == 409


def test_only_players_get_the_game_channel(stack: LocalStack, game_server: GameServer) -> None:
    game = game_server.create(["alice", "bob"])
    auth = CognitoAuth.from_state_file(stack.state_file)
    alice = stack.user("alice")
    alice_token = auth.sign_in(alice["username"], alice["password"]).id_token
    status, body = token_status(stack, alice_token, game["gameId"])
    assert status == 200
    assert body["games"][game["gameId"]]["topic"].endswith(f"/game/{game['gameId']}")

    # A user who is not a player
    email = f"carol-{uuid.uuid4().hex[:8]}@example.com"
    signed_up = auth.sign_up(email, "Carol-Pa55word!")
    if not signed_up.confirmed:
        auth.confirm_sign_up(email, "123456")  # moto accepts any code
    carol_token = auth.sign_in(email, "Carol-Pa55word!").id_token
    status, body = token_status(stack, carol_token, game["gameId"])
    assert (status, body["error"]) == (403, "forbidden")
    assert token_status(stack, carol_token, "race21-nosuchgame")[0] == 404
