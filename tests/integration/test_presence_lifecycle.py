"""Presence from the emulator's real lifecycle events (issue 14 §4 acceptance).

The emulator emits ``$aws/events/presence/...`` as AWS does; the deployment's
presence rule (the very definition the CDK deploys, through
``iotnotify_local.topic_rules``) invokes the presence handler, which writes
the presence table in moto. A client that goes silent is dropped after 1.5 x
its keepalive (``MQTT_KEEP_ALIVE_TIMEOUT``), and presence follows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from iotnotify_emulator import EmulatorConfig, InMemoryCredentialStore, start_emulator
from iotnotify_emulator.rules import RulesEngine
from iotnotify_emulator.testing import ConnectionRefused, Harness
from iotnotify_handlers import clients, presence_events
from iotnotify_local.topic_rules import emulator_rules
from tests.conftest import APP, STAGE, FakeAccount

KEEPALIVE = 4  # seconds; the emulator's clamp is lowered to allow it
FACTOR = 1.5  # AWS drops a client silent for 1.5 x keepalive


SEEN: list[dict[str, Any]] = []  # every event the presence function was invoked with


def _presence(event: dict[str, Any], context: Any) -> Any:
    SEEN.append(json.loads(event) if isinstance(event, str | bytes) else event)
    return presence_events.handler(event, context)


@pytest.fixture
async def world(account: FakeAccount) -> AsyncIterator[tuple[Harness, RulesEngine]]:
    SEEN.clear()
    config = EmulatorConfig(keepalive_min=1, keepalive_factor=FACTOR)
    store = InMemoryCredentialStore()
    sqs = account.session.client("sqs")
    dlq = sqs.create_queue(QueueName=f"{APP}-{STAGE}-presence-dlq")["QueueUrl"]
    engine = RulesEngine(
        emulator_rules(
            account.scheme,
            handlers={"moderator": lambda e, c: None, "presence": _presence},
            sqs=sqs,
            dead_letter_queue_urls={"moderator": dlq, "presence": dlq},
        )
    )
    async with start_emulator(config, credentials=store) as emulator:
        emulator.install_rules(engine)
        harness = Harness(emulator=emulator, store=store, scheme=account.scheme)
        try:
            yield harness, engine
        finally:
            await harness.aclose()
            engine.close()


async def until(check: Callable[[], bool], *, within: float) -> None:
    """Wait for ``check`` (a presence read) to hold; fail after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not await asyncio.to_thread(check):
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"presence did not change within {within} s")
        await asyncio.sleep(0.05)


def connections(user: str) -> int:
    presence = clients.presence()
    assert presence is not None
    return presence.of(user).connections


async def test_presence_follows_connects_disconnects_and_keepalive_timeouts(
    world: tuple[Harness, RulesEngine],
) -> None:
    harness, engine = world
    window = KEEPALIVE * FACTOR + 2  # the keepalive window plus the rule's hop
    alice = harness.subscriber("alice")
    phone = await harness.connect(alice, "alice.phone", keepalive=600)
    laptop = await harness.connect(alice, "alice.laptop", keepalive=600)
    await until(lambda: connections("alice") == 2, within=window)

    await phone.disconnect()  # a clean DISCONNECT
    await until(lambda: connections("alice") == 1, within=window)
    await laptop.drop()  # the socket just goes away (CONNECTION_LOST)
    await until(lambda: connections("alice") == 0, within=window)

    # A tablet connects and then goes silent (sends no PINGREQ): online at
    # once, and offline once the broker drops it after 1.5 x its keepalive.
    tablet = await harness.connect(alice, "alice.tablet", keepalive=KEEPALIVE)
    await until(lambda: connections("alice") == 1, within=KEEPALIVE * FACTOR)
    await tablet.wait_closed(within=window)
    await until(lambda: connections("alice") == 0, within=window)
    assert engine.stats.failures == 0
    presence = clients.presence()
    assert presence is not None
    assert presence.of("alice").last_seen is not None


async def test_a_refused_connect_does_not_invoke_the_presence_function(
    world: tuple[Harness, RulesEngine],
) -> None:
    """A ``connect_failed`` event (AWS IoT developer guide, "Lifecycle events")
    also arrives on ``$aws/events/presence/+/+``; presence has nothing to
    apply from it, and on AWS each would be a Lambda invocation billed."""
    harness, engine = world
    # Given bob's credentials refused as one of alice's client ids
    with pytest.raises(ConnectionRefused):
        await harness.connect(harness.subscriber("bob"), "alice.1")
    # When alice then connects for real (an event the rule does pass on)
    alice = await harness.connect(harness.subscriber("alice"), "alice.phone", keepalive=600)
    await until(lambda: connections("alice") == 1, within=5)

    # Then the presence function saw the connect and nothing of the refusal
    assert [event["eventType"] for event in SEEN] == ["connected"]
    assert engine.stats.failures == 0
    await alice.disconnect()
