"""Rooms (issue 13 + issue 10): privacy, members, quota, pagination, history, tokens.

Handlers run under moto exactly as on Lambda; events are the REST proxy
events API Gateway sends after the Cognito authorizer.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sts.models import sts_backends

from iotnotify.contract import ChatMessage
from iotnotify.policies import MAX_CHANNELS_PER_TOKEN
from iotnotify_handlers import api_chats, api_token, clients
from tests.conftest import FakeAccount, FakeUserPool, rest_event

# The iss claim API Gateway's Cognito authorizer passes on (the test's pool).
ISSUER: dict[str, str] = {}


@pytest.fixture(autouse=True)
def pool(user_pool: FakeUserPool) -> Iterator[FakeUserPool]:
    ISSUER["iss"] = user_pool.issuer
    yield user_pool
    ISSUER.clear()


def call(
    method: str,
    resource: str,
    user: str = "alice",
    *,
    room: str | None = None,
    body: Any = None,
    query: dict[str, str] | None = None,
) -> tuple[int, Any]:
    path = resource.replace("{room}", room or "")
    claims = {"sub": user, **ISSUER}
    event = rest_event(method=method, path=path, claims=claims, body=body, query=query)
    event["resource"] = resource
    event["pathParameters"] = {"room": room} if room is not None else None
    handler = api_token.handler if resource == "/token" else api_chats.handler
    response = handler(event, None)
    assert response["headers"]["Access-Control-Allow-Origin"]
    return response["statusCode"], json.loads(response["body"])


def create(user: str, room: str, *, private: bool = False) -> tuple[int, Any]:
    return call("POST", "/chats", user, body={"room": room, "private": private})


def listed(user: str, *, limit: str = "100") -> list[str]:
    names: list[str] = []
    query = {"limit": limit}
    while True:
        status, page = call("GET", "/chats", user, query=query)
        assert status == 200
        names += [r["room"] for r in page["rooms"]]
        if not page["next"]:
            return sorted(names)
        query = {"limit": limit, "next": page["next"]}


def test_private_rooms_are_listed_to_members_only(account: FakeAccount) -> None:
    assert create("alice", "secret", private=True)[0] == 201
    assert create("alice", "lobby")[0] == 201
    assert listed("alice") == ["lobby", "secret"]
    assert listed("carol") == ["lobby"]
    assert call("POST", "/chats/{room}/members", room="secret", body={"user": "bob"})[0] == 200
    assert listed("bob") == ["lobby", "secret"]
    assert listed("carol") == ["lobby"]


def test_only_the_owner_adds_members(account: FakeAccount) -> None:
    create("alice", "secret", private=True)
    status, body = call("POST", "/chats/{room}/members", "bob", room="secret", body={"user": "bob"})
    assert (status, body["error"]) == (403, "forbidden")
    status, body = call("POST", "/chats/{room}/members", room="nope", body={"user": "bob"})
    assert status == 404
    status, body = call("POST", "/chats/{room}/members", room="secret", body={"user": "a/b"})
    assert status == 400
    status, room = call("POST", "/chats/{room}/members", room="secret", body={"user": "bob"})
    assert (status, room["members"]) == (200, ["alice", "bob"])


def test_only_users_of_the_pool_can_be_added(account: FakeAccount) -> None:
    create("alice", "secret", private=True)
    # A made-up or mistyped id (valid in form) names nobody in the pool.
    status, body = call("POST", "/chats/{room}/members", room="secret", body={"user": "bobb"})
    assert (status, body["error"]) == (404, "not_found")
    assert "bobb" in body["message"]
    status, room = call("POST", "/chats/{room}/members", room="secret", body={"user": "bob"})
    assert (status, room["members"]) == (200, ["alice", "bob"])
    assert listed("bobb") == []


def test_without_a_cognito_issuer_no_member_is_added(account: FakeAccount) -> None:
    create("alice", "secret", private=True)
    ISSUER["iss"] = "https://accounts.example.com"
    status, body = call("POST", "/chats/{room}/members", room="secret", body={"user": "bob"})
    assert (status, body["error"]) == (503, "service_unavailable")
    ISSUER.clear()
    assert call("POST", "/chats/{room}/members", room="secret", body={"user": "bob"})[0] == 503
    assert listed("bob") == []


def test_room_creation_has_a_per_user_quota(account: FakeAccount, monkeypatch: Any) -> None:
    monkeypatch.setenv("IOTNOTIFY_MAX_ROOMS_PER_USER", "3")
    clients.reset()
    for n in range(3):
        assert create("mallory", f"junk{n}")[0] == 201
    status, body = create("mallory", "junk3")
    assert (status, body["error"]) == (403, "quota_exceeded")
    assert create("alice", "mine")[0] == 201  # the quota is per user
    assert create("mallory", "mine")[0] == 409  # taken is still a conflict


def test_listing_is_paginated_so_many_rooms_cannot_hide_one(account: FakeAccount) -> None:
    """Issue 10: 120 junk rooms hid another user's room behind one scan page."""
    table = clients.chat_rooms()._table  # seed past the quota directly, as an old table would be
    with table.batch_writer() as batch:
        for n in range(120):
            batch.put_item(Item={"room": f"junk{n:03d}", "createdBy": "mallory", "private": False})
    create("bob", "bobs-room")
    names = listed("alice", limit="25")
    assert "bobs-room" in names
    assert len(names) == 121
    assert call("GET", "/chats", query={"next": "not-a-token"})[0] == 400
    assert call("GET", "/chats", query={"limit": "0"})[0] == 400


def test_listing_tokens_never_name_rooms_or_users_the_caller_cannot_see(
    account: FakeAccount,
) -> None:
    """Review of issue 13: ``next`` was the scan's LastEvaluatedKey, so a
    non-member paging with limit=1 read private room names (and room
    creators' quota keys) out of the base64 tokens."""
    for n in range(6):
        create("alice", f"hidden{n}", private=True)
        create("bob", f"open{n}")
    tokens: list[str] = []
    names: list[str] = []
    query = {"limit": "1"}
    while True:
        status, page = call("GET", "/chats", "carol", query=query)
        assert status == 200
        assert len(page["rooms"]) <= 1
        names += [r["room"] for r in page["rooms"]]
        if not page["next"]:
            break
        tokens.append(page["next"])
        query = {"limit": "1", "next": page["next"]}
    assert sorted(names) == [f"open{n}" for n in range(6)]
    decoded = " ".join(base64.urlsafe_b64decode(t).decode() for t in tokens)
    assert "hidden" not in decoded
    assert "#quota#" not in decoded
    assert "alice" not in decoded
    # and a token naming anything but a room is refused, not handed to DynamoDB
    for forged in ({"room": ""}, {"room": "#quota#alice"}, {"room": "x" * 2000}):
        token = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode()
        assert call("GET", "/chats", "carol", query={"next": token})[0] == 400


def test_history_is_members_only_oldest_first_and_paginated(account: FakeAccount) -> None:
    create("alice", "secret", private=True)
    history = clients.chat_history()
    sent = [ChatMessage.create(room="secret", sender="alice", text=f"m{n}") for n in range(5)]
    for message in sent:
        history.append(message)
    status, page = call("GET", "/chats/{room}/messages", room="secret", query={"limit": "3"})
    assert status == 200
    assert [m["text"] for m in page["messages"]] == ["m2", "m3", "m4"]
    status, older = call(
        "GET",
        "/chats/{room}/messages",
        room="secret",
        query={"limit": "3", "before": page["next"]},
    )
    assert [m["text"] for m in older["messages"]] == ["m0", "m1"]
    assert older["next"] is None
    status, body = call("GET", "/chats/{room}/messages", "carol", room="secret")
    assert (status, body["error"]) == (403, "forbidden")
    assert call("GET", "/chats/{room}/messages", room="unknown")[0] == 404


def test_token_names_the_rooms_channels_and_grants_them(account: FakeAccount) -> None:
    create("alice", "lobby")
    create("alice", "secret", private=True)
    status, token = call("GET", "/token", "bob", query={"rooms": "lobby"})
    assert status == 200
    assert token["channels"] == {
        "lobby": {
            "topic": "iotnotify/test/chat/lobby",
            "inputTopic": "iotnotify/test/chat/lobby/input",
        }
    }
    policy = json.loads(sts_backends[DEFAULT_ACCOUNT_ID]["aws"].assumed_roles[-1].policy)
    publish = next(s for s in policy["Statement"] if s["Action"] == "iot:Publish")
    assert publish["Resource"] == ["arn:aws:iot:*:*:topic/iotnotify/test/chat/lobby/input"]


@pytest.mark.parametrize(
    ("user", "rooms", "status"),
    [
        ("carol", "secret", 403),  # private, not a member
        ("carol", "lobby,secret", 403),
        ("alice", "nowhere", 404),
        ("alice", "a/b", 400),
        ("alice", ",".join(f"r{n}" for n in range(40)), 400),
        ("alice", ",".join(f"r{n}" for n in range(MAX_CHANNELS_PER_TOKEN + 1)), 400),
    ],
)
def test_token_refuses_rooms_the_caller_may_not_use(
    account: FakeAccount, user: str, rooms: str, status: int
) -> None:
    create("alice", "lobby")
    create("alice", "secret", private=True)
    before = len(sts_backends[DEFAULT_ACCOUNT_ID]["aws"].assumed_roles)
    assert call("GET", "/token", user, query={"rooms": rooms})[0] == status
    assert len(sts_backends[DEFAULT_ACCOUNT_ID]["aws"].assumed_roles) == before  # no credentials


def test_members_get_tokens_for_private_rooms(account: FakeAccount) -> None:
    create("alice", "secret", private=True)
    call("POST", "/chats/{room}/members", room="secret", body={"user": "bob"})
    status, token = call("GET", "/token", "bob", query={"rooms": "secret"})
    assert status == 200
    assert set(token["channels"]) == {"secret"}


@pytest.mark.parametrize(
    ("resource", "body"),
    [
        ("/chats", {"room": "typo", "Private": True}),  # a typo must not make a public room
        ("/chats", {"room": "extra", "private": True, "owner": "bob"}),
        ("/chats/{room}/members", {"user": "bob", "role": "admin"}),
    ],
)
def test_a_body_with_a_field_the_route_does_not_know_is_refused(
    account: FakeAccount, resource: str, body: dict[str, Any]
) -> None:
    create("alice", "secret", private=True)
    status, answer = call("POST", resource, room="secret", body=body)
    assert (status, answer["error"]) == (400, "bad_request")
    assert answer["message"].startswith("unknown field(s): ")
    # And nothing was made or changed
    assert call("GET", "/chats/{room}/messages", "bob", room="secret")[0] == 403
    listed = [room["room"] for room in call("GET", "/chats", "alice")[1]["rooms"]]
    assert listed == ["secret"]


def test_a_repeated_query_parameter_is_refused_not_half_read(account: FakeAccount) -> None:
    # API Gateway passes the last value of `?rooms=lobby&rooms=other` in
    # queryStringParameters and both in the multi-value map; reading the
    # single value alone answered 200 with one of the two rooms asked for.
    create("alice", "lobby")
    create("alice", "other")
    before = len(sts_backends[DEFAULT_ACCOUNT_ID]["aws"].assumed_roles)
    event = rest_event(path="/token", claims={"sub": "alice", **ISSUER}, query={"rooms": "other"})
    event["multiValueQueryStringParameters"] = {"rooms": ["lobby", "other"]}
    response = api_token.handler(event, None)
    body = json.loads(response["body"])
    assert (response["statusCode"], body["error"]) == (400, "bad_request")
    assert "rooms" in body["message"]
    assert response["headers"]["Access-Control-Allow-Origin"]
    assert len(sts_backends[DEFAULT_ACCOUNT_ID]["aws"].assumed_roles) == before  # no credentials
    # while a key given once, and the comma-separated form, still work
    event["multiValueQueryStringParameters"] = {"rooms": ["lobby,other"]}
    event["queryStringParameters"] = {"rooms": "lobby,other"}
    assert api_token.handler(event, None)["statusCode"] == 200


def test_history_before_past_the_largest_ulid_is_a_400(account: FakeAccount) -> None:
    create("alice", "lobby")
    for before in ("Z" * 26, "8" + "0" * 25):
        status, body = call("GET", "/chats/{room}/messages", room="lobby", query={"before": before})
        assert (status, body["error"]) == (400, "bad_request")
    assert (
        call("GET", "/chats/{room}/messages", room="lobby", query={"before": "7" + "Z" * 25})[0]
        == 200
    )
