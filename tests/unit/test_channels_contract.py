"""The channel part of the wire contract: channel topics, input topics, chat envelope."""

from __future__ import annotations

import json

import pytest

from iotnotify.contract import CHAT_MESSAGE_TYPE, Channel, ChatMessage, TopicScheme
from iotnotify.errors import ContractError, InvalidEnvelope, InvalidTopic

SCHEME = TopicScheme("iotnotify", "dev")


def test_channel_topics_come_from_the_scheme() -> None:
    room = Channel("room", "lobby")
    assert str(room.topic(SCHEME)) == "iotnotify/dev/chat/lobby"
    assert room.topics_json(SCHEME) == {
        "topic": "iotnotify/dev/chat/lobby",
        "inputTopic": "iotnotify/dev/chat/lobby/input",
    }
    game = Channel("game", "g1")
    assert game.topics_json(SCHEME) == {"topic": "iotnotify/dev/game/g1"}
    assert game.input_topic(SCHEME) is None


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "", "x" * 65, "a*"])
def test_channel_names_cannot_widen_topics(bad: str) -> None:
    with pytest.raises(ContractError):
        Channel("room", bad)


def test_unknown_channel_kinds_are_refused() -> None:
    with pytest.raises(InvalidTopic):
        Channel("dm", "x")  # type: ignore[arg-type]


def test_the_input_filter_and_the_room_level_match_the_topics() -> None:
    flt = SCHEME.chat_input_filter()
    assert str(flt) == "iotnotify/dev/chat/+/input"
    assert flt.matches(SCHEME.chat_input("lobby"))
    assert not flt.matches(SCHEME.chat("lobby"))
    assert SCHEME.chat_room_level == 4
    assert str(SCHEME.chat_input("lobby")).split("/")[SCHEME.chat_room_level - 1] == "lobby"
    assert SCHEME.room_of_input_topic("iotnotify/dev/chat/lobby/input") == "lobby"
    with pytest.raises(InvalidTopic):
        SCHEME.room_of_input_topic("iotnotify/dev/chat/lobby")


def test_chat_message_envelope_round_trips() -> None:
    message = ChatMessage.create(room="lobby", sender="alice", text="hi")
    raw = json.loads(message.to_json())
    assert set(raw) == {"v", "id", "type", "room", "sender", "text", "ts"}
    assert (raw["v"], raw["type"]) == (1, CHAT_MESSAGE_TYPE)
    assert ChatMessage.from_dict(raw) == message
    later = ChatMessage.create(room="lobby", sender="alice", text="again")
    assert later.id > message.id  # sortable, for history pages
    with pytest.raises(InvalidEnvelope):
        ChatMessage.from_dict({**raw, "type": "notification"})
    with pytest.raises(ContractError):
        ChatMessage.create(room="lobby", sender="not a user", text="x")


def test_a_seeded_chat_id_is_a_function_of_its_input_and_keeps_the_millisecond() -> None:
    at_ms = 1_764_000_000_123
    one = ChatMessage.create(
        room="lobby", sender="alice", text="hi", received_at_ms=at_ms, id_seed=b"e1"
    )
    same = ChatMessage.create(
        room="lobby", sender="alice", text="hi", received_at_ms=at_ms, id_seed=b"e1"
    )
    other = ChatMessage.create(
        room="lobby", sender="alice", text="hi", received_at_ms=at_ms, id_seed=b"e2"
    )
    later = ChatMessage.create(
        room="lobby", sender="alice", text="hi", received_at_ms=at_ms + 1, id_seed=b"e0"
    )
    assert one.id == same.id
    assert one.ts == same.ts == "2025-11-24T16:00:00.123Z"
    assert other.id != one.id
    assert other.id[:10] == one.id[:10]
    assert max(one.id, other.id) < later.id  # ids still follow the receipt time
