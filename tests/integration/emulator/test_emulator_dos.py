"""Issue 10, MQTT side: one connection must not be able to hurt the broker or its neighbours."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from iotnotify_emulator import EmulatorConfig, InMemoryCredentialStore, start_emulator
from iotnotify_emulator.mqtt import Connack, Connect, Pingreq, Pingresp, Subscribe, encode
from iotnotify_emulator.testing import ALLOW_ALL, Harness, RawMqttClient


async def test_a_subscribe_with_32000_filters_is_refused_whole_with_one_record(
    world: Harness,
) -> None:
    credential = world.store.issue([ALLOW_ALL])
    bystander = await world.connect(credential, "bystander")
    flooder = await world.connect(credential, "flooder")
    # When one 128 KB SUBSCRIBE carries 32,000 filters
    packet = encode(Subscribe(packet_id=1, topics=tuple((str(i % 10), 0) for i in range(32_000))))
    assert 128_000 <= len(packet) <= 128 * 1024
    await flooder.send_raw(packet)
    # Then the connection is closed without a SUBACK, nothing is subscribed
    assert await flooder.wait_closed() == []
    stats = world.emulator.stats()
    assert stats["subscriptions_current"] == 0
    assert stats["denials_by_action"].get("iot:Subscribe", 0) == 0
    # and exactly one refusal record names it
    records = [r for r in stats["recent_refusals"] if r.get("client_id") == "flooder"]
    assert len(records) == 1
    assert records[0]["filters"] > 8
    assert stats["disconnects_by_reason"]["CLIENT_ERROR"] == 1
    # And the neighbour is still served
    await bystander.ping()
    assert isinstance(await bystander.receive(), Pingresp)
    await bystander.disconnect()


@pytest.fixture
async def fast_world() -> AsyncIterator[Harness]:
    store = InMemoryCredentialStore()
    config = EmulatorConfig(wss_port=None, publish_rate_limit=None)
    async with start_emulator(config, credentials=store) as emulator:
        harness = Harness(emulator=emulator, store=store)
        yield harness
        await harness.aclose()


async def test_the_send_queue_of_a_stalled_subscriber_is_bounded_in_bytes(
    fast_world: Harness,
) -> None:
    world = fast_world
    credential = world.store.issue([ALLOW_ALL])
    limit = world.emulator.broker.settings.outbound_queue_bytes
    # Given a QoS 1 subscriber that never reads
    stalled = await world.connect(credential, "stalled")
    await stalled.subscribe(("big/t", 1))
    publisher = await world.connect(credential, "publisher")
    # When 200 messages of 120 KB (24 MB, far beyond socket buffers) are published
    count = 200
    for _ in range(count):
        await publisher.publish("big/t", b"x" * 120 * 1024, qos=1)
    await publisher.ping()
    assert isinstance(await publisher.receive(), Pingresp)
    # Then what waits for the stalled peer stays under the byte bound, and the rest is counted
    session = world.emulator.broker.sessions["stalled"]
    assert 0 < session.queued_bytes <= limit
    stats = world.emulator.stats()
    assert stats["drops"] > 0
    assert stats["drops"] == session.dropped
    assert stats["deliveries"] + stats["drops"] == count
    await publisher.disconnect()
    await stalled.close()


async def test_a_malformed_packet_after_connect_is_announced_as_client_error(
    world: Harness,
) -> None:
    watcher = await world.connect(world.store.issue([ALLOW_ALL]), "watcher")
    await watcher.subscribe("$aws/events/presence/disconnected/+")
    client = await world.connect(world.subscriber("alice"), "alice.1")
    # When the client sends a packet of the reserved type 15
    await client.send_raw(b"\xf0\x00")
    await client.wait_closed()
    # Then the lifecycle event says CLIENT_ERROR, as AWS does, not CONNECTION_LOST
    event = json.loads((await watcher.next_publish()).payload)
    assert event["clientId"] == "alice.1"
    assert event["disconnectReason"] == "CLIENT_ERROR"
    assert event["clientInitiatedDisconnect"] is False
    await watcher.disconnect()


async def test_a_client_that_sends_without_reading_cannot_grow_its_queue(
    fast_world: Harness,
) -> None:
    world = fast_world
    client = await world.connect(world.store.issue([ALLOW_ALL]), "pinger")
    # When a client sends PINGREQs and never reads the responses
    await asyncio.gather(*(client.ping() for _ in range(2000)))
    await client.ping()
    # Then the broker's queue for it stays bounded (or the connection is dropped)
    session = world.emulator.broker.sessions.get("pinger")
    if session is not None:
        assert session.queued_bytes <= 2 * world.emulator.broker.settings.outbound_queue_bytes
    await client.close()


async def test_packets_before_a_malformed_one_in_the_same_frame_are_acted_on(
    world: Harness,
) -> None:
    client = await RawMqttClient.open(world.url(world.store.issue([ALLOW_ALL])))
    # When one WebSocket frame carries CONNECT, PINGREQ and then a malformed packet
    await client.send_raw(encode(Connect(client_id="c1")) + encode(Pingreq()) + b"\xf0\x00")
    # Then the first two are answered before the connection closes
    packets = await client.wait_closed()
    assert [type(p) for p in packets] == [Connack, Pingresp]
    assert world.emulator.stats()["disconnects_by_reason"] == {"CLIENT_ERROR": 1}
    await client.close()
