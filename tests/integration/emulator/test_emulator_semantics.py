"""Issue 15 section 2: broker semantics where AWS IoT Core differs from plain MQTT 3.1.1.

Each test names its AWS source; docs/fidelity.md lists them all.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from iotnotify_emulator.mqtt import Pingresp, Publish, Subscribe, Unsubscribe
from iotnotify_emulator.mqtt5 import ReasonCode
from iotnotify_emulator.testing import ALLOW_ALL, Harness


async def test_hash_does_not_match_the_parent_topic(world: Harness) -> None:
    """AWS IoT developer guide, "AWS IoT differences from MQTT version 3.1.1":
    `sensor/#` receives `sensor/` and `sensor/temperature`, not `sensor`."""
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c1")
    await client.subscribe("sensor/#")
    for topic in ("sensor", "sensor/", "sensor/temperature/room1"):
        await client.publish(topic, topic.encode())
    received = [(await client.next_publish()).topic for _ in range(2)]
    assert received == ["sensor/", "sensor/temperature/room1"]
    await client.ping()
    assert type(await client.receive()).__name__ == "Pingresp"  # nothing for "sensor"
    await client.disconnect()


async def test_retained_messages_reach_exact_topic_subscriptions_only(world: Harness) -> None:
    """AWS IoT developer guide, "AWS IoT differences from MQTT version 3.1.1":
    wildcard filters "can't receive retained messages"."""
    credential = world.store.issue([ALLOW_ALL])
    publisher = await world.connect(credential, "publisher")
    await publisher.publish("config/device", b"retained", qos=1, retain=True)
    # When one client subscribes with wildcards and another with the exact topic
    wildcard = await world.connect(credential, "wildcard")
    await wildcard.subscribe("config/#", "config/+")
    exact = await world.connect(credential, "exact")
    await exact.subscribe("config/device")
    # Then only the exact subscription gets the retained message, flagged retained
    message = await exact.next_publish()
    assert (message.payload, message.retain) == (b"retained", True)
    await wildcard.ping()
    assert type(await wildcard.receive()).__name__ == "Pingresp"
    # And later publishes reach both, live (retain flag clear)
    await publisher.publish("config/device", b"live")
    for client in (exact, wildcard):
        message = await client.next_publish()
        assert (message.payload, message.retain) == (b"live", False)
    await asyncio.gather(*(c.disconnect() for c in (publisher, wildcard, exact)))


async def test_shared_subscription_delivers_each_message_to_one_member(world: Harness) -> None:
    """AWS IoT blog, "How to get started with the new shared subscriptions in AWS
    IoT Core": a shared subscription sends each message to one subscriber, at
    random."""
    credential = world.store.issue([ALLOW_ALL])
    members = [await world.connect(credential, f"worker.{i}") for i in range(2)]
    for member in members:
        assert (await member.subscribe("$share/workers/jobs/+")).return_codes == (0,)
    plain = await world.connect(credential, "plain")
    await plain.subscribe("jobs/+")
    publisher = await world.connect(credential, "publisher")
    count = 40
    for index in range(count):
        await publisher.publish(f"jobs/{index}", str(index).encode())
    # Then the plain subscriber gets every message, the group each message once
    everything = [int((await plain.next_publish()).payload) for _ in range(count)]
    assert sorted(everything) == list(range(count))
    got: list[list[int]] = []
    for member in members:
        await member.ping()
        payloads = []
        while type(packet := await member.receive()).__name__ != "Pingresp":
            payloads.append(int(packet.payload))  # type: ignore[union-attr]
        got.append(payloads)
    assert sorted(got[0] + got[1]) == list(range(count))
    # A random spread of 40 messages reaches both members (each misses with p = 2**-40).
    assert got[0]
    assert got[1]
    # And leaving the group stops deliveries to that member
    await members[0].disconnect()
    await publisher.publish("jobs/last", b"last")
    assert (await members[1].next_publish()).payload == b"last"
    await asyncio.gather(*(c.disconnect() for c in (members[1], plain, publisher)))
    assert world.emulator.stats()["subscriptions_current"] == 0


async def test_shared_subscriptions_get_no_retained_message_and_need_a_share_name(
    world: Harness,
) -> None:
    credential = world.store.issue([ALLOW_ALL])
    publisher = await world.connect(credential, "publisher")
    await publisher.publish("cfg/x", b"retained", qos=1, retain=True)
    member = await world.connect(credential, "member")
    codes = (await member.subscribe("$share/g/cfg/x", "$share//cfg/x", "$share/g")).return_codes
    assert codes == (0, 0x80, 0x80)
    await member.ping()
    assert type(await member.receive()).__name__ == "Pingresp"  # no retained message
    await asyncio.gather(publisher.disconnect(), member.disconnect())


async def test_subscribe_and_unsubscribe_lifecycle_events(world: Harness) -> None:
    """AWS IoT developer guide, "Lifecycle events" -> "Subscribe/Unsubscribe events"."""
    watcher = await world.connect(world.store.issue([ALLOW_ALL]), "watcher")
    await watcher.subscribe("$aws/events/subscriptions/+/alice.1")
    alice = await world.connect(world.subscriber("alice"), "alice.1")
    await alice.subscribe(world.topic_of("alice"))
    subscribed = await watcher.next_publish()
    assert subscribed.topic == "$aws/events/subscriptions/subscribed/alice.1"
    event = json.loads(subscribed.payload)
    assert event["eventType"] == "subscribed"
    assert event["topics"] == [world.topic_of("alice")]
    assert event["clientId"] == "alice.1"
    assert event["principalIdentifier"] == "AROATEST:alice"
    assert {"timestamp", "sessionIdentifier"} <= event.keys()
    await alice.send(Unsubscribe(packet_id=7, topics=(world.topic_of("alice"),)))
    unsubscribed = await watcher.next_publish()
    assert unsubscribed.topic == "$aws/events/subscriptions/unsubscribed/alice.1"
    event = json.loads(unsubscribed.payload)
    assert (event["eventType"], event["topics"]) == ("unsubscribed", [world.topic_of("alice")])
    await asyncio.gather(alice.disconnect(), watcher.disconnect())


# AWS IoT developer guide, "Reserved topics": "Topics that begin with a dollar
# sign ($) are reserved for use by AWS IoT. You can subscribe and publish to
# these reserved topics as they allow; however, you can't create new topics
# that begin with a dollar sign. Unsupported publish or subscribe operations
# to reserved topics can result in a terminated connection." Every topic the
# page lists is under $aws/; $aws/rules/... is publish-only (Basic Ingest).
UNSUPPORTED_RESERVED_FILTERS = ("$SYS/#", "$foo/bar", "$aws/rules/r/t", "$share/g/$SYS/#")


async def test_subscribing_to_an_unsupported_reserved_topic_closes_an_mqtt311_connection(
    world: Harness,
) -> None:
    credential = world.store.issue([ALLOW_ALL])
    for index, name in enumerate(UNSUPPORTED_RESERVED_FILTERS):
        # Given a client allowed everything by IAM
        client = await world.connect(credential, f"c{index}")
        # When it subscribes to a reserved topic AWS does not offer
        await client.send(Subscribe(packet_id=1, topics=((name, 0),)))
        # Then no SUBACK: the connection is closed
        assert await client.wait_closed() == [], name
    stats = world.emulator.stats()
    assert stats["subscriptions_current"] == 0
    assert stats["disconnects_by_reason"] == {"CLIENT_ERROR": len(UNSUPPORTED_RESERVED_FILTERS)}


async def test_reserved_topics_aws_offers_can_be_subscribed(world: Harness) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c1")
    codes = await client.subscribe(
        "$aws/events/presence/connected/+", "$aws/things/t/shadow/update/accepted"
    )
    assert codes.return_codes == (0, 0)
    await client.disconnect()


async def test_an_mqtt5_subscribe_to_an_unsupported_reserved_topic_gets_0x8f(
    world: Harness,
) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c1", protocol_level=5)
    filters = (*UNSUPPORTED_RESERVED_FILTERS, "ok/topic")
    codes = (await client.subscribe(*filters)).return_codes
    assert codes == (ReasonCode.TOPIC_FILTER_INVALID,) * len(UNSUPPORTED_RESERVED_FILTERS) + (0,)
    # The connection stays, as for the other SUBACK failures of MQTT 5
    await client.ping()
    assert isinstance(await client.receive(), Pingresp)
    assert world.emulator.stats()["subscriptions_current"] == 1
    await client.disconnect()


async def test_an_mqtt311_qos0_publish_with_dup_closes_the_connection(world: Harness) -> None:
    """MQTT 3.1.1 section 3.3.1.1: "The DUP flag MUST be set to 0 for all QoS 0
    messages [MQTT-3.3.1-2]"; section 4.8: a protocol violation closes the
    Network Connection [MQTT-4.8.0-1]."""
    watcher = await world.connect(world.store.issue([ALLOW_ALL]), "watcher")
    await watcher.subscribe("a/1", "$aws/events/presence/disconnected/c")
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c")
    # When a QoS 0 PUBLISH arrives with the DUP bit set
    await client.send(Publish(topic="a/1", payload=b"dup", qos=0, dup=True))
    # Then the connection is closed without anything sent back
    assert await client.wait_closed() == []
    # And the message was not routed: the watcher's next message is the disconnect
    disconnected = await watcher.next_publish()
    assert disconnected.topic == "$aws/events/presence/disconnected/c"
    assert json.loads(disconnected.payload)["disconnectReason"] == "CLIENT_ERROR"
    await watcher.disconnect()


@pytest.mark.parametrize("invalid", ["a/#/b", "a+", ""])
async def test_an_mqtt311_unsubscribe_of_an_invalid_filter_closes_the_connection(
    world: Harness, invalid: str
) -> None:
    """MQTT 3.1.1 UNSUBACK has no return codes (section 3.11.3), so a filter that
    breaks section 4.7 is a protocol violation that closes the Network
    Connection [MQTT-4.8.0-1]."""
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c")
    await client.subscribe("a/1")
    # When an UNSUBSCRIBE names a valid filter and an invalid one
    await client.send(Unsubscribe(packet_id=7, topics=("a/1", invalid)))
    # Then no UNSUBACK: the connection is closed as a client error
    assert await client.wait_closed() == []
    stats = world.emulator.stats()
    assert stats["disconnects_by_reason"] == {"CLIENT_ERROR": 1}
    assert stats["protocol_errors"] == 1
