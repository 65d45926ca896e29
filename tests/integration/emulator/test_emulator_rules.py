"""Topic rules in the emulator: SQL on live messages, actions, failures, isolation.

Given a running emulator with a rules engine installed, clients publish over
MQTT (and backends over iot-data HTTP) and the rules run as on AWS.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from iotnotify.contract import Channel
from iotnotify.policies import subscriber_ceiling_policy, subscriber_session_policy
from iotnotify.topic_rules import chat_moderation_rule
from iotnotify_emulator import EmulatorConfig, InMemoryCredentialStore, start_emulator
from iotnotify_emulator.credentials import Credential
from iotnotify_emulator.mqtt import Puback, Publish
from iotnotify_emulator.rules import (
    CallableAction,
    LambdaAction,
    RepublishAction,
    Rule,
    RulesEngine,
)
from iotnotify_emulator.rules_sql import MessageContext
from iotnotify_emulator.testing import ALLOW_ALL, Harness
from iotnotify_handlers import chat_moderator, clients
from tests.conftest import FakeAccount

INPUTS = "app/test/chat/+/input"
LOBBY = "app/test/chat/lobby"
LOBBY_INPUT = "app/test/chat/lobby/input"


class Recorder:
    """A thread-safe sink for actions, awaitable from the test's loop."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, output: Any, ctx: MessageContext | None = None) -> None:
        with self._lock:
            self.items.append(output)

    async def wait_for(self, count: int, within: float = 5.0) -> list[Any]:
        async with asyncio.timeout(within):
            while True:
                with self._lock:
                    if len(self.items) >= count:
                        return list(self.items)
                await asyncio.sleep(0.01)


@pytest.fixture
async def world() -> AsyncIterator[Harness]:
    store = InMemoryCredentialStore()
    config = EmulatorConfig(region="us-east-1", account_id="123456789012")
    async with start_emulator(config, credentials=store) as emulator:
        harness = Harness(emulator=emulator, store=store)
        yield harness
        await harness.aclose()


def member(world: Harness, user_id: str) -> Credential:
    """A role session for ``user_id`` with the lobby room in its token."""
    region, account = world.region, world.account
    return world.store.issue(
        [subscriber_ceiling_policy(world.scheme, region=region, account=account)],
        [
            subscriber_session_policy(
                world.scheme,
                user_id,
                region=region,
                account=account,
                channels=[Channel("room", "lobby")],
            )
        ],
        principal_id=f"AROATEST:{user_id}",
    )


def install(world: Harness, *rules: Rule) -> RulesEngine:
    engine = RulesEngine(rules)
    world.emulator.install_rules(engine)  # type: ignore[union-attr]
    return engine


async def test_a_rule_sees_the_client_id_and_republishes_to_the_room(world: Harness) -> None:
    # Given a rule that stamps the publishing client's id and republishes to the room
    lambda_events = Recorder()
    engine = install(
        world,
        Rule.create(
            "moderate",
            f"SELECT *, topic(4) AS room, clientid() AS clientId FROM '{INPUTS}'",
            [
                LambdaAction("moderator", lambda event, context: lambda_events(event)),
                RepublishAction("app/test/chat/${topic(4)}"),
            ],
        ),
    )
    bob = await world.connect(member(world, "bob"), "bob.tab")
    await bob.subscribe(LOBBY)
    alice = await world.connect(member(world, "alice"), "alice.tab")
    # When alice publishes to the room's input, claiming to be bob
    await alice.publish(LOBBY_INPUT, json.dumps({"text": "hi", "sender": "bob"}).encode(), qos=1)
    # Then the Lambda gets the rule's output with her client id, and bob the republish
    [event] = await lambda_events.wait_for(1)
    assert event == {"text": "hi", "sender": "bob", "room": "lobby", "clientId": "alice.tab"}
    message = await bob.next_publish()
    assert message.topic == LOBBY
    assert json.loads(message.payload)["clientId"] == "alice.tab"
    assert engine.drain()
    assert engine.stats.matched == 1
    assert engine.stats.actions_succeeded == 2


async def test_failing_sql_is_counted_sent_to_the_error_action_and_the_broker_serves_on(
    world: Harness,
) -> None:
    errors = Recorder()
    engine = install(
        world,
        Rule.create(
            "needs_json",
            f"SELECT text FROM '{INPUTS}'",
            [LambdaAction("never", lambda event, context: None)],
            error_action=CallableAction("dlq", errors),
        ),
    )
    bob = await world.connect(member(world, "bob"), "bob.tab")
    await bob.subscribe(world.topic_of("bob"))
    alice = await world.connect(member(world, "alice"), "alice.tab")
    # When a message the SQL cannot evaluate arrives
    await alice.publish(LOBBY_INPUT, b"\xff not json", qos=1)
    [error] = await errors.wait_for(1)
    # Then it is counted and the error action gets AWS's error message
    assert engine.stats.sql_failures == 1
    assert engine.stats.failures_by_rule == {"needs_json": 1}
    assert error["ruleName"] == "needs_json"
    assert error["topic"] == LOBBY_INPUT
    assert error["clientId"] == "alice.tab"
    assert base64.b64decode(error["base64OriginalPayload"]) == b"\xff not json"
    assert error["failures"][0]["failedAction"] == "SQL"
    # And the broker keeps serving: alice's connection is open and a publish is delivered
    iot = world.iot_data(world.publisher())
    await asyncio.to_thread(iot.publish, topic=world.topic_of("bob"), qos=0, payload=b"{}")
    assert (await bob.next_publish()).topic == world.topic_of("bob")
    assert await alice.publish(LOBBY_INPUT, b'{"text":"still here"}', qos=1) is not None


async def test_failing_action_is_counted_and_other_actions_and_rules_still_run(
    world: Harness,
) -> None:
    errors = Recorder()
    done = Recorder()

    def broken(event: Any, context: Any) -> None:
        raise RuntimeError("moderator crashed")

    engine = install(
        world,
        Rule.create(
            "broken",
            f"SELECT * FROM '{INPUTS}'",
            [LambdaAction("moderator", broken), CallableAction("ok", done)],
            error_action=CallableAction("dlq", errors),
        ),
        Rule.create("healthy", f"SELECT * FROM '{INPUTS}'", [CallableAction("ok2", done)]),
    )
    alice = await world.connect(member(world, "alice"), "alice.tab")
    await alice.publish(LOBBY_INPUT, b'{"text":"x"}', qos=1)
    [error] = await errors.wait_for(1)
    await done.wait_for(2)
    assert error["failures"] == [
        {
            "failedAction": "LambdaAction",
            "failedResource": "moderator",
            "errorMessage": "RuntimeError: moderator crashed",
        }
    ]
    assert engine.drain()
    assert engine.stats.action_failures == 1
    assert engine.stats.error_actions_succeeded == 1
    async with (
        aiohttp.ClientSession() as http,
        http.get(world.emulator.data_url + "/_emulator/stats") as response,
    ):
        stats = await response.json()
    assert stats["rules"]["failures_by_rule"] == {"broken": 1}


async def test_a_failing_error_action_is_counted_too(world: Harness) -> None:
    def also_broken(output: Any, ctx: MessageContext) -> None:
        raise OSError("queue unreachable")

    engine = install(
        world,
        Rule.create(
            "r",
            f"SELECT x FROM '{INPUTS}'",
            [CallableAction("a", lambda o, c: None)],
            error_action=CallableAction("dlq", also_broken),
        ),
    )
    alice = await world.connect(member(world, "alice"), "alice.tab")
    await alice.publish(LOBBY_INPUT, b"not json", qos=1)  # the PUBACK: the hook has run
    assert await asyncio.to_thread(engine.drain)
    assert engine.stats.failures == 1
    assert engine.stats.error_actions_failed == 1


async def test_http_publishes_reach_rules_with_no_client_id(world: Harness) -> None:
    seen = Recorder()
    install(
        world,
        Rule.create(
            "http",
            "SELECT clientid() AS c, principal() AS p FROM 'app/test/user/+/notifications'",
            [CallableAction("sink", seen)],
        ),
    )
    iot = world.iot_data(world.publisher())
    await asyncio.to_thread(iot.publish, topic=world.topic_of("al"), qos=0, payload=b"{}")
    [output] = await seen.wait_for(1)
    assert output == {"c": "n/a", "p": "AIDAPUBLISHER"}


async def test_lifecycle_events_reach_rules(world: Harness) -> None:
    seen = Recorder()
    install(
        world,
        Rule.create(
            "presence",
            "SELECT eventType, clientId FROM '$aws/events/presence/+/+'",
            [CallableAction("sink", seen)],
        ),
    )
    client = await world.connect(world.subscriber("alice"), "alice.x")
    [connected] = await seen.wait_for(1)
    assert connected == {"eventType": "connected", "clientId": "alice.x"}
    await client.disconnect()
    await seen.wait_for(2)


async def test_a_direct_publish_to_the_room_topic_is_refused_and_never_delivered(
    world: Harness,
) -> None:
    bob = await world.connect(member(world, "bob"), "bob.tab")
    await bob.subscribe(LOBBY)
    alice = await world.connect(member(world, "alice"), "alice.tab")
    await alice.publish(LOBBY, b'{"text":"forged"}')
    await alice.wait_closed()  # MQTT 3.1.1: an unauthorised PUBLISH closes the connection
    with pytest.raises(TimeoutError):
        await bob.next_publish(within=0.5)


async def test_basic_ingest_reaches_the_named_rule_and_no_subscriber(world: Harness) -> None:
    """AWS IoT developer guide, "Reducing messaging costs with Basic Ingest"."""
    seen = Recorder()
    other = Recorder()
    install(
        world,
        Rule.create(
            "Buildings",
            "SELECT *, topic(2) AS building FROM 'Buildings/#'",
            [CallableAction("sink", seen)],
        ),
        Rule.create("Other", "SELECT * FROM 'Buildings/#'", [CallableAction("other", other)]),
    )
    credential = world.store.issue([ALLOW_ALL])
    watcher = await world.connect(credential, "watcher")
    # (a SUBSCRIBE to $aws/rules/... itself is refused: test_emulator_semantics.py)
    await watcher.subscribe("#")
    device = await world.connect(credential, "device")
    # When a device publishes to the rule's Basic Ingest topic (QoS 1)
    topic = "$aws/rules/Buildings/Buildings/B5/F2/R201/L/x/y"  # 9 slashes: prefix not counted
    assert await device.publish(topic, json.dumps({"on": True}).encode(), qos=1) is not None
    # Then that rule runs with the topic after the prefix, and only that rule
    (output,) = await seen.wait_for(1)
    assert output == {"on": True, "building": "B5"}
    await watcher.ping()
    assert type(await watcher.receive()).__name__ == "Pingresp"  # no subscriber got it
    assert other.items == []
    # And a Basic Ingest publish to a rule that does not exist is dropped, connection kept
    assert await device.publish("$aws/rules/Nope/x", b"{}", qos=1) is not None
    refusal = world.emulator.stats()["recent_refusals"][-1]
    assert refusal["reason"].startswith("RuleNotFound")
    await asyncio.gather(watcher.disconnect(), device.disconnect())


async def test_basic_ingest_needs_iot_publish_on_the_prefixed_topic(world: Harness) -> None:
    seen = Recorder()
    install(
        world, Rule.create("Moderate", f"SELECT * FROM '{INPUTS}'", [CallableAction("s", seen)])
    )
    # A subscriber token grants no iot:Publish on $aws/rules/...: the connection closes
    alice = await world.connect(member(world, "alice"), "alice.tab")
    await alice.publish("$aws/rules/Moderate/" + LOBBY_INPUT, b"{}")
    await alice.wait_closed()
    assert seen.items == []


async def test_a_qos1_chat_line_resent_with_dup_after_a_drop_is_one_message(
    world: Harness, account: FakeAccount
) -> None:
    """The reviewer's case, end to end through the broker and the real rule:
    alice publishes a line at QoS 1, the connection drops before she reads
    the PUBACK, and after reconnecting she resends the same PUBLISH with DUP=1
    (MQTT 3.1.1 4.4: the broker treats it as a new publication, so the rule
    runs again). With the line's cid the moderator stores and publishes it
    once (zulip/zulip issue 31219: a retried send used to make a second copy)."""
    definition = chat_moderation_rule(world.scheme)
    engine = install(
        world,
        Rule.create(
            definition.name, definition.sql, [LambdaAction("moderator", chat_moderator.handler)]
        ),
    )
    payload = json.dumps({"text": "did this arrive?", "cid": "Jm2mQ0yq2kFZ1s8dX3v7Rg"}).encode()
    line = Publish(topic=LOBBY_INPUT, payload=payload, qos=1, packet_id=7)
    # Given alice's line reached the broker, but the connection died before the PUBACK
    alice = await world.connect(member(world, "alice"), "alice.tab")
    await alice.send(line)
    await alice.drop()
    # When she reconnects and resends it, marked DUP, as paho and mqtt.js do
    alice = await world.connect(member(world, "alice"), "alice.tab")
    await alice.send(Publish(topic=LOBBY_INPUT, payload=payload, qos=1, packet_id=7, dup=True))
    assert isinstance(await alice.receive(), Puback)
    await alice.disconnect()
    # Then the rule ran twice, and the room got the line once, with one history item
    assert engine.drain()
    assert engine.stats.matched == 2
    room = [json.loads(p) for t, p in account.published() if t == "iotnotify/test/chat/lobby"]
    assert [(m["text"], m["sender"]) for m in room] == [("did this arrive?", "alice")]
    history = clients.chat_history().page("lobby", limit=10, before=None).messages
    assert [m.id for m in history] == [room[0]["id"]]
