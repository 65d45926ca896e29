"""The moderator Lambda under moto: sender, length, rate, denylist, history, envelope."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from iotnotify.contract import MAX_CHAT_TEXT_CHARS, ChatMessage
from iotnotify.topic_rules import chat_moderation_rule
from iotnotify_emulator.rules_sql import MessageContext, parse_sql
from iotnotify_handlers import chat_moderator, clients
from iotnotify_handlers.chat_history import ChatHistory
from iotnotify_handlers.chat_moderation import (
    STALE_CID_CLAIM_SECONDS,
    Denylist,
    Moderator,
    Rejections,
)
from iotnotify_handlers.chat_text import mask
from iotnotify_handlers.errors import ServiceUnavailable
from iotnotify_handlers.settings import settings
from tests.conftest import FakeAccount

ROOM_TOPIC = "iotnotify/test/chat/lobby"


def raw_rule_output(payload: bytes, client_id: str = "alice.web") -> dict[str, Any]:
    """What the chat topic rule hands the function for a client's ``payload``
    (``SELECT encode(*, 'base64') AS payload, topic(4) AS room, ...``)."""
    return {
        "payload": base64.b64encode(payload).decode("ascii"),
        "room": "lobby",
        "clientId": client_id,
        "receivedAt": int(time.time() * 1000),
    }


def rule_output(text: Any, client_id: str = "alice.web", **extra: Any) -> dict[str, Any]:
    """The rule's output for a client that sent ``{"text": text, **extra}``."""
    body = json.dumps({"text": text, **extra}, ensure_ascii=False, default=str)
    return raw_rule_output(body.encode("utf-8", "surrogatepass"), client_id)


def published(account: FakeAccount, topic: str) -> list[dict[str, Any]]:
    return [json.loads(p) for t, p in account.published() if t == topic]


@pytest.fixture
def denylist(account: FakeAccount) -> None:
    account.session.client("ssm").put_parameter(
        Name="/iotnotify/test/chat-denylist", Value="darn,heck", Type="StringList"
    )


def test_sender_comes_from_the_client_id_never_the_payload(
    account: FakeAccount, denylist: None
) -> None:
    result = chat_moderator.handler(rule_output("hello bob", sender="bob", v=9, type="x"))
    assert result["status"] == "published"
    [envelope] = published(account, ROOM_TOPIC)
    assert set(envelope) == {"v", "id", "type", "room", "sender", "text", "ts"}
    assert envelope["sender"] == "alice"
    assert (envelope["v"], envelope["type"], envelope["room"]) == (1, "chat.message", "lobby")
    assert envelope["id"] == result["id"]


def test_denylisted_words_are_masked_and_history_keeps_the_masked_text(
    account: FakeAccount, denylist: None
) -> None:
    chat_moderator.handler(rule_output("Darn it, heck! darning is fine"))
    [envelope] = published(account, ROOM_TOPIC)
    assert envelope["text"] == "**** it, ****! darning is fine"
    page = clients.chat_history().page("lobby", limit=10, before=None)
    assert [m.text for m in page.messages] == [envelope["text"]]
    assert page.messages[0].sender == "alice"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("\u2800\u2800 \u00a0\u3000\u2800", "empty"),  # braille blanks, no-break, ideographic
        (42, "malformed"),
        ("x" * (MAX_CHAT_TEXT_CHARS + 1), "too_long"),
        ("lone \ud800 surrogate", "invalid"),
        ("\udfff", "invalid"),
    ],
)
def test_invalid_text_is_rejected_and_the_sender_told(
    account: FakeAccount, text: Any, reason: str
) -> None:
    assert chat_moderator.handler(rule_output(text)) == {"status": "rejected", "reason": reason}
    assert published(account, ROOM_TOPIC) == []
    [note] = published(account, "iotnotify/test/user/alice/notifications")
    assert note["type"] == "chat.rejected"
    assert note["data"] == {"room": "lobby", "reason": reason}


def test_bidi_overrides_and_controls_are_removed_before_anyone_sees_them(
    account: FakeAccount,
) -> None:
    # U+202E would show "pay to gnp.exe" as "pay to exe.png"; ESC starts a
    # terminal sequence; CR would overwrite the reader's line.
    result = chat_moderator.handler(rule_output("pay to \u202egnp.exe\x1b[2J\rbob: hi\u2066"))
    assert result["status"] == "published"
    [envelope] = published(account, ROOM_TOPIC)
    assert envelope["text"] == "pay to gnp.exe[2J\nbob: hi"
    [stored] = clients.chat_history().page("lobby", limit=10, before=None).messages
    assert stored.text == envelope["text"]


def test_invisible_characters_cannot_hide_a_denylisted_word(
    account: FakeAccount, denylist: None
) -> None:
    typed = "d\u200ba\u200drn, \uff28\uff25\uff23\uff2b and he\u0301ck"
    chat_moderator.handler(rule_output(typed))
    [envelope] = published(account, ROOM_TOPIC)
    # the zero-width space is gone, the joiner is kept but inside the mask
    assert envelope["text"] == "****, **** and ****"


def test_a_text_of_only_invisible_characters_is_empty(account: FakeAccount) -> None:
    result = chat_moderator.handler(rule_output("\u200b\u202e\x00 \u2066"))
    assert result == {"status": "rejected", "reason": "empty"}
    assert published(account, ROOM_TOPIC) == []


def test_the_length_limit_counts_what_is_left_after_removal(account: FakeAccount) -> None:
    padded = "y" * MAX_CHAT_TEXT_CHARS + "\u200b" * 50
    assert chat_moderator.handler(rule_output(padded))["status"] == "published"
    [envelope] = published(account, ROOM_TOPIC)
    assert envelope["text"] == "y" * MAX_CHAT_TEXT_CHARS


def test_text_at_the_limit_is_published(account: FakeAccount) -> None:
    result = chat_moderator.handler(rule_output("y" * MAX_CHAT_TEXT_CHARS))
    assert result["status"] == "published"


def test_per_sender_rate_limit(account: FakeAccount, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTNOTIFY_CHAT_RATE_MESSAGES", "2")
    monkeypatch.setenv("IOTNOTIFY_CHAT_RATE_WINDOW_SECONDS", "3600")
    clients.reset()
    statuses = [chat_moderator.handler(rule_output(f"m{n}"))["status"] for n in range(3)]
    assert statuses == ["published", "published", "rejected"]
    # another sender has their own allowance
    assert chat_moderator.handler(rule_output("hi", client_id="bob.x"))["status"] == "published"
    assert len(published(account, ROOM_TOPIC)) == 3


def test_a_rule_output_without_a_user_client_id_is_dropped(account: FakeAccount) -> None:
    result = chat_moderator.handler(rule_output("hi", client_id="n/a"))
    assert result == {"status": "rejected", "reason": "invalid_source"}
    assert account.published() == []


def test_missing_denylist_masks_nothing_and_is_not_reread_every_message() -> None:
    calls = []

    class Missing:
        def get(self, name: str, max_age: int) -> str:
            calls.append(name)
            raise RuntimeError("ParameterNotFound")

    now = [0.0]
    words = Denylist(
        Missing(), parameter="/a/b/chat-denylist", ttl_seconds=60, clock=lambda: now[0]
    )
    assert words.words() == ()
    assert words.words() == ()
    assert len(calls) == 1
    now[0] = 61.0
    words.words()
    assert len(calls) == 2


def test_mask_is_whole_word_and_case_insensitive() -> None:
    assert mask("Heck, HECK heckle", ["heck"]) == "****, **** heckle"
    assert mask("a.b a+b", ["a.b"]) == "*** a+b"  # words are literal, not patterns
    assert mask("nothing", []) == "nothing"


def test_ids_follow_the_brokers_receipt_order_not_the_handling_order(
    account: FakeAccount,
) -> None:
    now_ms = int(time.time() * 1000)
    first = {**rule_output("line 1"), "receivedAt": now_ms - 300}
    second = {**rule_output("line 2"), "receivedAt": now_ms - 200}
    late = chat_moderator.handler(second)  # the second line's invocation finishes first
    early = chat_moderator.handler(first)
    assert early["id"] < late["id"]
    page = clients.chat_history().page("lobby", limit=10, before=None)
    assert [m.text for m in page.messages] == ["line 1", "line 2"]
    stamps = [datetime.fromisoformat(m.ts.replace("Z", "+00:00")) for m in page.messages]
    assert [int(t.timestamp() * 1000) for t in stamps] == [now_ms - 300, now_ms - 200]


@pytest.mark.parametrize("received_at", [1, "soon", True, None])
def test_an_implausible_received_at_is_refused_as_a_misconfigured_rule(
    account: FakeAccount, received_at: Any
) -> None:
    # The rule always sets it; without it a retry could not make the same id.
    result = chat_moderator.handler({**rule_output("hi"), "receivedAt": received_at})
    assert result == {"status": "rejected", "reason": "invalid_source"}
    assert clients.chat_history().page("lobby", limit=10, before=None).messages == ()
    assert account.published() == []


def test_a_received_at_hours_old_still_counts_lambda_keeps_events_six_hours(
    account: FakeAccount,
) -> None:
    five_hours_ago = int(time.time() * 1000) - 5 * 3600 * 1000
    result = chat_moderator.handler({**rule_output("late"), "receivedAt": five_hours_ago})
    assert result["status"] == "published"
    [message] = clients.chat_history().page("lobby", limit=10, before=None).messages
    stamp = datetime.fromisoformat(message.ts.replace("Z", "+00:00"))
    assert int(stamp.timestamp() * 1000) == five_hours_ago


def test_a_retried_invocation_stores_one_row_and_republishes_the_same_id(
    account: FakeAccount, denylist: None
) -> None:
    # Lambda may run one asynchronous event twice (a retry, or its queue's
    # at-least-once delivery): the same rule output arrives again.
    event = rule_output("heck, once")
    first = chat_moderator.handler(event)
    again = chat_moderator.handler(dict(event))
    assert first["status"] == "published"
    assert again == {"status": "republished", "id": first["id"]}
    [row] = clients.chat_history().page("lobby", limit=100, before=None).messages
    assert (row.id, row.text) == (first["id"], "****, once")
    assert [m["id"] for m in published(account, ROOM_TOPIC)] == [first["id"], first["id"]]


def test_the_same_text_sent_again_later_is_a_new_message(account: FakeAccount) -> None:
    event = rule_output("hi")
    first = chat_moderator.handler(event)
    second = chat_moderator.handler({**event, "receivedAt": event["receivedAt"] + 1})
    assert second["status"] == "published"
    assert first["id"] < second["id"]
    assert len(clients.chat_history().page("lobby", limit=100, before=None).messages) == 2


class FlakyIotData:
    """iot-data whose first ``failures`` publishes fail as AWS's would (then moto's)."""

    def __init__(self, real: Any, failures: int) -> None:
        self.real = real
        self.failures = failures

    def publish(self, **kwargs: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise ClientError(
                {"Error": {"Code": "ServiceUnavailableException", "Message": "down"}}, "Publish"
            )
        return self.real.publish(**kwargs)


def moderator_with(
    iot_data: Any, *, rate_messages: int = 5, rejections: Rejections | None = None
) -> Moderator:
    return Moderator(
        scheme=settings().scheme,
        history=clients.chat_history(),
        iot_data=iot_data,
        denylist=lambda: ("heck",),
        rate_messages=rate_messages,
        rate_window_seconds=3600,
        rejections=rejections,
    )


def test_a_retry_after_a_failed_publish_publishes_the_stored_message_once(
    account: FakeAccount,
) -> None:
    moderator = moderator_with(FlakyIotData(clients.iot_data(), failures=1))
    event = rule_output("stored, then the publish failed")
    with pytest.raises(ServiceUnavailable):
        moderator.handle(event)  # Lambda retries an invocation that raised
    [stored] = clients.chat_history().page("lobby", limit=100, before=None).messages
    assert published(account, ROOM_TOPIC) == []
    retried = moderator.handle(event)
    assert retried.status == "republished"
    assert retried.message is not None
    assert retried.message.id == stored.id
    assert clients.chat_history().page("lobby", limit=100, before=None).messages == (stored,)
    assert [m["id"] for m in published(account, ROOM_TOPIC)] == [stored.id]


def test_a_retry_is_not_refused_by_the_rate_its_first_attempt_used(
    account: FakeAccount,
) -> None:
    moderator = moderator_with(FlakyIotData(clients.iot_data(), failures=1), rate_messages=1)
    event = rule_output("the only one this hour")
    with pytest.raises(ServiceUnavailable):
        moderator.handle(event)
    assert moderator.handle(event).status == "republished"
    assert published(account, "iotnotify/test/user/alice/notifications") == []
    assert len(published(account, ROOM_TOPIC)) == 1
    # a new message is still over the rate
    assert moderator.handle(rule_output("another")).reason == "rate_limited"


def test_a_retry_publishes_the_text_stored_first_even_if_the_denylist_changed(
    account: FakeAccount,
) -> None:
    words: list[str] = []
    moderator = Moderator(
        scheme=settings().scheme,
        history=clients.chat_history(),
        iot_data=FlakyIotData(clients.iot_data(), failures=1),
        denylist=lambda: tuple(words),
        rate_messages=5,
        rate_window_seconds=3600,
    )
    event = rule_output("gosh")
    with pytest.raises(ServiceUnavailable):
        moderator.handle(event)
    words.append("gosh")
    moderator.handle(event)
    [envelope] = published(account, ROOM_TOPIC)
    assert envelope["text"] == "gosh"


def test_the_deployed_rule_hands_the_moderator_what_it_reads(account: FakeAccount) -> None:
    # The rule's SQL, run by the emulator's engine on what a client sends.
    statement = parse_sql(chat_moderation_rule(account.scheme).sql)
    ctx = MessageContext(
        topic=str(account.scheme.chat_input("lobby")),
        client_id="alice.web",
        timestamp_ms=int(time.time() * 1000),
    )
    event = statement.evaluate(json.dumps({"text": "via the rule"}).encode(), ctx)
    assert isinstance(event, dict)
    assert chat_moderator.handler(event)["status"] == "published"
    [envelope] = published(account, ROOM_TOPIC)
    assert (envelope["sender"], envelope["text"]) == ("alice", "via the rule")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe not json", "invalid"),  # not UTF-8
        (b"plain words", "malformed"),
        (b'"a JSON string"', "malformed"),
        (b"[1, 2]", "malformed"),
        (b"null", "malformed"),
        (b"", "malformed"),
        (b'{"text": ["a"]}', "malformed"),
        (b'{"text": null}', "malformed"),
        (b'{"body": "no text"}', "malformed"),
        (b"[" * 15_000 + b"]" * 15_000, "too_long"),
        (b"[" * 8_000 + b"]" * 8_000, "malformed"),  # deeper than the parser recurses
        (b'{"text": "' + b"x" * 200_000 + b'"}', "too_long"),  # over IoT's 128 KB even
    ],
)
def test_a_malformed_input_is_a_counted_logged_rejection_not_an_error(
    account: FakeAccount, payload: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    rejections = Rejections()
    moderator = moderator_with(clients.iot_data(), rejections=rejections)
    with caplog.at_level("INFO"):
        result = moderator.handle(raw_rule_output(payload))  # returns: no retry, no DLQ
    assert (result.status, result.reason) == ("rejected", reason)
    assert rejections.counts == {reason: 1}
    assert any("chat message rejected" in r.getMessage() for r in caplog.records)
    assert published(account, ROOM_TOPIC) == []
    [note] = published(account, "iotnotify/test/user/alice/notifications")
    assert note["data"] == {"room": "lobby", "reason": reason}
    assert clients.chat_history().page("lobby", limit=10, before=None).messages == ()


def test_base64_the_rule_cannot_have_made_is_malformed(account: FakeAccount) -> None:
    event = {**raw_rule_output(b"{}"), "payload": "%%% not base64"}
    assert chat_moderator.handler(event) == {"status": "rejected", "reason": "malformed"}


def test_with_a_metrics_namespace_a_rejection_is_a_cloudwatch_emf_metric(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Rejections("iotnotify").count("malformed")
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if "_aws" in x]
    [directive] = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "iotnotify"
    assert directive["Metrics"] == [{"Name": "ChatInputRejected", "Unit": "Count"}]
    assert ["reason"] in directive["Dimensions"]
    assert (line["reason"], line["ChatInputRejected"]) == ("malformed", [1.0])


def test_an_aws_failure_still_raises_so_lambda_retries_and_dead_letters(
    account: FakeAccount,
) -> None:
    gone = ChatHistory(account.session.resource("dynamodb").Table("no-such-table"))
    moderator = Moderator(
        scheme=settings().scheme,
        history=gone,
        iot_data=clients.iot_data(),
        denylist=lambda: (),
        rate_messages=5,
        rate_window_seconds=5,
    )
    with pytest.raises(ServiceUnavailable):
        moderator.handle(rule_output("DynamoDB is down"))


# -- client message ids (cid): a resent line is one message ------------------

CID = "01JD6Q0Z6Y8KQ3Z4T9R2W5X7VB"  # a ULID, as a client might make one


def sent_again(
    event: dict[str, Any], *, after_ms: int, client_id: str | None = None
) -> dict[str, Any]:
    """The rule's output for the same bytes published again ``after_ms`` later
    (the broker stamps each copy with its own ``receivedAt``)."""
    return {
        **event,
        "receivedAt": event["receivedAt"] + after_ms,
        "clientId": client_id or event["clientId"],
    }


@pytest.mark.parametrize(
    "resend",
    [
        # paho/mqtt.js after a reconnect: the same client id, the same PUBLISH, DUP=1
        pytest.param({"after_ms": 1_500}, id="dup-resend-same-client"),
        # the page rejoins with a new client id suffix and the person presses Send again
        pytest.param({"after_ms": 90_000, "client_id": "alice.room-2"}, id="resend-after-rejoin"),
    ],
)
def test_a_line_resent_with_its_cid_is_one_message_and_one_history_item(
    account: FakeAccount, resend: dict[str, Any]
) -> None:
    """A QoS 1 line whose PUBACK was lost is published again after the reconnect
    (MQTT 3.1.1 4.4), and the rules engine invokes the moderator for each copy:
    without the cid the room showed the line twice, under two ids, in history
    too: the duplicate-on-reconnect bug chat systems keep meeting (zulip/zulip
    issue 31219, "Prevent the client from accidentally sending duplicate
    messages"; mattermost/mattermost issue 8471, "Fix For Duplicated
    messages"), fixed there as here with a client-made id the server
    remembers."""
    first = rule_output("hello, once", cid=CID)
    first["receivedAt"] -= 120_000  # so that the copy is not in the future
    result = chat_moderator.handler(first)
    again = chat_moderator.handler(sent_again(first, **resend))
    assert result["status"] == "published"
    assert again == {"status": "duplicate", "id": result["id"]}
    [envelope] = published(account, ROOM_TOPIC)
    assert (envelope["id"], envelope["text"], envelope["cid"]) == (result["id"], "hello, once", CID)
    [row] = clients.chat_history().page("lobby", limit=100, before=None).messages
    assert (row.id, row.cid) == (result["id"], CID)
    assert published(account, "iotnotify/test/user/alice/notifications") == []


def test_copies_through_the_deployed_rule_make_one_message(account: FakeAccount) -> None:
    # The rule's SQL, run by the emulator's engine, on the same bytes received twice.
    statement = parse_sql(chat_moderation_rule(account.scheme).sql)
    payload = json.dumps({"text": "via the rule", "cid": CID}).encode()
    now_ms = int(time.time() * 1000)
    statuses = []
    for at_ms in (now_ms - 2_000, now_ms):
        ctx = MessageContext(
            topic=str(account.scheme.chat_input("lobby")), client_id="alice.web", timestamp_ms=at_ms
        )
        event = statement.evaluate(payload, ctx)
        assert isinstance(event, dict)
        statuses.append(chat_moderator.handler(event)["status"])
    assert statuses == ["published", "duplicate"]
    assert len(published(account, ROOM_TOPIC)) == 1


def test_a_copy_does_not_count_against_the_senders_rate(account: FakeAccount) -> None:
    moderator = moderator_with(clients.iot_data(), rate_messages=2)
    first = rule_output("one", cid=CID)
    assert moderator.handle(first).status == "published"
    assert moderator.handle(sent_again(first, after_ms=500)).status == "duplicate"
    assert moderator.handle(rule_output("two", cid="x" * 16)).status == "published"
    assert [m["text"] for m in published(account, ROOM_TOPIC)] == ["one", "two"]


def test_a_cid_is_scoped_to_its_sender_and_room(account: FakeAccount) -> None:
    alice = rule_output("same cid", cid=CID)
    bob = rule_output("same cid", client_id="bob.web", cid=CID)
    elsewhere = {**rule_output("same cid", cid=CID), "room": "other"}
    statuses = [chat_moderator.handler(e)["status"] for e in (alice, bob, elsewhere)]
    assert statuses == ["published", "published", "published"]
    assert len(published(account, ROOM_TOPIC)) == 2
    assert len(published(account, "iotnotify/test/chat/other")) == 1


def test_the_same_cid_after_the_window_is_a_new_message(account: FakeAccount) -> None:
    now = [time.time()]
    moderator = Moderator(
        scheme=settings().scheme,
        history=clients.chat_history(),
        iot_data=clients.iot_data(),
        denylist=lambda: (),
        rate_messages=5,
        rate_window_seconds=3600,
        clock=lambda: now[0],
        cid_window_seconds=600,
    )
    first = rule_output("hi", cid=CID)
    assert moderator.handle(first).status == "published"
    now[0] += 599
    assert moderator.handle(sent_again(first, after_ms=599_000)).status == "duplicate"
    now[0] += 2
    assert moderator.handle(sent_again(first, after_ms=601_000)).status == "published"
    assert len(clients.chat_history().page("lobby", limit=100, before=None).messages) == 2


def test_a_line_refused_for_the_rate_can_be_sent_again_with_its_cid(account: FakeAccount) -> None:
    assert moderator_with(clients.iot_data(), rate_messages=1).handle(rule_output("a")).status == (
        "published"
    )
    line = rule_output("b", cid=CID)
    line["receivedAt"] -= 10_000
    refused = moderator_with(clients.iot_data(), rate_messages=1).handle(line)
    assert refused.reason == "rate_limited"
    # Refused is not handled: once the rate allows, the same line goes through.
    later = moderator_with(clients.iot_data(), rate_messages=5).handle(
        sent_again(line, after_ms=10_000)
    )
    assert later.status == "published"
    assert [m["text"] for m in published(account, ROOM_TOPIC)] == ["a", "b"]


def test_a_retried_invocation_of_a_line_with_a_cid_is_still_delivered(
    account: FakeAccount,
) -> None:
    # The first copy's claim names its message id, so Lambda's retry of that
    # event (its publish failed) is not taken for a copy; a real copy still is.
    moderator = moderator_with(FlakyIotData(clients.iot_data(), failures=1))
    event = rule_output("stored, then the publish failed", cid=CID)
    with pytest.raises(ServiceUnavailable):
        moderator.handle(event)
    retried = moderator.handle(event)
    assert retried.status == "republished"
    assert moderator.handle(sent_again(event, after_ms=3_000)).status == "duplicate"
    assert len(published(account, ROOM_TOPIC)) == 1
    assert len(clients.chat_history().page("lobby", limit=100, before=None).messages) == 1


def test_inputs_without_a_cid_are_handled_as_before(account: FakeAccount) -> None:
    event = rule_output("no cid")
    first = chat_moderator.handler(event)
    second = chat_moderator.handler(sent_again(event, after_ms=1_500))
    assert (first["status"], second["status"]) == ("published", "published")
    envelopes = published(account, ROOM_TOPIC)
    assert [e["text"] for e in envelopes] == ["no cid", "no cid"]
    assert all("cid" not in e for e in envelopes)
    rows = clients.chat_history().page("lobby", limit=100, before=None).messages
    assert [r.cid for r in rows] == [None, None]


@pytest.mark.parametrize(
    "cid",
    [
        "x" * 65,  # over MAX_CHAT_CID_CHARS
        "x" * 10_000,
        "short",  # under MIN_CHAT_CID_CHARS: a counter, not a random id
        "",
        12345678901234567890,
        None,
        ["01JD6Q0Z6Y8KQ3Z4T9R2W5X7VB"],
        {"id": CID},
        True,
        "01JD6Q0Z6Y8KQ3Z4\x00T9R2W5X7VB",  # control characters
        "01JD6Q0Z6Y8KQ3Z4\nT9R2W5X7VB",
        "01JD6Q0Z6Y8KQ3Z4#T9R2W5X7VB",  # the key separator
        "01JD6Q0Z6Y8KQ3Z4/T9R2W5X7VB",
        "01JD6Q0Z6Y8KQ3Z4\u202eT9R2W5X7VB",  # a bidi override
        "\uff10\uff11JD6Q0Z6Y8KQ3Z4T9R2W5X7VB",  # full-width look-alike digits
    ],
)
def test_a_cid_that_breaks_the_contract_refuses_the_line_and_tells_the_sender(
    account: FakeAccount, cid: Any
) -> None:
    rejections = Rejections()
    moderator = moderator_with(clients.iot_data(), rejections=rejections)
    body = json.dumps({"text": "hi", "cid": cid}).encode()
    result = moderator.handle(raw_rule_output(body))
    assert (result.status, result.reason) == ("rejected", "invalid_cid")
    assert rejections.counts == {"invalid_cid": 1}
    assert published(account, ROOM_TOPIC) == []
    [note] = published(account, "iotnotify/test/user/alice/notifications")
    assert note["data"] == {"room": "lobby", "reason": "invalid_cid"}
    assert "16 to 64" in note["body"]
    assert clients.chat_history().page("lobby", limit=10, before=None).messages == ()


class FailingTable:
    """The chat history table, whose calls ``fails(name, kwargs)`` picks fail as
    DynamoDB's do when it throttles (after botocore's own retries)."""

    def __init__(self, real: Any, fails: Any) -> None:
        self.real = real
        self.fails = fails

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.real, name)

        def call(**kwargs: Any) -> Any:
            if self.fails(name, kwargs):
                raise ClientError(
                    {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}},
                    name,
                )
            return method(**kwargs)

        return call


def _failing_at(step: str) -> Moderator:
    """A moderator whose every attempt fails at ``step``, after the cid is claimed."""
    table: Any = clients.session().resource("dynamodb").Table(settings().history_table)
    iot_data: Any = clients.iot_data()
    if step == "rate":
        table = FailingTable(
            table,
            lambda name, kw: name == "update_item" and kw["Key"]["room"].startswith("#rate#"),
        )
    elif step == "append":
        table = FailingTable(
            table, lambda name, kw: name == "put_item" and not kw["Item"]["room"].startswith("#")
        )
    else:
        iot_data = FlakyIotData(iot_data, failures=1_000)
    return Moderator(
        scheme=settings().scheme,
        history=ChatHistory(table),
        iot_data=iot_data,
        denylist=lambda: (),
        rate_messages=5,
        rate_window_seconds=3600,
    )


@pytest.mark.parametrize("step", ["rate", "append", "publish"])
def test_a_line_whose_every_attempt_failed_goes_through_when_resent(
    account: FakeAccount, step: str
) -> None:
    # Every attempt at the line failed after its cid was claimed: the claim
    # stayed for ten minutes and the user's resend was dropped as a "duplicate"
    # of a line nobody ever saw.
    event = rule_output("lost three times", cid=CID)
    event["receivedAt"] -= 30_000  # so that the resend is not in the future
    broken = _failing_at(step)
    for _ in range(3):  # the invocation and Lambda's two retries of it
        with pytest.raises(ServiceUnavailable):
            broken.handle(event)
    assert published(account, ROOM_TOPIC) == []
    healthy = moderator_with(clients.iot_data())
    resent = healthy.handle(sent_again(event, after_ms=30_000))
    # The line reaches the room once, and is in the history once
    assert resent.status == ("republished" if step == "publish" else "published")
    [envelope] = published(account, ROOM_TOPIC)
    assert (envelope["text"], envelope["cid"]) == ("lost three times", CID)
    [row] = clients.chat_history().page("lobby", limit=100, before=None).messages
    assert row.id == envelope["id"]
    # And once it went through, a copy is dropped again
    assert healthy.handle(sent_again(event, after_ms=31_000)).status == "duplicate"
    assert len(published(account, ROOM_TOPIC)) == 1
    assert published(account, "iotnotify/test/user/alice/notifications") == []


def test_a_claim_whose_attempt_died_is_taken_over_once_that_attempt_must_have_ended(
    account: FakeAccount,
) -> None:
    # An attempt that timed out or crashed runs no code after the claim: its
    # claim names a message that is never stored.
    now = [time.time()]
    moderator = Moderator(
        scheme=settings().scheme,
        history=clients.chat_history(),
        iot_data=clients.iot_data(),
        denylist=lambda: (),
        rate_messages=5,
        rate_window_seconds=3600,
        clock=lambda: now[0],
    )
    event = rule_output("the attempt died", cid=CID)
    event["receivedAt"] -= 120_000
    dead = ChatMessage.create(
        room="lobby",
        sender="alice",
        text="the attempt died",
        received_at_ms=event["receivedAt"],
        id_seed=b"a dead attempt",
        cid=CID,
    )
    assert clients.chat_history().claim_cid(dead, now=now[0], window_seconds=600) is None
    # While that attempt may still be running, a copy is dropped
    now[0] += STALE_CID_CLAIM_SECONDS - 1
    assert moderator.handle(sent_again(event, after_ms=59_000)).status == "duplicate"
    # Once it must have ended (and stored nothing), a copy is the line
    now[0] += 2
    assert moderator.handle(sent_again(event, after_ms=61_000)).status == "published"
    assert moderator.handle(sent_again(event, after_ms=62_000)).status == "duplicate"
    assert [m["text"] for m in published(account, ROOM_TOPIC)] == ["the attempt died"]
