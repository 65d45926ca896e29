"""Issue 10 hole 4: envelopes and every JSON we accept are strict RFC 8259 JSON."""

from __future__ import annotations

import pytest

from iotnotify.contract import MAX_JSON_DEPTH, Notification, dumps_strict, loads_strict
from iotnotify.errors import ContractError

NON_FINITE = (float("nan"), float("inf"), float("-inf"))


@pytest.mark.parametrize("number", NON_FINITE)
def test_envelope_with_a_non_finite_number_is_a_contract_error(number: float) -> None:
    with pytest.raises(ContractError):
        Notification.create(title="t", data={"score": number})
    with pytest.raises(ContractError):
        Notification.create(title="t", data={"nested": [1, {"x": number}]})


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_received_envelope_with_a_non_finite_number_is_a_contract_error(text: str) -> None:
    payload = f'{{"v":1,"id":"01J0000000000000000000000A","title":"t","data":{{"x":{text}}}}}'
    with pytest.raises(ContractError):
        Notification.from_json(payload.encode())
    with pytest.raises(ContractError):
        loads_strict(payload)


def test_lone_surrogates_are_refused_in_keys_and_values() -> None:
    for text in ('"\\ud800"', '{"\\udfff": 1}', '["ok", {"a": "x\\udc00y"}]'):
        with pytest.raises(ContractError, match="surrogate"):
            loads_strict(text)
    with pytest.raises(ContractError):
        Notification.create(title="\ud800")
    # a proper pair is one character, and fine
    assert loads_strict('"\\ud83d\\ude00"') == "\U0001f600"


def test_nesting_is_bounded_without_recursion_errors() -> None:
    assert loads_strict("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    for depth in (MAX_JSON_DEPTH + 1, 100_000):
        with pytest.raises(ContractError, match="nests deeper"):
            loads_strict("[" * depth + "]" * depth)
    deep: list[object] = []
    for _ in range(MAX_JSON_DEPTH + 5):
        deep = [deep]
    with pytest.raises(ContractError):
        dumps_strict(deep)


def test_finite_numbers_and_plain_text_round_trip() -> None:
    note = Notification.create(title="Tür", data={"pi": 3.5, "n": -2, "big": 10**30})
    again = Notification.from_json(note.to_json())
    assert again == note


@pytest.mark.parametrize(
    "text",
    ['{"user": "alice", "user": "bob"}', '[{"a": 1, "b": 2, "a": 1}]', '{"d": {"k": 1, "k": 2}}'],
)
def test_an_object_naming_a_key_twice_is_refused(text: str) -> None:
    # RFC 8259 4: names SHOULD be unique, and parsers disagree on which one
    # wins (Python's json the last, others the first or an error): a body
    # checked by one reader and acted on by another could mean two things.
    with pytest.raises(ContractError, match="more than once"):
        loads_strict(text)
    assert loads_strict('{"a": {"k": 1}, "b": {"k": 1}}') == {"a": {"k": 1}, "b": {"k": 1}}


@pytest.mark.parametrize("digits", [309, 400, 4300, 5000])
def test_an_integer_beyond_what_a_double_holds_is_refused_like_1e999(digits: int) -> None:
    # JSON.parse reads such an integer as Infinity, as it reads 1e999.
    text = "1" + "0" * digits
    for payload in (text, "-" + text, f'{{"x": [{text}]}}'):
        with pytest.raises(ContractError, match="out of range"):
            loads_strict(payload)
    with pytest.raises(ContractError, match="out of range"):
        Notification.create(title="t", data={"n": 10**digits})
    # the largest integers a double holds still pass
    assert loads_strict("1" + "0" * 308) == 10**308


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
def test_bytes_in_another_unicode_encoding_are_refused(encoding: str) -> None:
    # RFC 8259 8.1: JSON exchanged between systems MUST be UTF-8. Python's
    # json.loads guesses UTF-16 and UTF-32 from bytes, so they were accepted.
    with pytest.raises(ContractError):
        loads_strict('{"room": "lobby"}'.encode(encoding))
    # UTF-8, with or without the byte order mark RFC 8259 lets a parser ignore
    assert loads_strict(b'{"room": "lobby"}') == {"room": "lobby"}
    assert loads_strict('\ufeff{"room": "lobby"}'.encode()) == {"room": "lobby"}
