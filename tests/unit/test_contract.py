"""The wire contract: user ids, client ids, topics, filters, envelope."""

from __future__ import annotations

import json
import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotnotify.contract import (
    MAX_CHAT_CID_CHARS,
    MAX_PAYLOAD_BYTES,
    MIN_CHAT_CID_CHARS,
    ChatMessage,
    Notification,
    Topic,
    TopicFilter,
    TopicScheme,
    client_id_for,
    client_id_prefix,
    is_chat_cid,
    new_chat_cid,
    new_notification_id,
    user_of_client_id,
    validate_chat_cid,
    validate_user_id,
)
from iotnotify.errors import (
    ContractError,
    InvalidClientId,
    InvalidEnvelope,
    InvalidTopic,
    InvalidUserId,
    PayloadTooLarge,
)

USER_ALPHABET = string.ascii_letters + string.digits + "_-"
user_ids = st.text(alphabet=USER_ALPHABET, min_size=1, max_size=64)
SCHEME = TopicScheme("iotnotify", "dev")

BAD_USER_IDS = ["a/b", "+", "#", "*", "?", "$x", "", "a" * 65, "élan", "al.ice", "a b", "a\x00"]


@pytest.mark.parametrize("bad", BAD_USER_IDS)
def test_invalid_user_ids_are_refused_with_a_clear_message(bad: str) -> None:
    with pytest.raises(InvalidUserId, match="invalid user id"):
        validate_user_id(bad)


@pytest.mark.parametrize("good", ["alice", "a", "A" * 64, "0b1c-2d3e_4f", "f81d4fae-7dec-11d0"])
def test_valid_user_ids_pass_unchanged(good: str) -> None:
    assert validate_user_id(good) == good


def test_non_string_user_id_is_refused() -> None:
    with pytest.raises(InvalidUserId):
        validate_user_id(None)


def test_client_ids_carry_the_user_and_a_suffix() -> None:
    assert client_id_prefix("alice") == "alice."
    assert client_id_for("alice", "laptop") == "alice.laptop"
    assert user_of_client_id("alice.laptop") == "alice"
    random_one, other = client_id_for("alice"), client_id_for("alice")
    assert random_one.startswith("alice.")
    assert random_one != other


@pytest.mark.parametrize("bad", ["alice", "alice.", ".x", "a/b.x", "$x.y"])
def test_client_ids_without_a_valid_user_part_are_refused(bad: str) -> None:
    with pytest.raises(InvalidClientId):
        user_of_client_id(bad)


def test_client_id_suffix_is_restricted() -> None:
    with pytest.raises(InvalidClientId):
        client_id_for("alice", "x/y")


def test_topic_scheme_spells_every_topic() -> None:
    assert str(SCHEME.user_notifications("alice")) == "iotnotify/dev/user/alice/notifications"
    assert str(SCHEME.broadcast()) == "iotnotify/dev/broadcast"
    assert str(SCHEME.game("g1")) == "iotnotify/dev/game/g1"
    assert str(SCHEME.chat("lobby")) == "iotnotify/dev/chat/lobby"
    assert str(SCHEME.chat_input("lobby")) == "iotnotify/dev/chat/lobby/input"


@pytest.mark.parametrize("bad", ["a/b", "+", "$x", ""])
def test_scheme_refuses_names_that_would_widen_a_topic(bad: str) -> None:
    with pytest.raises(ContractError):
        SCHEME.game(bad)
    with pytest.raises(ContractError):
        TopicScheme(bad, "dev")


def test_topic_limits_follow_aws() -> None:
    Topic("a/" * 7 + "b")  # 7 slashes is allowed
    with pytest.raises(InvalidTopic, match="slashes"):
        Topic("a/" * 8 + "b")
    Topic("x" * 256)
    with pytest.raises(InvalidTopic, match="bytes"):
        Topic("x" * 257)
    with pytest.raises(InvalidTopic, match="bytes"):
        Topic("é" * 129)  # 258 UTF-8 bytes
    for bad in ("", "a/+/b", "a/#", "a\x00b"):
        with pytest.raises(InvalidTopic):
            Topic(bad)
    assert Topic("$aws/events/presence/connected/x").is_reserved
    assert not Topic("iotnotify/dev/broadcast").is_reserved


@pytest.mark.parametrize("bad", ["a/b#", "a/#/b", "a+/b", "#/a", "a/++"])
def test_malformed_filters_are_refused(bad: str) -> None:
    with pytest.raises(InvalidTopic):
        TopicFilter(bad)


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/+", "a", False),
        ("a/#", "a", False),
        ("a/#", "a/", True),
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("+/+", "/x", True),
        ("+", "/x", False),
        ("#", "$aws/events/x", False),
        ("+/events/x", "$aws/events/x", False),
        ("$aws/events/#", "$aws/events/x", True),
        ("a/+/c", "a//c", True),
    ],
)
def test_filter_matching_follows_aws_iot(pattern: str, topic: str, expected: bool) -> None:
    assert TopicFilter(pattern).matches(topic) is expected
    assert TopicFilter(pattern).matches(Topic(topic)) is expected


@given(user_ids, user_ids)
def test_no_user_topic_is_matched_by_another_users_filter_or_pattern(a: str, b: str) -> None:
    """Property: a valid user id never reaches another user's topic or client ids."""
    if a == b:
        return
    topic_a = SCHEME.user_notifications(a)
    topic_b = SCHEME.user_notifications(b)
    assert topic_a != topic_b
    assert not TopicFilter(str(topic_a)).matches(topic_b)
    # The IAM patterns of the session policy: `client/{a}.*` and the exact topic.
    client_pattern = re.compile(re.escape(client_id_prefix(a)) + ".*", re.DOTALL)
    assert not client_pattern.fullmatch(client_id_for(b, "device"))
    assert not client_pattern.fullmatch(client_id_for(b))


@given(user_ids)
def test_every_valid_user_id_yields_valid_topics_and_client_ids(user: str) -> None:
    for topic in SCHEME.user_topics(user):
        assert TopicFilter(str(topic)).matches(topic)
        assert not TopicFilter(str(topic)).has_wildcards
    assert user_of_client_id(client_id_for(user, "x")) == user


def test_envelope_round_trip_and_shape() -> None:
    note = Notification.create(title="Your turn", body="Game 7", data={"game": 7})
    raw = json.loads(note.to_json())
    assert set(raw) == {"v", "id", "type", "title", "body", "data", "ts"}
    assert raw["v"] == 1
    assert raw["type"] == "notification"
    assert raw["ts"].endswith("Z")
    assert Notification.from_json(note.to_json()) == note


def test_ids_sort_in_creation_order_even_within_one_millisecond() -> None:
    ids = [new_notification_id() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 26 for i in ids)


def test_envelope_over_128_kb_is_refused() -> None:
    overhead = len(Notification.create(title="t", body="").to_json())
    Notification.create(title="t", body="x" * (MAX_PAYLOAD_BYTES - overhead))
    with pytest.raises(PayloadTooLarge):
        Notification.create(title="t", body="x" * (MAX_PAYLOAD_BYTES - overhead + 1))


@pytest.mark.parametrize("bad", [b"not json", b"[1]", b'{"v":2,"id":"x"}', b'{"title":"t"}'])
def test_malformed_envelopes_are_refused(bad: bytes) -> None:
    with pytest.raises(InvalidEnvelope):
        Notification.from_json(bad)


@pytest.mark.parametrize(
    "fields",
    [
        {"body": None},
        {"body": 7},
        {"type": None},
        {"type": ""},
        {"data": [1]},
        {"data": "x"},
        {"data": {1: "x"}},
    ],
)
def test_an_envelope_field_of_the_wrong_type_is_refused_when_made(
    fields: dict[str, object],
) -> None:
    # body=None went out as "body": null (shown as "None" by the SDK), data=[1]
    # was a TypeError, a non-string key was quietly turned into a string.
    with pytest.raises(InvalidEnvelope):
        Notification.create(title="t", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("item", [[1], "x", None, 7])
def test_an_inbox_item_that_is_no_object_is_an_invalid_envelope(item: object) -> None:
    # GET /notifications items come from a server: a list was an AttributeError.
    with pytest.raises(InvalidEnvelope):
        Notification.from_dict(item)  # type: ignore[arg-type]


@pytest.mark.parametrize("moment", [0.0, 1_700_000_000.123, 1_764_000_000.999, 4_000_000_000.5])
def test_id_floor_is_the_smallest_ulid_of_its_millisecond(moment: float) -> None:
    from ulid import ULID

    from iotnotify.contract import id_floor

    made = str(ULID.from_timestamp(moment))
    floor = id_floor(moment)
    assert len(floor) == 26
    assert floor[:10] == made[:10]  # same millisecond
    assert floor == made[:10] + "0" * 16
    assert floor <= made < id_floor(moment + 1)


@pytest.mark.parametrize("moment", [61.0, 1_700_000_000.123, 1_764_000_000.999, 4_000_000_000.5])
def test_id_lower_bound_is_the_smallest_ulid_of_the_millisecond_lookback_before(
    moment: float,
) -> None:
    from ulid import ULID

    from iotnotify.contract import id_lower_bound, id_millis, validate_notification_id

    # Given an id made at `moment`
    cursor = str(ULID.from_timestamp(moment))
    millis = id_millis(cursor)
    assert millis == int(ULID.from_str(cursor).timestamp * 1000)
    # When the bound 60 s before it is taken
    bound = id_lower_bound(cursor, lookback_seconds=60)
    # Then it is the smallest ULID of the millisecond 60 000 ms earlier,
    earlier = str(ULID.from_timestamp((millis - 60_000) / 1000))
    assert bound == earlier[:10] + "0" * 16
    assert id_millis(bound) == millis - 60_000
    # it sorts before every id made in that window and after every id made before it,
    inside = str(ULID.from_timestamp((millis - 59_999) / 1000))
    before = str(ULID.from_timestamp((millis - 60_001) / 1000))
    assert before < bound < earlier <= inside < cursor
    # and the HTTP API's `since` rule accepts it.
    assert validate_notification_id(bound) == bound


def test_id_lower_bound_of_a_young_id_stops_at_the_epoch_and_refuses_bad_input() -> None:
    from iotnotify.contract import id_floor, id_lower_bound

    assert id_lower_bound(id_floor(10.0), lookback_seconds=60) == "0" * 26
    assert id_lower_bound(id_floor(10.0), lookback_seconds=0) == id_floor(10.0)
    with pytest.raises(InvalidEnvelope):
        id_lower_bound("01jd5z3q8w9v4x2y6z7a8b9c0d", lookback_seconds=60)  # lower case
    with pytest.raises(ValueError, match="lookback"):
        id_lower_bound(id_floor(10.0), lookback_seconds=-1)


@pytest.mark.parametrize("first", list("89ABCDEFGHJKMNPQRSTVWXYZ"))
def test_a_26_character_id_past_the_largest_ulid_is_not_a_notification_id(first: str) -> None:
    from iotnotify.contract import validate_notification_id

    # A ULID is 128 bits: 26 base32 characters hold 130, so the largest is
    # 7ZZZZZZZZZZZZZZZZZZZZZZZZZ (ULID spec, "Overflow Errors when Parsing
    # Base32 Strings"); ZZZ... decodes nowhere and was accepted as since=.
    with pytest.raises(InvalidEnvelope):
        validate_notification_id(first + "0" * 25)
    assert validate_notification_id("7" + "Z" * 25) == "7" + "Z" * 25


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "null"), (7, "a number"), (True, "a boolean"), ([], "an array"), ({}, "an object")],
)
def test_an_invalid_id_or_name_is_named_by_its_json_type(value: object, shown: str) -> None:
    from iotnotify.contract import validate_name, validate_user_id

    # {"user": null} was "invalid user id 'NoneType'"
    with pytest.raises(ContractError, match=f"invalid user id: {shown},"):
        validate_user_id(value)
    with pytest.raises(ContractError, match=f"invalid room name: {shown},"):
        validate_name(value, what="room name")


def test_an_invalid_id_is_shown_shortened_in_the_message() -> None:
    from iotnotify.contract import (
        Topic,
        user_of_client_id,
        validate_client_suffix,
        validate_name,
        validate_notification_id,
        validate_user_id,
    )

    # a 1 MiB body holding one long id was answered with a 1 MiB message;
    # the client suffix, notification id, client id and topic messages
    # still echoed the whole value
    checks = (
        validate_user_id,
        lambda v: validate_name(v, what="room name"),
        validate_client_suffix,
        validate_notification_id,
        user_of_client_id,
        lambda v: user_of_client_id(v + ".a"),
        lambda v: Topic("a/" + v + "\x00"),
    )
    for check in checks:
        with pytest.raises(ContractError) as caught:
            check("x" * 500_000 + "/")
        assert len(str(caught.value)) < 300, str(caught.value)[:400]
        assert "characters)" in str(caught.value)


def test_a_new_chat_cid_is_valid_and_fresh_every_time() -> None:
    cids = {new_chat_cid() for _ in range(1000)}
    assert len(cids) == 1000
    assert all(is_chat_cid(c) and validate_chat_cid(c) == c for c in cids)


@pytest.mark.parametrize(
    "bad",
    [
        "x" * (MIN_CHAT_CID_CHARS - 1),
        "x" * (MAX_CHAT_CID_CHARS + 1),
        "a" * 20 + "\x00",
        "a#" * 9,
        None,
        7,
        ["x" * 20],
    ],
)
def test_a_chat_cid_outside_the_contract_is_refused(bad: object) -> None:
    assert not is_chat_cid(bad)
    with pytest.raises(InvalidEnvelope, match="cid"):
        validate_chat_cid(bad)


def test_a_chat_message_carries_its_cid_only_when_it_has_one() -> None:
    cid = new_chat_cid()
    with_cid = ChatMessage.create(room="lobby", sender="alice", text="hi", cid=cid)
    assert with_cid.to_dict()["cid"] == cid
    assert ChatMessage.from_dict(with_cid.to_dict()) == with_cid
    plain = ChatMessage.create(room="lobby", sender="alice", text="hi")
    assert "cid" not in plain.to_dict()
    # A reader drops a cid that breaks the contract rather than the message.
    assert ChatMessage.from_dict({**plain.to_dict(), "cid": "x\ny"}).cid is None
    with pytest.raises(InvalidEnvelope):
        ChatMessage.create(room="lobby", sender="alice", text="hi", cid="short")
