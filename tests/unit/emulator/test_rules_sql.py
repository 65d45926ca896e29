"""The emulator's IoT SQL subset, checked against AWS's documented examples.

Sources (AWS IoT developer guide, "AWS IoT SQL reference"): the SELECT
clause page (``color``/``temperature`` examples), the WHERE clause page,
the JSON extensions page (``foo.bar AS bar.baz``, ``*`` on non-JSON
payloads), the Functions page (``topic()``, ``clientid()``, ``principal()``,
``timestamp()``, ``newuuid()``) and the Operators page (AND/OR/NOT and
comparisons, Undefined).
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from iotnotify_emulator.rules_sql import (
    MessageContext,
    RuleEvaluationError,
    RuleSqlError,
    parse_expression,
    parse_sql,
)

COLOR = json.dumps({"color": "red", "temperature": 50}).encode()
CTX = MessageContext(topic="topic/subtopic", client_id="dev.1", principal="AROA:alice")


def run(sql: str, payload: bytes = COLOR, ctx: MessageContext = CTX) -> object:
    return parse_sql(sql).evaluate(payload, ctx)


# --- SELECT clause page ------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT * FROM 'topic/subtopic'", {"color": "red", "temperature": 50}),
        ("SELECT color FROM 'topic/subtopic'", {"color": "red"}),
        ("SELECT color AS my_color FROM 'topic/subtopic'", {"my_color": "red"}),
        (
            "SELECT color as my_color, temperature as fahrenheit FROM 'topic/subtopic'",
            {"my_color": "red", "fahrenheit": 50},
        ),
        (
            "SELECT *, 15 as speed FROM 'topic/subtopic'",
            {"color": "red", "temperature": 50, "speed": 15},
        ),
    ],
)
def test_select_clause_examples(sql: str, expected: dict[str, object]) -> None:
    assert run(sql) == expected


def test_where_clause_example_does_not_fire() -> None:
    """WHERE page: temperature 40 with ``temperature > 50 AND color <> 'red'``."""
    payload = json.dumps({"color": "red", "temperature": 40}).encode()
    sql = "SELECT color AS my_color FROM 'topic/subtopic' WHERE temperature > 50 AND color <> 'red'"
    assert run(sql, payload) is None
    hot = json.dumps({"color": "blue", "temperature": 60}).encode()
    assert run(sql, hot) == {"my_color": "blue"}


# --- JSON extensions page ------------------------------------------------------


def test_nested_field_with_a_nested_alias() -> None:
    payload = json.dumps({"foo": {"bar": "RED", "bar1": "GREEN", "bar2": "BLUE"}}).encode()
    assert run("SELECT foo.bar AS bar.baz FROM 'topic/subtopic'", payload) == {
        "bar": {"baz": "RED"}
    }
    assert run("SELECT foo.bar FROM 'topic/subtopic'", payload) == {"bar": "RED"}


def test_star_of_a_non_json_payload_is_its_raw_bytes() -> None:
    assert run("SELECT * FROM 'topic/subtopic'", b"\x00\x01binary") == b"\x00\x01binary"


def test_reading_a_field_of_a_non_json_payload_is_an_evaluation_error() -> None:
    with pytest.raises(RuleEvaluationError):
        run("SELECT color FROM 'topic/subtopic'", b"not json")
    with pytest.raises(RuleEvaluationError):
        run("SELECT * FROM 'topic/subtopic' WHERE temperature > 1", b"not json")


# --- Data types page: Undefined -------------------------------------------------


def test_a_missing_field_is_undefined_and_left_out_while_null_is_kept() -> None:
    payload = json.dumps({"foo": None}).encode()
    assert run("SELECT foo, bar FROM 'topic/subtopic'", payload) == {"foo": None}
    assert run("SELECT NULL AS n FROM 'topic/subtopic'") == {"n": None}


# --- Functions page --------------------------------------------------------------


def test_topic_function() -> None:
    """Functions page: topic 'iot/myTopic' -> topic() 'iot/myTopic', topic(1) 'iot'."""
    ctx = MessageContext(topic="iot/myTopic")
    sql = "SELECT topic() AS t, topic(1) AS a, topic(2) AS b, topic(3) AS c FROM 'iot/+'"
    assert run(sql, b"{}", ctx) == {"t": "iot/myTopic", "a": "iot", "b": "myTopic"}


def test_context_functions() -> None:
    ctx = MessageContext(topic="a/b", client_id="alice.x", principal="AROA:s", timestamp_ms=42)
    out = run(
        "SELECT clientid() AS c, principal() AS p, timestamp() AS ts, newuuid() AS id FROM 'a/b'",
        b"{}",
        ctx,
    )
    assert isinstance(out, dict)
    assert (out["c"], out["p"], out["ts"]) == ("alice.x", "AROA:s", 42)
    assert uuid.UUID(out["id"]).version == 4
    # Not sent over MQTT (an iot-data HTTP publish): "n/a".
    http = MessageContext(topic="a/b")
    assert run("SELECT clientid() AS c FROM 'a/b'", b"{}", http) == {"c": "n/a"}


def test_the_design_moderation_rule() -> None:
    sql = (
        "SELECT *, topic(4) AS room, clientid() AS clientId, timestamp() AS receivedAt "
        "FROM 'iotnotify/dev/chat/+/input'"
    )
    statement = parse_sql(sql)
    assert statement.matches("iotnotify/dev/chat/lobby/input")
    assert not statement.matches("iotnotify/dev/chat/lobby")
    ctx = MessageContext(
        topic="iotnotify/dev/chat/lobby/input", client_id="alice.web", timestamp_ms=7
    )
    out = statement.evaluate(json.dumps({"text": "hi", "sender": "bob"}).encode(), ctx)
    assert out == {
        "text": "hi",
        "sender": "bob",  # the payload's claim is passed on; the moderator ignores it
        "room": "lobby",
        "clientId": "alice.web",
        "receivedAt": 7,
    }


@pytest.mark.parametrize(
    "payload",
    [COLOR, b"\xff\xfe not json", b"", b'"a JSON string"', b"[1, 2]"],
)
def test_encode_star_base64_takes_any_payload(payload: bytes) -> None:
    # "Working with binary payloads": a SELECT of functions only works on a
    # non-JSON payload, and encode(*, 'base64') is how a Lambda action gets it.
    out = run(
        "SELECT encode(*, 'base64') AS data, topic(2) AS t, clientid() AS c FROM 'topic/subtopic'",
        payload,
    )
    assert isinstance(out, dict)
    assert base64.b64decode(out["data"]) == payload
    assert (out["t"], out["c"]) == ("subtopic", "dev.1")


def test_encode_of_a_value_encodes_its_string_form_and_knows_only_base64() -> None:
    out = run(
        "SELECT encode(color, 'base64') AS a, encode(temperature, 'base64') AS b, "
        "encode(*, 'hex') AS c, encode(nothing, 'base64') AS d FROM 'topic/subtopic'"
    )
    assert out == {"a": base64.b64encode(b"red").decode(), "b": base64.b64encode(b"50").decode()}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT topic(*) AS t FROM 'a'",
        "SELECT encode(*) AS t FROM 'a'",
    ],
)
def test_star_is_an_argument_of_encode_only(sql: str) -> None:
    with pytest.raises(RuleSqlError):
        parse_sql(sql)


# --- Operators page ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "fires"),
    [
        ("temperature > 40 AND color = 'red'", True),
        ("temperature > 60 OR color = 'red'", True),
        ("NOT color = 'blue'", True),
        ("NOT (temperature >= 50)", False),
        ("temperature <= 50 AND temperature < 51 AND temperature <> 49", True),
        ("temperature != 50", False),
        ("temperature = 50.0", True),  # numbers compare by value
        ("'true' AND 'TRUE'", True),  # strings "true"/"false" convert to Booleans
        ("temperature + 10 = 60 AND temperature * 2 / 4 = 25 AND temperature % 7 = 1", True),
        ("-temperature < 0", True),
        # Undefined does not fire: missing fields, mixed types, non-Booleans.
        ("missing > 1", False),
        ("NOT missing", False),
        ("color = 50", False),
        ("NOT (color = 50)", False),
        ("temperature AND true", False),
        ("color > 1", False),
        ('"red" = color', True),
    ],
)
def test_where_operators(where: str, fires: bool) -> None:
    out = run(f"SELECT color FROM 'topic/subtopic' WHERE {where}")
    assert (out is not None) is fires, where


def test_keywords_are_case_insensitive_and_filters_use_wildcards() -> None:
    statement = parse_sql("select * from 'a/#' where x > 1")
    assert statement.matches("a/b/c")
    assert not statement.matches("b/a")


@pytest.mark.parametrize(
    "sql",
    [
        "",
        "SELECT",
        "SELECT * FROM topic/subtopic",  # FROM takes a quoted filter
        "SELECT * FROM 'a/+b'",
        "SELECT * FROM 'a' WHERE",
        "SELECT md5(x) AS h FROM 'a'",  # outside the subset: refused, never silently wrong
        "SELECT 1 FROM 'a'",  # an expression needs AS
        "SELECT * FROM 'a' LIMIT 1",
        "SELECT topic(1, 2) AS t FROM 'a'",
        "SELECT clientid(1) AS c FROM 'a'",
        "SELECT * FROM 'a' WHERE x = 'unterminated",
    ],
)
def test_statements_outside_the_subset_are_refused(sql: str) -> None:
    with pytest.raises(RuleSqlError):
        parse_sql(sql)


def test_substitution_expression() -> None:
    expr = parse_expression("topic(2)")
    assert expr({}, MessageContext(topic="a/b/c")) == "b"
    with pytest.raises(RuleSqlError):
        parse_expression("topic(2) topic(3)")
