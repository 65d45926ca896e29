"""AWS IoT Core's limits and delivery rules, and isolation of a stalled subscriber."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from botocore.exceptions import ClientError

from iotnotify_emulator import EmulatorConfig, InMemoryCredentialStore, start_emulator
from iotnotify_emulator.mqtt import SUBACK_FAILURE, Connect, Pingresp, Subscribe
from iotnotify_emulator.testing import ALLOW_ALL, ConnectionRefused, Harness, RawMqttClient


async def test_client_id_rules(world: Harness) -> None:
    credential = world.store.issue([ALLOW_ALL])
    for client_id in ("$sys", "x" * 129, ""):
        with pytest.raises(ConnectionRefused) as refused:
            await world.connect(credential, client_id)
        assert refused.value.return_code == 2, client_id
    ok = await world.connect(credential, "x" * 128)
    await ok.disconnect()


async def test_only_mqtt_311_is_accepted(world: Harness) -> None:
    client = await RawMqttClient.open(world.url(world.store.issue([ALLOW_ALL])))
    await client.send(Connect(client_id="c", protocol_name="MQIsdp", protocol_level=3))
    packets = await client.wait_closed()
    assert [getattr(p, "return_code", None) for p in packets] == [1]
    await client.close()


async def test_more_than_8_filters_in_one_subscribe_close_the_connection(
    world: Harness,
) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c1")
    await client.send(Subscribe(packet_id=1, topics=tuple((f"t/{i}", 0) for i in range(9))))
    assert await client.wait_closed() == []
    assert world.emulator.stats()["subscriptions_current"] == 0


async def test_subscribe_limits(world: Harness) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c1")
    for start in range(0, 48, 8):
        batch = [f"t/{i}" for i in range(start, start + 8)]
        assert set((await client.subscribe(*batch)).return_codes) == {0}
    # A SUBSCRIBE that would pass 50 subscriptions is refused as a whole.
    assert (await client.subscribe("t/48", "t/49", "t/50")).return_codes == (SUBACK_FAILURE,) * 3
    assert world.emulator.stats()["subscriptions_current"] == 48
    assert set((await client.subscribe("t/48", "t/49")).return_codes) == {0}
    assert (await client.subscribe("t/50")).return_codes == (SUBACK_FAILURE,)
    # Re-subscribing an existing filter is not a new subscription.
    assert (await client.subscribe(("t/1", 1))).return_codes == (1,)
    # Invalid filters fail individually.
    assert (await client.subscribe("a/#/b")).return_codes == (SUBACK_FAILURE,)
    await client.disconnect()


async def test_qos_is_downgraded_to_the_subscription(world: Harness) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c1")
    await client.subscribe(("q/0", 0), ("q/1", 1))
    await client.publish("q/0", b"a", qos=1)
    assert (await client.next_publish()).qos == 0
    await client.publish("q/1", b"b", qos=1)
    assert (await client.next_publish()).qos == 1
    await client.publish("q/1", b"c", qos=0)
    assert (await client.next_publish()).qos == 0
    await client.disconnect()


async def test_oversized_mqtt_payload_closes_the_connection(world: Harness) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c1")
    await client.publish("big", b"x" * (128 * 1024 + 1))
    await client.wait_closed()


async def test_invalid_topics_close_the_connection(world: Harness) -> None:
    for topic in ("a/+/b", "/".join("x" * 9)):
        client = await world.connect(world.store.issue([ALLOW_ALL]), "c1")
        await client.publish(topic, b"x")
        await client.wait_closed()


async def test_http_publish_errors(world: Harness) -> None:
    publisher = world.iot_data(world.publisher())
    topic = world.topic_of("alice")

    def code_of(**kwargs: object) -> tuple[int, str]:
        try:
            publisher.publish(**kwargs)
        except ClientError as exc:
            return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]
        return 200, "OK"

    assert await asyncio.to_thread(code_of, topic=topic, payload=b"x") == (200, "OK")
    assert await asyncio.to_thread(code_of, topic=topic, payload=b"x" * (128 * 1024 + 1)) == (
        413,
        "RequestEntityTooLargeException",
    )
    assert await asyncio.to_thread(code_of, topic="a/+/b", payload=b"x") == (
        400,
        "InvalidRequestException",
    )
    assert await asyncio.to_thread(code_of, topic="other/app", payload=b"x") == (
        403,
        "ForbiddenException",
    )
    # Retained publish needs iot:RetainPublish, which the publisher policy lacks.
    assert await asyncio.to_thread(code_of, topic=topic, payload=b"x", retain=True) == (
        403,
        "ForbiddenException",
    )
    subscriber = world.iot_data(world.subscriber("alice"))
    status = await asyncio.to_thread(lambda: _status(subscriber, topic=topic, payload=b"x"))
    assert status == 403
    forged = world.publisher()
    world.store.remove(forged.access_key_id)
    status = await asyncio.to_thread(
        lambda: _status(world.iot_data(forged), topic=topic, payload=b"x")
    )
    assert status == 401


def _status(client: object, **kwargs: object) -> int:
    try:
        client.publish(**kwargs)  # type: ignore[attr-defined]
    except ClientError as exc:
        return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
    return 200


async def test_https_publish_on_the_wss_port(world: Harness) -> None:
    client = await world.connect(world.subscriber("alice"), "alice.1")
    await client.subscribe(world.topic_of("alice"))
    iot = world.iot_data(world.publisher(), tls=True)
    await asyncio.to_thread(iot.publish, topic=world.topic_of("alice"), payload=b"tls")
    assert (await client.next_publish()).payload == b"tls"
    await client.disconnect()


@pytest.fixture
async def small_queue_world() -> AsyncIterator[Harness]:
    store = InMemoryCredentialStore()
    config = EmulatorConfig(outbound_queue_bytes=256 * 1024, wss_port=None, publish_rate_limit=None)
    async with start_emulator(config, credentials=store) as emulator:
        harness = Harness(emulator=emulator, store=store)
        yield harness
        await harness.aclose()


async def test_a_stalled_subscriber_does_not_slow_the_others(
    small_queue_world: Harness,
) -> None:
    world = small_queue_world
    credential = world.store.issue([ALLOW_ALL])
    # Given a subscriber that never reads, and one that does
    stalled = await world.connect(credential, "stalled")
    await stalled.subscribe("fan/out")
    active = await world.connect(credential, "active")
    await active.subscribe("fan/out")
    publisher = await world.connect(credential, "publisher")
    # When far more than the socket buffers can hold is published
    payload = b"x" * 64 * 1024
    count = 200
    received = 0

    async def consume() -> None:
        nonlocal received
        while received < count:
            await active.next_publish(within=10)
            received += 1

    consumer = asyncio.create_task(consume())
    for _ in range(count):
        await publisher.publish("fan/out", payload, qos=1)
    await asyncio.wait_for(consumer, timeout=30)
    # Then the active subscriber got everything and the stalled one's excess was dropped
    assert received == count
    stats = world.emulator.stats()
    assert stats["drops"] > 0
    assert stats["deliveries"] + stats["drops"] == 2 * count
    for client in (stalled, active, publisher):
        await client.close()


async def test_publishes_over_the_rate_limit_are_throttled_not_disconnected() -> None:
    store = InMemoryCredentialStore()
    config = EmulatorConfig(wss_port=None, publish_rate_limit=5)
    async with start_emulator(config, credentials=store) as emulator:
        world = Harness(emulator=emulator, store=store)
        client = await world.connect(store.issue([ALLOW_ALL]), "c1")
        await client.subscribe("r/t")
        for _ in range(20):
            await client.publish("r/t", b"x")
        await client.ping()
        received = 0
        while not isinstance(await client.receive(), Pingresp):
            received += 1
        assert 5 <= received < 20
        assert emulator.stats()["throttled"] == 20 - received
        await world.aclose()


async def _published(world: Harness, count_per_publisher: int, payload: bytes, qos: int) -> None:
    """Three publishers (each within its own inbound 100/s) send to "o/t", then
    each is answered a PINGREQ: every delivery has been routed by then."""
    credential = world.store.issue([ALLOW_ALL])
    publishers = [await world.connect(credential, f"pub.{i}") for i in range(3)]

    async def run(client: RawMqttClient, index: int) -> None:
        for n in range(count_per_publisher):
            await client.publish("o/t", payload or f"{index}.{n}".encode(), qos=qos)
        await client.ping()
        while not isinstance(await client.receive(), Pingresp):
            pass

    await asyncio.gather(*(run(client, i) for i, client in enumerate(publishers)))
    for client in publishers:
        await client.disconnect()


async def _drain(client: RawMqttClient) -> list[bytes]:
    await client.ping()
    payloads = []
    while not isinstance(packet := await client.receive(), Pingresp):
        payloads.append(packet.payload)  # type: ignore[union-attr]
    return payloads


async def test_outbound_messages_over_100_per_second_are_throttled(world: Harness) -> None:
    # Given a QoS 0 subscriber and 210 messages for it within a fraction of a second
    subscriber = await world.connect(world.store.issue([ALLOW_ALL]), "sub")
    await subscriber.subscribe("o/t")
    await _published(world, 70, b"", qos=0)
    # Then about one second's worth reaches it (AWS quota: 100 publishes/s out)
    received = await _drain(subscriber)
    stats = world.emulator.stats()
    assert 100 <= len(received) < 210
    assert stats["throttled_outbound"] == 210 - len(received)
    await subscriber.disconnect()


async def test_outbound_bytes_over_512_kib_per_second_are_delayed_not_dropped(
    world: Harness,
) -> None:
    # Given a QoS 0 subscriber
    subscriber = await world.connect(world.store.issue([ALLOW_ALL]), "sub")
    await subscriber.subscribe("o/t")
    # When 3 x 4 messages of 100 KB (1.2 MB) are routed to it at once, over
    # 512 KiB/s but under 100 messages/s
    payloads = [f"{i}.{n}.".encode().ljust(100_000, b"x") for i in range(3) for n in range(4)]
    publishers = [await world.connect(world.store.issue([ALLOW_ALL]), f"pub.{i}") for i in range(3)]
    for index, client in enumerate(publishers):
        for n in range(4):
            await client.publish("o/t", payloads[index * 4 + n], qos=1)
    # Then every one arrives, each publisher's in order: AWS delays data over
    # the throughput quota, it discards only publishes over 100/s (Quotas)
    received = [(await subscriber.next_publish(within=10)).payload for _ in range(12)]
    for index in range(3):
        mine = [p for p in received if p.startswith(f"{index}.".encode())]
        assert mine == payloads[index * 4 : index * 4 + 4]
    stats = world.emulator.stats()
    assert stats["throttled_outbound"] == 0
    assert stats["delayed_outbound"] > 0  # the throughput limit did hold some back
    for client in publishers:
        await client.disconnect()
    await subscriber.disconnect()


async def test_qos1_deliveries_over_the_outbound_rate_wait_instead_of_being_lost(
    world: Harness,
) -> None:
    subscriber = await world.connect(world.store.issue([ALLOW_ALL]), "sub")
    await subscriber.subscribe(("o/t", 1))
    await _published(world, 60, b"", qos=1)
    # All 180 arrive (acknowledged as they come), each publisher's in order
    received = [(await subscriber.next_publish(within=10)).payload.decode() for _ in range(180)]
    for index in range(3):
        mine = [int(p.split(".")[1]) for p in received if p.startswith(f"{index}.")]
        assert mine == list(range(60))
    assert world.emulator.stats()["throttled_outbound"] == 0
    await subscriber.disconnect()


async def test_more_than_one_connect_per_second_per_client_id_is_throttled() -> None:
    store = InMemoryCredentialStore()
    config = EmulatorConfig(wss_port=None, connect_rate_per_client_id=1.0)
    async with start_emulator(config, credentials=store) as emulator:
        world = Harness(emulator=emulator, store=store)
        credential = store.issue([ALLOW_ALL])
        first = await world.connect(credential, "device")
        # When the same client id connects again within the second
        again = await RawMqttClient.open(world.url(credential))
        await again.send(Connect(client_id="device"))
        # Then that CONNECT is refused without a CONNACK, and the first stays connected
        assert await again.wait_closed() == []
        await first.ping()
        assert isinstance(await first.receive(), Pingresp)
        stats = emulator.stats()
        assert stats["connects_throttled"] == 1
        assert stats["connections_current"] == 1
        # While another client id is not affected
        other = await world.connect(credential, "other")
        await other.disconnect()
        await first.disconnect()
        await world.aclose()
