"""Game channels (issue 14 §1): registering games and the game channel in tokens.

Handlers run under moto as on Lambda; the events are what API Gateway sends
after IAM auth (``identity.userArn``), after the Cognito authorizer, or with
nothing checked on ``/games/key``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sts.models import sts_backends

from iotnotify.games import GameRegistry, InvalidGame
from iotnotify.policies import MAX_CHANNELS_PER_TOKEN
from iotnotify.publisher import Publisher
from iotnotify_handlers import api_chats, api_games, api_token
from tests.conftest import API_KEY, APP, STAGE, FakeAccount, rest_event

BACKEND_ARN = f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:user/game-server"


def register(
    body: Any, *, resource: str = "/games", iam: bool = True, key: str | None = None
) -> tuple[int, Any]:
    headers = {"x-api-key": key} if key is not None else {}
    event = rest_event(
        method="POST",
        path=resource,
        body=body,
        headers=headers,
        iam_user_arn=BACKEND_ARN if iam else None,
    )
    response = api_games.handler(event, None)
    assert response["headers"]["Access-Control-Allow-Origin"]
    return response["statusCode"], json.loads(response["body"])


def token(user: str, **query: str) -> tuple[int, Any]:
    response = api_token.handler(rest_event(path="/token", claims={"sub": user}, query=query))
    return response["statusCode"], json.loads(response["body"])


def assumed() -> int:
    return len(sts_backends[DEFAULT_ACCOUNT_ID]["aws"].assumed_roles)


def test_a_backend_registers_a_game_with_iam_or_the_api_key(account: FakeAccount) -> None:
    status, game = register({"gameId": "chess-1", "players": ["alice", "bob", "alice"]})
    assert status == 201
    assert game["players"] == ["alice", "bob"]
    assert game["topic"] == f"{APP}/{STAGE}/game/chess-1"
    status, game = register(
        {"gameId": "chess-1", "players": ["alice", "carol"]},
        resource="/games/key",
        iam=False,
        key=API_KEY,
    )
    assert (status, game["players"]) == (201, ["alice", "carol"])  # players replaced


@pytest.mark.parametrize(
    ("resource", "iam", "key", "status"),
    [
        ("/games", False, None, 401),  # the IAM route without API Gateway's identity
        ("/games/key", False, None, 401),
        ("/games/key", False, "wrong", 401),
    ],
)
def test_registering_needs_iam_or_the_key(
    account: FakeAccount, resource: str, iam: bool, key: str | None, status: int
) -> None:
    body = {"gameId": "g1", "players": ["alice"]}
    assert register(body, resource=resource, iam=iam, key=key)[0] == status
    assert (
        GameRegistry(account.session.resource("dynamodb").Table(f"{APP}-{STAGE}-games")).get("g1")
        is None
    )


@pytest.mark.parametrize(
    "body",
    [
        {"gameId": "a/b", "players": ["alice"]},
        {"gameId": "g", "players": []},
        {"gameId": "g", "players": ["al ice"]},
        {"gameId": "g", "players": "alice"},
        {"gameId": "g", "players": ["alice"], "owner": "x"},
        ["g"],
    ],
)
def test_invalid_games_are_400(account: FakeAccount, body: Any) -> None:
    status, answer = register(body)
    assert (status, answer["error"]) == (400, "bad_request")


def test_publisher_register_game_then_players_get_the_channel(account: FakeAccount) -> None:
    publisher = Publisher(
        scheme=account.scheme,
        iot_data=account.session.client("iot-data"),
        games=GameRegistry(account.session.resource("dynamodb").Table(f"{APP}-{STAGE}-games")),
    )
    game = publisher.register_game("catan-7", ["alice", "bob"])
    assert game.players == {"alice", "bob"}
    with pytest.raises(InvalidGame):
        publisher.register_game("catan-8", [])

    status, body = token("bob", games="catan-7")
    assert status == 200
    assert body["games"] == {"catan-7": {"topic": f"{APP}/{STAGE}/game/catan-7"}}
    assert body["channels"] == {}
    policy = json.loads(sts_backends[DEFAULT_ACCOUNT_ID]["aws"].assumed_roles[-1].policy)
    grants = {
        (action, resource)
        for s in policy["Statement"]
        for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        for resource in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    }
    game = f"{APP}/{STAGE}/game/catan-7"
    assert ("iot:Receive", f"arn:aws:iot:*:*:topic/{game}") in grants
    assert ("iot:Subscribe", f"arn:aws:iot:*:*:topicfilter/{game}") in grants
    # Games are read-only for players: no publish grant at all.
    assert not any(action == "iot:Publish" for action, _ in grants)


def test_a_publisher_without_a_games_table_says_so(account: FakeAccount) -> None:
    publisher = Publisher(scheme=account.scheme, iot_data=account.session.client("iot-data"))
    with pytest.raises(ValueError, match="games table"):
        publisher.register_game("g", ["alice"])


@pytest.mark.parametrize(
    ("user", "query", "status"),
    [
        ("carol", {"games": "chess-1"}, 403),  # not a player
        ("alice", {"games": "nowhere"}, 404),
        ("alice", {"games": "a/b"}, 400),
        ("alice", {"games": "chess-1", "rooms": "nowhere"}, 404),
        (
            "alice",
            {
                "games": ",".join(f"g{n}" for n in range(MAX_CHANNELS_PER_TOKEN)),
                "rooms": "lobby",
            },
            400,
        ),  # rooms and games share MAX_CHANNELS_PER_TOKEN
    ],
)
def test_token_refuses_games_the_caller_may_not_use(
    account: FakeAccount, user: str, query: dict[str, str], status: int
) -> None:
    register({"gameId": "chess-1", "players": ["alice", "bob"]})
    before = assumed()
    assert token(user, **query)[0] == status
    assert assumed() == before  # no credentials issued


def test_a_token_carries_rooms_and_games_together(account: FakeAccount) -> None:
    create = rest_event(method="POST", path="/chats", claims={"sub": "alice"}, body={"room": "x"})
    create["resource"] = "/chats"
    assert api_chats.handler(create, None)["statusCode"] == 201
    register({"gameId": "x", "players": ["alice"]})  # a game may share a room's name
    status, body = token("alice", rooms="x", games="x")
    assert status == 200
    assert body["channels"]["x"]["topic"] == f"{APP}/{STAGE}/chat/x"
    assert body["games"]["x"]["topic"] == f"{APP}/{STAGE}/game/x"
