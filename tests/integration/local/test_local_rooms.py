"""Acceptance of issue 13 against the real ``iotnotify local``: rooms end to end.

alice and bob chat in a public room through the moderated path (client ->
input topic -> topic rule -> moderator Lambda -> room topic), a forged
publish to the room topic is refused, a private room stays invisible to a
non-member, and malformed input is refused to its sender without filling
the dead-letter queue while the broker keeps serving.
"""

from __future__ import annotations

import json
import queue
import secrets
from typing import Any

import boto3
import pytest

from iotnotify.policies import MAX_CHANNELS_PER_TOKEN
from tests.integration.local.clients import MqttUser, api, sign_in, sign_up
from tests.local_process import LocalProcess

# The acceptance bound of issue 13 ("bob receives alice's message within 2 s").
DELIVERY_BOUND_SECONDS = 2.0


def room_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def id_token(stack: LocalProcess, name: str) -> str:
    return sign_in(stack.state, stack.user(name))


def join(stack: LocalProcess, id_tok: str, room: str, suffix: str) -> tuple[MqttUser, Any]:
    """What joining means: a token naming the room, a (re)connect, a subscribe."""
    status, token = api(stack.state, "GET", f"/token?rooms={room}", token=id_tok)
    assert status == 200, token
    client = MqttUser(token, suffix=suffix)
    assert client.connected.wait(10)
    assert client.subscribe(token["channels"][room]["topic"]) == [0]
    return client, token


def next_message(client: MqttUser, topic: str, within: float) -> dict[str, Any]:
    while True:
        got_topic, payload = client.messages.get(timeout=within)
        if got_topic == topic:
            return dict(json.loads(payload))


def emulator_stats(stack: LocalProcess) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(stack.state["extra"]["emulatorStatsUrl"], timeout=10) as answer:
        return dict(json.loads(answer.read()))


def test_public_room_moderated_chat_with_history(local_stack: LocalProcess) -> None:
    room = room_name("lobby")
    alice_id, bob_id = id_token(local_stack, "alice"), id_token(local_stack, "bob")
    alice_sub = local_stack.user("alice")["sub"]
    bob_sub = local_stack.user("bob")["sub"]
    status, created = api(local_stack.state, "POST", "/chats", token=alice_id, body={"room": room})
    assert status == 201, created
    bob, _ = join(local_stack, bob_id, room, "bob-chat")
    alice, alice_token = join(local_stack, alice_id, room, "alice-chat")
    channel = alice_token["channels"][room]
    publish_denials_before = emulator_stats(local_stack)["denials_by_action"].get("iot:Publish", 0)
    try:
        # When alice sends to the input topic, claiming to be bob, with a denylisted word
        forged = {"text": "hello darn world", "sender": bob_sub}
        alice.client.publish(channel["inputTopic"], json.dumps(forged), qos=1)
        # Then bob gets the moderated envelope within the bound, from alice, masked
        message = next_message(bob, channel["topic"], DELIVERY_BOUND_SECONDS)
        assert message["type"] == "chat.message"
        assert message["room"] == room
        assert message["sender"] == alice_sub
        assert message["text"] == "hello **** world"
        # And the history returns it, oldest first
        status, history = api(
            local_stack.state, "GET", f"/chats/{room}/messages?limit=10", token=bob_id
        )
        assert status == 200, history
        assert [(m["id"], m["sender"], m["text"]) for m in history["messages"]] == [
            (message["id"], alice_sub, "hello **** world")
        ]
        # When alice publishes straight to the room topic, bypassing moderation
        alice.client.publish(channel["topic"], json.dumps({"text": "forged"}), qos=0)
        # Then her connection is closed (MQTT 3.1.1) and nothing reaches bob
        assert alice.disconnected.wait(10)
        with pytest.raises(queue.Empty):
            next_message(bob, channel["topic"], 1.0)
        denied = emulator_stats(local_stack)["denials_by_action"].get("iot:Publish", 0)
        assert denied == publish_denials_before + 1
    finally:
        alice.close()
        bob.close()


def test_private_room_is_invisible_and_closed_to_non_members(local_stack: LocalProcess) -> None:
    room = room_name("secret")
    alice_id, bob_id = id_token(local_stack, "alice"), id_token(local_stack, "bob")
    email = f"carol-{secrets.token_hex(3)}@example.com"
    password = "Aa1!" + secrets.token_hex(8)
    sign_up(local_stack.state, email, password)
    carol_id = sign_in(local_stack.state, {"username": email, "password": password})
    status, _ = api(
        local_stack.state, "POST", "/chats", token=alice_id, body={"room": room, "private": True}
    )
    assert status == 201
    bob_sub = local_stack.user("bob")["sub"]
    # An id of the right form that names no user of the pool is refused...
    status, refused = api(
        local_stack.state,
        "POST",
        f"/chats/{room}/members",
        token=alice_id,
        body={"user": "no-such-user"},
    )
    assert (status, refused["error"]) == (404, "not_found")
    # ...a user's sub is added
    status, _ = api(
        local_stack.state,
        "POST",
        f"/chats/{room}/members",
        token=alice_id,
        body={"user": bob_sub},
    )
    assert status == 200

    def listed(id_tok: str) -> set[str]:
        names: set[str] = set()
        path = "/chats?limit=100"
        while True:
            status, page = api(local_stack.state, "GET", path, token=id_tok)
            assert status == 200, page
            names |= {r["room"] for r in page["rooms"]}
            if not page["next"]:
                return names
            path = f"/chats?limit=100&next={page['next']}"

    assert room in listed(bob_id)
    assert room not in listed(carol_id)
    assert api(local_stack.state, "GET", f"/token?rooms={room}", token=carol_id)[0] == 403
    status, body = api(local_stack.state, "GET", f"/chats/{room}/messages", token=carol_id)
    assert (status, body["error"]) == (403, "forbidden")
    assert api(local_stack.state, "GET", f"/token?rooms={room}", token=bob_id)[0] == 200
    assert api(local_stack.state, "GET", "/token?rooms=no-such-room", token=bob_id)[0] == 404
    forty = ",".join(f"r{n}" for n in range(40))
    assert MAX_CHANNELS_PER_TOKEN < 40
    assert api(local_stack.state, "GET", f"/token?rooms={forty}", token=bob_id)[0] == 400


def test_a_malformed_input_is_refused_to_its_sender_never_dead_lettered(
    local_stack: LocalProcess,
) -> None:
    room = room_name("junk")
    alice_id = id_token(local_stack, "alice")
    alice_sub = local_stack.user("alice")["sub"]
    assert api(local_stack.state, "POST", "/chats", token=alice_id, body={"room": room})[0] == 201
    alice, token = join(local_stack, alice_id, room, "alice-junk")
    channel = token["channels"][room]
    own_topic = next(t for t in token["topics"] if t.endswith(f"/user/{alice_sub}/notifications"))
    assert alice.subscribe(own_topic) == [0]
    before = emulator_stats(local_stack)["rules"]
    sqs = boto3.client(
        "sqs",
        region_name=local_stack.state["region"],
        endpoint_url=local_stack.state["awsEndpointUrl"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        # When a client sends bytes that are no JSON object, then an object without text
        for junk in (b"\xff\xfe not json", b"[1, 2, 3]", json.dumps({"text": 7}).encode()):
            alice.client.publish(channel["inputTopic"], junk, qos=1)
            # Then the moderator refuses each, telling her why...
            note = next_message(alice, own_topic, 10)
            assert note["type"] == "chat.rejected"
            assert note["data"]["reason"] in ("invalid", "malformed")
        # ...the rule did not fail, so the dead-letter queue stays empty
        after = emulator_stats(local_stack)["rules"]
        assert after["failures"] == before["failures"]
        received = sqs.receive_message(
            QueueUrl=local_stack.state["extra"]["chatDlqUrl"],
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
        )
        dead = [json.loads(m["Body"]) for m in received.get("Messages", [])]
        assert [d for d in dead if d.get("topic") == channel["inputTopic"]] == []
        # ...and the same connection still chats through the rule
        alice.client.publish(channel["inputTopic"], json.dumps({"text": "still up"}), qos=1)
        message = next_message(alice, channel["topic"], 10)
        assert message["text"] == "still up"
        assert not alice.disconnected.is_set()
    finally:
        alice.close()
