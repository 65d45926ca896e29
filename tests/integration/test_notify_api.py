"""POST /notify under moto: IAM or API key, validation, results per user."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from iotnotify.publisher import Publisher
from iotnotify_handlers import api_notify, clients
from tests.conftest import API_KEY, FakeAccount, rest_event

GAME_SERVER_ARN = "arn:aws:iam::123456789012:user/game-server"


def post(body: Any, *, headers: dict[str, str] | None = None, iam: bool = True) -> tuple[int, dict]:
    path = "/notify" if iam else "/notify/key"
    event = rest_event(
        method="POST",
        path=path,
        body=body,
        headers=headers,
        iam_user_arn=GAME_SERVER_ARN if iam else None,
    )
    response = api_notify.handler(event)
    return response["statusCode"], json.loads(response["body"])


def test_an_iam_caller_notifies_users_and_gets_one_result_each(account: FakeAccount) -> None:
    status, body = post({"users": ["alice", "bob"], "title": "Your turn", "data": {"game": 3}})
    assert status == 200
    assert body["results"] == [{"userId": "alice", "ok": True}, {"userId": "bob", "ok": True}]
    topics = sorted(t for t, _ in account.published())
    assert topics == [
        "iotnotify/test/user/alice/notifications",
        "iotnotify/test/user/bob/notifications",
    ]


def test_the_api_key_alternative_is_checked_against_ssm(account: FakeAccount) -> None:
    ok, _ = post({"user": "alice", "title": "hi"}, headers={"x-api-key": API_KEY}, iam=False)
    assert ok == 200
    wrong, body = post({"user": "alice", "title": "hi"}, headers={"x-api-key": "nope"}, iam=False)
    assert (wrong, body["error"]) == (401, "unauthorized")
    missing, body = post({"user": "alice", "title": "hi"}, iam=False)
    assert (missing, body["error"]) == (401, "unauthorized")
    assert len(account.published()) == 1


def test_the_api_key_is_cached_with_a_ttl(account: FakeAccount) -> None:
    headers = {"x-api-key": API_KEY}
    assert post({"user": "alice", "title": "1"}, headers=headers, iam=False)[0] == 200
    account.session.client("ssm").put_parameter(
        Name="/iotnotify/test/notify-api-key", Value="rotated", Type="SecureString", Overwrite=True
    )
    # Within the cache TTL the old key still works: no SSM call per request.
    assert post({"user": "alice", "title": "2"}, headers=headers, iam=False)[0] == 200


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"users": ["alice"]}, "title"),
        ({"users": ["a/b"], "title": "t"}, "invalid user id"),
        ({"users": ["alice"], "title": "t", "data": []}, "data"),
        ({"title": "t"}, "exactly one target"),
        ({"users": ["alice"], "broadcast": True, "title": "t"}, "exactly one target"),
        ({"users": [f"u{i}" for i in range(1001)], "title": "t"}, "at most 1000"),
        ({"user": "alice", "title": "t", "extra": 1}, "unknown field"),
        ("not json", "not valid JSON"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_bodies_get_400_and_nothing_is_sent(
    account: FakeAccount, body: Any, fragment: str
) -> None:
    status, answer = post(body)
    assert status == 400
    assert answer["error"] == "bad_request"
    assert fragment in answer["message"]
    assert account.published() == []


def test_an_oversized_envelope_gets_413(account: FakeAccount) -> None:
    status, answer = post({"user": "alice", "title": "t", "body": "x" * (130 * 1024)})
    assert status == 413
    assert answer["error"] == "payload_too_large"
    assert account.published() == []


def test_a_valid_envelope_sent_with_every_character_escaped_is_accepted(
    account: FakeAccount,
) -> None:
    # Given a 120 KB envelope (under IoT's 128 KB) whose JSON a client wrote
    # with json.dumps's default: each "é" as \u00e9, 360 KB on the wire
    text = "\u00e9" * 60_000
    raw = json.dumps({"user": "alice", "title": "t", "body": text})
    assert len(raw) > 256 * 1024
    status, answer = post(raw)
    # Then it is delivered, not refused for the size of its escapes
    assert status == 200, answer
    [(_, payload)] = account.published()
    assert json.loads(payload)["body"] == text


def test_a_body_over_one_mebibyte_gets_413_before_it_is_parsed(account: FakeAccount) -> None:
    status, answer = post("{" + " " * (1024 * 1024) + "}")
    assert (status, answer["error"]) == (413, "payload_too_large")
    assert answer["message"] == "request body is over 1048576 bytes"
    assert account.published() == []


def test_broadcast_and_game_targets(account: FakeAccount) -> None:
    clients.games().register("g42", ["alice", "bob"])
    assert post({"broadcast": True, "title": "all"})[0] == 200
    assert post({"game": "g42", "title": "move"})[0] == 200
    assert [t for t, _ in account.published()] == [
        "iotnotify/test/broadcast",
        "iotnotify/test/game/g42",
    ]


def test_the_iam_route_refuses_a_request_without_a_verified_identity(
    account: FakeAccount,
) -> None:
    event = rest_event(
        method="POST",
        path="/notify",
        body={"user": "alice", "title": "hi"},
        headers={"x-api-key": API_KEY},
    )
    response = api_notify.handler(event)
    assert response["statusCode"] == 401
    assert account.published() == []


def test_responses_carry_the_cors_origin(
    account: FakeAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iotnotify_handlers import clients

    monkeypatch.setenv("IOTNOTIFY_CORS_ORIGIN", "https://d111.cloudfront.net")
    clients.reset()
    response = api_notify.handler(rest_event(method="POST", path="/notify", body={}))
    assert response["headers"]["Access-Control-Allow-Origin"] == "https://d111.cloudfront.net"


def test_a_game_nobody_registered_is_a_404_and_nothing_is_sent(account: FakeAccount) -> None:
    # As GET /token?games= answers for an unknown game: a typo in a game id
    # was a 200 published to a topic no token can ever name.
    status, body = post({"game": "g43", "title": "move"})
    assert (status, body["error"]) == (404, "not_found")
    assert "g43" in body["message"]
    assert account.published() == []


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"],
)
def test_a_body_declared_as_something_else_than_json_gets_415(
    account: FakeAccount, content_type: str
) -> None:
    # RFC 9110 15.5.16: the Content-Type names a format the route does not
    # take. `curl -d` without -H sends form-urlencoded: the answer says what to send.
    note = {"user": "alice", "title": "hi"}
    status, body = post(
        note, headers={"x-api-key": API_KEY, "Content-Type": content_type}, iam=False
    )
    assert (status, body["error"]) == (415, "unsupported_media_type")
    assert "application/json" in body["message"]
    assert account.published() == []
    # JSON, JSON with a charset, a +json type, and no Content-Type at all are read
    for sent in ("application/json", "Application/JSON; charset=utf-8", "application/merge+json"):
        status, _ = post(note, headers={"x-api-key": API_KEY, "Content-Type": sent}, iam=False)
        assert status == 200, sent
    assert post(note, headers={"x-api-key": API_KEY}, iam=False)[0] == 200


def test_two_api_keys_are_refused_whichever_is_right(account: FakeAccount) -> None:
    # One credential per request, as for two Authorization headers: API
    # Gateway passes the last of a repeated header in `headers`, so the right
    # key behind a wrong one went through.
    event = rest_event(
        method="POST",
        path="/notify/key",
        body={"user": "alice", "title": "hi"},
        headers={"x-api-key": API_KEY},
    )
    event["multiValueHeaders"] = {"x-api-key": ["wrong", API_KEY]}
    response = api_notify.handler(event)
    body = json.loads(response["body"])
    assert (response["statusCode"], body["error"]) == (401, "unauthorized")
    assert "more than one" in body["message"]
    assert account.published() == []


class _IotDataDown:
    """iot-data answering every publish with an error (after botocore's retries)."""

    def __init__(self, code: str) -> None:
        self._code = code

    def publish(self, **_kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": self._code, "Message": "down"}}, "Publish")


@pytest.mark.parametrize("code", ["InternalFailure", "ThrottlingException"])
def test_a_game_or_broadcast_publish_that_iot_refuses_is_a_503_to_retry_not_a_500(
    account: FakeAccount, monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    # Given a registered game and iot-data failing
    clients.games().register("g42", ["alice", "bob"])
    down = Publisher(scheme=account.scheme, iot_data=_IotDataDown(code))
    # Cached like the real factory, so clients.reset() can clear it.
    monkeypatch.setattr(clients, "publisher", functools.cache(lambda: down))
    for target in ({"game": "g42"}, {"broadcast": True}):
        # When a game server sends to the game (or everyone)
        status, answer = post({**target, "title": "move"})
        # Then the answer says to try again, as for the other AWS failures
        # of the API, rather than "internal error" (nothing was sent)
        assert (status, answer["error"]) == (503, "service_unavailable"), answer
        assert "try again" in answer["message"]
