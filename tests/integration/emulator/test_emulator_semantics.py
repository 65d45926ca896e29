"""Issue 15 section 2: broker semantics where AWS IoT Core differs from plain MQTT 3.1.1.

Each test names its AWS source; docs/fidelity.md lists them all.
"""

from __future__ import annotations

import asyncio

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
