"""GET/POST /chats under moto: conditional create, listing, validation."""

from __future__ import annotations

import json
from typing import Any

from iotnotify_handlers import api_chats
from tests.conftest import FakeAccount, rest_event


def call(method: str, user: str | None = "alice", body: Any = None) -> tuple[int, Any]:
    claims = {"sub": user} if user else None
    response = api_chats.handler(rest_event(method=method, path="/chats", claims=claims, body=body))
    return response["statusCode"], json.loads(response["body"])


def test_create_then_list_rooms_with_their_topics(account: FakeAccount) -> None:
    status, room = call("POST", body={"room": "lobby"})
    assert status == 201
    assert room["topic"] == "iotnotify/test/chat/lobby"
    assert room["inputTopic"] == "iotnotify/test/chat/lobby/input"
    assert room["createdBy"] == "alice"
    call("POST", user="bob", body={"room": "arena"})
    status, listing = call("GET", user="bob")
    assert status == 200
    assert [r["room"] for r in listing["rooms"]] == ["arena", "lobby"]


def test_creating_a_taken_room_is_a_conflict_not_an_overwrite(account: FakeAccount) -> None:
    assert call("POST", body={"room": "lobby"})[0] == 201
    status, body = call("POST", user="bob", body={"room": "lobby"})
    assert (status, body["error"]) == (409, "conflict")
    assert call("GET")[1]["rooms"][0]["createdBy"] == "alice"


def test_room_names_cannot_widen_topics_and_users_must_sign_in(account: FakeAccount) -> None:
    for bad in ("a/b", "#", "+", "", "x" * 65):
        assert call("POST", body={"room": bad})[0] == 400
    assert call("GET", user=None)[0] == 401
