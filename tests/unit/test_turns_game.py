"""The example game's rules and what it sends (examples/turns), with a recording publisher."""

from __future__ import annotations

from typing import Any

import pytest

from examples.turns.turns import GOAL, GameError, Lobby
from iotnotify.errors import PublishError


class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.games: dict[str, list[str]] = {}

    def register_game(self, game_id: str, players: list[str]) -> None:
        self.games[game_id] = list(players)

    def presence(self, users: list[str]) -> Any:
        raise ValueError("no presence table")

    def notify(self, user_id: str, *, title: str, data: dict[str, Any], **_: Any) -> None:
        self.sent.append((f"user:{user_id}", title, data))

    def notify_game(self, game_id: str, *, title: str, data: dict[str, Any], **_: Any) -> None:
        self.sent.append((f"game:{game_id}", title, data))


def lobby() -> tuple[Lobby, RecordingPublisher]:
    publisher = RecordingPublisher()
    ids = {"alice": "id-alice", "bob": "id-bob", "carol": "id-carol"}
    return Lobby(publisher, ids.__getitem__, "http://game.test"), publisher  # type: ignore[arg-type]


def seat(url: str) -> str:
    return url.split("seat=", 1)[1]


def test_each_move_updates_the_game_channel_and_tells_the_next_player() -> None:
    games, publisher = lobby()
    game, seats = games.create(["alice", "bob", "carol"])
    assert publisher.games == {game.game_id: ["id-alice", "id-bob", "id-carol"]}
    target, title, data = publisher.sent[-1]
    assert (target, title) == ("user:id-alice", f"Your turn in {game.name}")
    assert data["url"] == seats["alice"]
    assert data["game"] == game.game_id

    games.move(game.game_id, seat(seats["alice"]), 3)
    update, turn = publisher.sent[-2:]
    assert update[0] == f"game:{game.game_id}"
    assert update[1] == "alice added 3: 3"
    assert turn[:2] == ("user:id-bob", f"Your turn in {game.name}")
    assert turn[2]["url"] == seats["bob"]


@pytest.mark.parametrize(
    ("who", "add", "status"),
    [("bob", 1, 409), ("alice", 4, 400), ("alice", True, 400), ("nobody", 1, 403)],
)
def test_moves_out_of_turn_out_of_range_or_without_a_seat_are_refused(
    who: str, add: object, status: int
) -> None:
    games, publisher = lobby()
    game, seats = games.create(["alice", "bob"])
    before = len(publisher.sent)
    with pytest.raises(GameError) as refused:
        games.move(game.game_id, seat(seats[who]) if who in seats else "forged", add)
    assert refused.value.status == status
    assert len(publisher.sent) == before  # nothing sent for a refused move
    assert game.total == 0


def test_reaching_the_goal_wins_and_nobody_is_told_to_move() -> None:
    games, publisher = lobby()
    game, seats = games.create(["alice", "bob"])
    players = ["alice", "bob"]
    turn = 0
    while game.winner is None:
        games.move(game.game_id, seat(seats[players[turn % 2]]), 1)
        turn += 1
    assert game.total == GOAL
    assert game.labels[game.winner] == "alice"  # 21 moves of 1: the first player ends it
    last = publisher.sent[-1]
    assert last[0] == f"game:{game.game_id}"
    assert "wins" in last[1]
    with pytest.raises(GameError):
        games.move(game.game_id, seat(seats["bob"]), 1)


@pytest.mark.parametrize(
    "players", [["alice"], ["alice", "alice"], "alice", ["a", "b", "c", "d", "e"]]
)
def test_a_game_has_two_to_four_different_players(players: object) -> None:
    games, _ = lobby()
    with pytest.raises(GameError) as refused:
        games.create(players)
    assert refused.value.status == 400


def test_the_player_list_says_who_is_online_from_presence() -> None:
    from iotnotify.presence import UserPresence

    games, publisher = lobby()
    game, _ = games.create(["alice", "bob"])
    assert games.online(game) is None  # this publisher keeps no presence

    def presence(users: list[str]) -> dict[str, UserPresence]:
        return {u: UserPresence(u, 1 if u == "id-bob" else 0, None) for u in users}

    publisher.presence = presence  # type: ignore[attr-defined]
    assert games.online(game) == ["bob"]


class FlakyPublisher(RecordingPublisher):
    """Refuses every send to one kind of target, as iot-data does in an outage."""

    def __init__(self, failing: str) -> None:
        super().__init__()
        self.failing = failing

    def notify(self, user_id: str, *, title: str, data: dict[str, Any], **_: Any) -> None:
        if self.failing == "user":
            raise PublishError("publish to the user topic: throttled")
        super().notify(user_id, title=title, data=data)

    def notify_game(self, game_id: str, *, title: str, data: dict[str, Any], **_: Any) -> None:
        if self.failing == "game":
            raise PublishError("publish to the game topic: throttled")
        super().notify_game(game_id, title=title, data=data)


@pytest.mark.parametrize("failing", ["game", "user"])
def test_a_move_whose_game_update_or_turn_notice_fails_is_applied_and_still_sends_the_other(
    failing: str,
) -> None:
    # Given iot-data refusing the game channel (or the next player's topic)
    publisher = FlakyPublisher(failing)
    ids = {"alice": "id-alice", "bob": "id-bob"}
    games = Lobby(publisher, ids.__getitem__, "http://game.test")  # type: ignore[arg-type]
    failing_before = publisher.failing
    publisher.failing = ""
    game, seats = games.create(["alice", "bob"])
    publisher.failing = failing_before
    sent_before = len(publisher.sent)

    # When alice moves
    moved = games.move(game.game_id, seat(seats["alice"]), 2)

    # Then the move stands (a retry would be a 409 "it is bob's turn"), and
    # the other message still goes out: a failed game update used to abort
    # the move's handling before bob was ever told it is his turn.
    assert (moved.total, moved.next_player) == (2, "id-bob")
    targets = [target for target, _title, _data in publisher.sent[sent_before:]]
    expected = "user:id-bob" if failing == "game" else f"game:{game.game_id}"
    assert targets == [expected]


def test_a_game_whose_first_turn_notice_fails_is_still_created_with_its_seats() -> None:
    # Given iot-data refusing the first player's topic
    publisher = FlakyPublisher("user")
    ids = {"alice": "id-alice", "bob": "id-bob"}
    games = Lobby(publisher, ids.__getitem__, "http://game.test")  # type: ignore[arg-type]
    # When a game is created, Then it exists, registered, with its seat links
    # (an error here left a registered game nobody had the links to, and a
    # retry made a second one)
    game, seats = games.create(["alice", "bob"])
    assert set(seats) == {"alice", "bob"}
    assert games.get(game.game_id) is game
    assert publisher.games == {game.game_id: ["id-alice", "id-bob"]}
