"""Persistent sessions, QoS 1 redelivery and the in-flight window (issue 15 section 2).

AWS IoT developer guide, "MQTT" -> "Using MQTT persistent sessions"; AWS
general reference, AWS IoT Core quotas (1 h session expiry, 100
unacknowledged QoS 1 messages in flight).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from iotnotify_emulator import EmulatorConfig, InMemoryCredentialStore, start_emulator
from iotnotify_emulator.mqtt import Pingresp, Puback, Publish
from iotnotify_emulator.mqtt5 import Properties
from iotnotify_emulator.testing import ALLOW_ALL, Harness, RawMqttClient


@pytest.fixture
async def sessions_world() -> AsyncIterator[Harness]:
    store = InMemoryCredentialStore()
    config = EmulatorConfig(wss_port=None, publish_rate_limit=None, persistent_session_expiry=30)
    async with start_emulator(config, credentials=store) as emulator:
        harness = Harness(emulator=emulator, store=store)
        yield harness
        await harness.aclose()


async def _quiet(client: RawMqttClient) -> None:
    """Nothing more is waiting for ``client``: a PINGREQ is answered next."""
    await client.ping()
    packet = await client.receive()
    assert type(packet).__name__ == "Pingresp", packet


async def test_a_persistent_session_keeps_subscriptions_and_stores_qos1(
    sessions_world: Harness,
) -> None:
    world = sessions_world
    credential = world.store.issue([ALLOW_ALL])
    # Given a client with cleanSession=0 and a QoS 1 subscription, gone away
    client = await world.connect(credential, "device", clean_session=False)
    assert client.connack is not None
    assert client.connack.session_present is False
    await client.subscribe(("p/t", 1))
    await client.disconnect()
    # When QoS 1 and QoS 0 messages are published while it is away
    publisher = await world.connect(credential, "publisher")
    await publisher.publish("p/t", b"one", qos=1)
    await publisher.publish("p/t", b"zero", qos=0)
    await publisher.publish("p/t", b"two", qos=1)
    # Then reconnecting resumes the session: sessionPresent, the QoS 1 messages, in order
    back = await world.connect(credential, "device", clean_session=False)
    assert back.connack is not None
    assert back.connack.session_present is True
    stored = [await back.next_publish() for _ in range(2)]
    assert [(m.payload, m.qos) for m in stored] == [(b"one", 1), (b"two", 1)]
    await _quiet(back)
    # And the subscription is back without a new SUBSCRIBE
    await publisher.publish("p/t", b"live", qos=1)
    assert (await back.next_publish()).payload == b"live"
    await asyncio.gather(back.disconnect(), publisher.disconnect())


async def test_stored_messages_trickle_out_beside_live_traffic_on_resume() -> None:
    store = InMemoryCredentialStore()
    # AWS's limits on (the other tests here turn the rate limits off)
    config = EmulatorConfig(wss_port=None, persistent_session_expiry=30)
    async with start_emulator(config, credentials=store) as emulator:
        world = Harness(emulator=emulator, store=store)
        credential = store.issue([ALLOW_ALL])
        client = await world.connect(credential, "device", clean_session=False)
        await client.subscribe(("p/t", 1))
        await client.disconnect()
        # Given 25 QoS 1 messages stored while the client was away
        publisher = await world.connect(credential, "publisher")
        for index in range(25):
            await publisher.publish("p/t", b"stored %d" % index, qos=1)
        # When it resumes its session, at once pings, and a live message comes
        back = await world.connect(credential, "device", clean_session=False)
        await back.ping()
        await publisher.publish("p/t", b"live", qos=1)
        seen: list[object] = []
        while len(seen) < 27:  # 25 stored, the live one, the PINGRESP
            packet = await back.receive(within=10)
            if isinstance(packet, Publish) and packet.packet_id is not None:
                await back.send(Puback(packet.packet_id))
            seen.append(packet if isinstance(packet, Pingresp) else packet.payload)  # type: ignore[union-attr]
        # Then the stored messages all come, in order
        stored = [p for p in seen if isinstance(p, bytes) and p.startswith(b"stored")]
        assert stored == [b"stored %d" % index for index in range(25)]
        # But not in one burst after CONNACK: AWS sends them "at a maximum rate
        # of 10 messages per second" "along with any current message traffic",
        # so the PINGRESP and the live message overtake most of them
        last_stored = seen.index(b"stored 24")
        assert next(i for i, p in enumerate(seen) if isinstance(p, Pingresp)) < last_stored
        assert seen.index(b"live") < last_stored
        await asyncio.gather(back.disconnect(), publisher.disconnect())
        await world.aclose()


async def test_clean_session_ends_a_persistent_session(sessions_world: Harness) -> None:
    world = sessions_world
    credential = world.store.issue([ALLOW_ALL])
    client = await world.connect(credential, "device", clean_session=False)
    await client.subscribe(("p/t", 1))
    await client.disconnect()
    clean = await world.connect(credential, "device", clean_session=True)
    assert clean.connack is not None
    assert clean.connack.session_present is False
    publisher = await world.connect(credential, "publisher")
    await publisher.publish("p/t", b"x", qos=1)
    await _quiet(clean)
    await clean.disconnect()
    again = await world.connect(credential, "device", clean_session=False)
    assert again.connack is not None
    assert again.connack.session_present is False
    await asyncio.gather(again.disconnect(), publisher.disconnect())
    assert world.emulator.stats()["subscriptions_current"] == 0


async def test_a_persistent_session_expires() -> None:
    store = InMemoryCredentialStore()
    config = EmulatorConfig(wss_port=None, persistent_session_expiry=0.2)
    async with start_emulator(config, credentials=store) as emulator:
        world = Harness(emulator=emulator, store=store)
        credential = store.issue([ALLOW_ALL])
        client = await world.connect(credential, "device", clean_session=False)
        await client.subscribe(("p/t", 1))
        await client.disconnect()
        assert "device" in emulator.broker.offline
        # When its expiry (0.2 s here, 1 h by default) passes
        await asyncio.sleep(0.6)
        assert "device" not in emulator.broker.offline
        assert emulator.stats()["subscriptions_current"] == 0
        back = await world.connect(credential, "device", clean_session=False)
        assert back.connack is not None
        assert back.connack.session_present is False
        await world.aclose()


async def test_unacknowledged_qos1_is_redelivered_with_dup_on_resume(
    sessions_world: Harness,
) -> None:
    world = sessions_world
    credential = world.store.issue([ALLOW_ALL])
    client = await world.connect(credential, "device", clean_session=False)
    await client.subscribe(("p/t", 1))
    publisher = await world.connect(credential, "publisher")
    await publisher.publish("p/t", b"important", qos=1)
    # Given the message arrives but the client drops before its PUBACK
    first = await client.receive()
    assert isinstance(first, Publish)
    assert (first.payload, first.dup) == (b"important", False)
    await client.close()
    # When it resumes its session
    back = await world.connect(credential, "device", clean_session=False)
    # Then the message comes again, marked DUP
    again = await back.next_publish()
    assert (again.payload, again.qos, again.dup) == (b"important", 1, True)
    await back.disconnect()
    # And once acknowledged it is not sent a third time
    last = await world.connect(credential, "device", clean_session=False)
    await _quiet(last)
    await asyncio.gather(last.disconnect(), publisher.disconnect())


async def test_a_retained_qos1_message_unacknowledged_is_redelivered_on_resume(
    sessions_world: Harness,
) -> None:
    world = sessions_world
    credential = world.store.issue([ALLOW_ALL])
    publisher = await world.connect(credential, "publisher")
    await publisher.publish("config/t", b"settings", qos=1, retain=True)
    # Given a persistent session gets the retained message at QoS 1 on subscribing
    client = await world.connect(credential, "device", clean_session=False)
    await client.subscribe(("config/t", 1))
    first = await client.receive()
    assert isinstance(first, Publish)
    assert (first.payload, first.qos, first.retain) == (b"settings", 1, True)
    # And drops before its PUBACK
    await client.close()
    # When it resumes its session
    back = await world.connect(credential, "device", clean_session=False)
    # Then the retained message comes again, marked DUP, like any other
    # unacknowledged QoS 1 message of the session
    again = await back.next_publish()
    assert (again.payload, again.qos, again.dup) == (b"settings", 1, True)
    await back.disconnect()
    last = await world.connect(credential, "device", clean_session=False)
    await _quiet(last)
    await asyncio.gather(last.disconnect(), publisher.disconnect())


async def test_a_retained_qos1_message_waits_for_the_clients_receive_maximum(
    sessions_world: Harness,
) -> None:
    world = sessions_world
    credential = world.store.issue([ALLOW_ALL])
    publisher = await world.connect(credential, "publisher")
    await publisher.publish("config/t", b"settings", qos=1, retain=True)
    # Given an MQTT 5 client with Receive Maximum 1 and one QoS 1 message unacknowledged
    client = await world.connect(
        credential, "device", protocol_level=5, properties=Properties(receive_maximum=1)
    )
    await client.subscribe(("live/t", 1))
    await publisher.publish("live/t", b"live", qos=1)
    live = await client.receive()
    assert isinstance(live, Publish)
    assert live.payload == b"live"
    # When it subscribes to a topic with a retained QoS 1 message
    await client.subscribe(("config/t", 1))
    # Then the retained message is not sent while the window is full (MQTT5 3.1.2.11.3)
    await client.ping()
    assert isinstance(await client.receive(), Pingresp)
    # And it comes once the live one is acknowledged
    assert live.packet_id is not None
    await client.send(Puback(live.packet_id))
    retained = await client.next_publish()
    assert (retained.payload, retained.retain) == (b"settings", True)
    await asyncio.gather(client.disconnect(), publisher.disconnect())


async def test_at_most_100_unacknowledged_qos1_messages_are_in_flight(
    sessions_world: Harness,
) -> None:
    world = sessions_world
    credential = world.store.issue([ALLOW_ALL])
    client = await world.connect(credential, "slow")
    await client.subscribe(("q/t", 1))
    publisher = await world.connect(credential, "publisher")
    # When 150 QoS 1 messages are published to a client that acknowledges none
    for index in range(150):
        await publisher.publish("q/t", str(index).encode(), qos=1)
    received = []
    for _ in range(100):
        packet = await client.receive()
        assert isinstance(packet, Publish)
        received.append(packet)
    # Then 100 are in flight and the rest wait
    await _quiet(client)
    assert [int(p.payload) for p in received] == list(range(100))
    # And each PUBACK lets one more through, in order
    assert received[0].packet_id is not None
    await client.send(Puback(received[0].packet_id))
    nxt = await client.receive()
    assert isinstance(nxt, Publish)
    assert int(nxt.payload) == 100
    for packet in [*received[1:], nxt]:
        assert packet.packet_id is not None
        await client.send(Puback(packet.packet_id))
    rest = [int((await client.next_publish()).payload) for _ in range(49)]
    assert rest == list(range(101, 150))
    await asyncio.gather(client.disconnect(), publisher.disconnect())
