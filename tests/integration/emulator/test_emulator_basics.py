"""End-to-end through the emulator with the raw client and boto3 iot-data."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from iotnotify_emulator import EmulatorConfig, InMemoryCredentialStore, start_emulator
from iotnotify_emulator.mqtt import Connect, Publish, Will, encode
from iotnotify_emulator.testing import ALLOW_ALL, ConnectionRefused, Harness, RawMqttClient


async def test_subscriber_receives_an_iot_data_publish(world: Harness) -> None:
    # Given alice connected and subscribed to her topic
    client = await world.connect(world.subscriber("alice"), "alice.tab1")
    suback = await client.subscribe((world.topic_of("alice"), 1))
    assert suback.return_codes == (1,)
    # When the backend publishes with boto3 iot-data
    iot = world.iot_data(world.publisher())
    response = await asyncio.to_thread(
        iot.publish, topic=world.topic_of("alice"), qos=1, payload=b'{"title":"hi"}'
    )
    # Then alice receives it, at QoS 1
    message = await client.next_publish()
    assert message.topic == world.topic_of("alice")
    assert message.payload == b'{"title":"hi"}'
    assert message.qos == 1
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    await client.disconnect()


async def test_stats_endpoint_counts(world: Harness) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(world.emulator.data_url + "/_emulator/stats") as response,
    ):
        stats = await response.json()
    assert stats["connections_current"] == 0
    assert "deliveries" in stats


async def test_the_loop_monitor_runs_only_once_someone_asks_for_the_stats(
    world: Harness,
) -> None:
    # Given an emulator nobody measured: its loop is not woken every 5 ms
    assert not world.emulator.loop_monitor.running
    # When the stats are asked for
    async with (
        aiohttp.ClientSession() as http,
        http.get(world.emulator.data_url + "/_emulator/stats") as response,
    ):
        stats = await response.json()
    # Then the loop monitor runs, and the answer says so
    assert stats["loop"]["running"] is True
    assert world.emulator.loop_monitor.running


async def test_bad_signature_is_refused_before_upgrade(world: Harness) -> None:
    credential = world.subscriber("alice")
    url = world.url(credential).replace("X-Amz-Signature=", "X-Amz-Signature=0")
    with pytest.raises(ConnectionRefused) as refused:
        await RawMqttClient.open(url)
    assert refused.value.status == 403


async def test_token_inside_signature_is_refused(world: Harness) -> None:
    credential = world.subscriber("alice")
    with pytest.raises(ConnectionRefused) as refused:
        await RawMqttClient.open(world.url(credential, sign_token=True))
    assert refused.value.status == 403


async def test_missing_subprotocol_gets_426(world: Harness) -> None:
    credential = world.subscriber("alice")
    with pytest.raises(ConnectionRefused) as refused:
        await RawMqttClient.open(world.url(credential), protocols=())
    assert refused.value.status == 426


async def test_mqttv31_subprotocol_is_accepted(world: Harness) -> None:
    client = await RawMqttClient.connect(
        world.url(world.subscriber("alice")), client_id="alice.x", protocols=("mqttv3.1",)
    )
    assert client.ws.protocol == "mqttv3.1"
    await client.disconnect()


async def test_lifecycle_events(world: Harness) -> None:
    # Given a watcher allowed to read presence events
    watcher_cred = world.store.issue([ALLOW_ALL], principal_id="AIDAWATCHER")
    watcher = await world.connect(watcher_cred, "watcher")
    await watcher.subscribe("$aws/events/presence/+/+")
    # When alice connects and disconnects cleanly
    alice = await world.connect(
        world.subscriber("alice"), "alice.tab1", username="?SDK=x&Version=1"
    )
    await alice.disconnect()
    connected = await watcher.next_publish()
    disconnected = await watcher.next_publish()
    # Then both events carry AWS's fields
    assert connected.topic == "$aws/events/presence/connected/alice.tab1"
    event = json.loads(connected.payload)
    assert event["eventType"] == "connected"
    assert event["clientId"] == "alice.tab1"
    assert event["principalIdentifier"] == "AROATEST:alice"
    assert event["ipAddress"] == "127.0.0.1"
    assert {"timestamp", "sessionIdentifier", "versionNumber"} <= event.keys()
    gone = json.loads(disconnected.payload)
    assert disconnected.topic == "$aws/events/presence/disconnected/alice.tab1"
    assert gone["clientInitiatedDisconnect"] is True
    assert gone["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"
    assert gone["sessionIdentifier"] == event["sessionIdentifier"]
    assert gone["versionNumber"] == event["versionNumber"]
    await watcher.disconnect()


# AWS IoT developer guide, "Lifecycle events" -> "Connect attempt failure event".
CONNECT_FAILED_FIELDS = {
    "clientId",
    "timestamp",
    "eventType",
    "connectFailureReason",
    "principalIdentifier",
    "sessionIdentifier",
    "ipAddress",
}


@pytest.mark.parametrize("protocol_level", [4, 5])
async def test_an_unauthorised_connect_publishes_connect_failed(
    world: Harness, protocol_level: int
) -> None:
    watcher = await world.connect(world.store.issue([ALLOW_ALL]), "watcher")
    await watcher.subscribe("$aws/events/presence/connect_failed/+")
    # When bob's credentials try to connect as one of alice's client ids
    with pytest.raises(ConnectionRefused):
        await world.connect(world.subscriber("bob"), "alice.1", protocol_level=protocol_level)
    # Then the documented event is published, with exactly the documented fields
    message = await watcher.next_publish()
    assert message.topic == "$aws/events/presence/connect_failed/alice.1"
    event = json.loads(message.payload)
    assert event.keys() == CONNECT_FAILED_FIELDS
    assert event["clientId"] == "alice.1"
    assert event["eventType"] == "connect_failed"
    assert event["connectFailureReason"] == "AUTHORIZATION_FAILED"
    assert event["principalIdentifier"] == "AROATEST:bob"
    assert event["ipAddress"] == "127.0.0.1"
    assert isinstance(event["timestamp"], int)
    await watcher.disconnect()


async def test_a_will_the_client_may_not_publish_publishes_connect_failed(world: Harness) -> None:
    watcher = await world.connect(world.store.issue([ALLOW_ALL]), "watcher")
    await watcher.subscribe("$aws/events/presence/connect_failed/+")
    # When bob connects with his own client id but a will on alice's topic
    will = Will(topic=world.topic_of("alice"), payload=b"gone")
    with pytest.raises(ConnectionRefused):
        await world.connect(world.subscriber("bob"), "bob.1", will=will)
    # Then the connect attempt failure event names bob.1
    message = await watcher.next_publish()
    assert message.topic == "$aws/events/presence/connect_failed/bob.1"
    event = json.loads(message.payload)
    assert (event["clientId"], event["connectFailureReason"]) == ("bob.1", "AUTHORIZATION_FAILED")
    await watcher.disconnect()


async def test_refusals_without_a_documented_event_publish_no_connect_failed() -> None:
    store = InMemoryCredentialStore()
    config = EmulatorConfig(wss_port=None, connect_rate_per_client_id=1.0)
    async with start_emulator(config, credentials=store) as emulator:
        world = Harness(emulator=emulator, store=store)
        watcher = await world.connect(store.issue([ALLOW_ALL]), "watcher")
        await watcher.subscribe("$aws/events/presence/connect_failed/+")
        device = await world.connect(store.issue([ALLOW_ALL]), "device")
        # When a CONNECT is throttled (second one for "device" within the second)
        again = await RawMqttClient.open(world.url(store.issue([ALLOW_ALL])))
        await again.send(Connect(client_id="device"))
        assert await again.wait_closed() == []
        # and one is refused for its client id
        with pytest.raises(ConnectionRefused):
            await world.connect(store.issue([ALLOW_ALL]), "$bad")
        # and then one is refused by IAM
        with pytest.raises(ConnectionRefused):
            await world.connect(world.subscriber("bob"), "alice.1")
        # Then the only connect_failed event is the IAM refusal's
        message = await watcher.next_publish()
        assert message.topic == "$aws/events/presence/connect_failed/alice.1"
        assert emulator.stats()["connects_throttled"] == 1
        await device.disconnect()
        await watcher.disconnect()
        await world.aclose()


async def test_connect_failed_events_need_iot_receive(world: Harness) -> None:
    # Given a watcher that may subscribe to every presence event but receive
    # only the connected ones
    arn = world.emulator.broker.arn
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["iot:Connect", "iot:Subscribe"], "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": "iot:Receive",
                "Resource": arn("topic", "$aws/events/presence/connected/*"),
            },
        ],
    }
    watcher = await world.connect(world.store.issue([policy]), "watcher")
    await watcher.subscribe("$aws/events/presence/+/+")
    # When a CONNECT is refused, then alice connects
    with pytest.raises(ConnectionRefused):
        await world.connect(world.subscriber("bob"), "alice.1")
    alice = await world.connect(world.subscriber("alice"), "alice.2")
    # Then the watcher sees alice's connected event only
    message = await watcher.next_publish()
    assert message.topic == "$aws/events/presence/connected/alice.2"
    assert world.emulator.stats()["denials_by_action"]["iot:Receive"] >= 1
    await asyncio.gather(alice.disconnect(), watcher.disconnect())


async def test_retained_message_is_delivered_on_subscribe(world: Harness) -> None:
    publisher = world.store.issue(
        [
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["iot:Publish", "iot:RetainPublish"],
                        "Resource": world.emulator.broker.arn("topic", f"{world.scheme.prefix}/*"),
                    }
                ],
            }
        ],
        with_token=False,
    )
    iot = world.iot_data(publisher)
    broadcast = str(world.scheme.broadcast())
    await asyncio.to_thread(iot.publish, topic=broadcast, qos=0, retain=True, payload=b"r")
    client = await world.connect(world.subscriber("bob"), "bob.1")
    await client.subscribe(broadcast)
    message = await client.next_publish()
    assert isinstance(message, Publish)
    assert message.retain
    assert message.payload == b"r"
    await client.disconnect()


async def test_will_is_published_when_the_connection_is_lost_not_on_disconnect(
    world: Harness,
) -> None:
    from iotnotify_emulator.mqtt import Will

    credential = world.store.issue([ALLOW_ALL])
    watcher = await world.connect(credential, "watcher")
    await watcher.subscribe("wills/#")
    # A clean DISCONNECT discards the will
    polite = await world.connect(credential, "polite", will=Will("wills/polite", b"gone"))
    await polite.disconnect()
    # A dropped connection (no DISCONNECT, no WebSocket Close frame) publishes it
    rude = await world.connect(credential, "rude", will=Will("wills/rude", b"gone"))
    await rude.drop()
    message = await watcher.next_publish()
    assert (message.topic, message.payload) == ("wills/rude", b"gone")


async def test_a_websocket_close_frame_is_a_client_initiated_disconnect_without_will(
    world: Harness,
) -> None:
    """AWS IoT developer guide, "Lifecycle events": CLIENT_INITIATED_DISCONNECT
    is "either a MQTT DISCONNECT control packet or a Close frame if the client
    is using a WebSocket connection", and the broker sends no Last Will for it."""
    from iotnotify_emulator.mqtt import Will

    credential = world.store.issue([ALLOW_ALL])
    watcher = await world.connect(credential, "watcher")
    await watcher.subscribe("wills/#", "$aws/events/presence/disconnected/+")
    # Given a client with a will
    tab = await world.connect(credential, "tab", will=Will("wills/tab", b"gone"))
    # When it closes its WebSocket (a browser tab going away) without DISCONNECT
    await tab.ws.close()
    # Then the disconnect is client-initiated and no will is published
    event = await watcher.next_publish()
    assert event.topic == "$aws/events/presence/disconnected/tab"
    gone = json.loads(event.payload)
    assert gone["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"
    assert gone["clientInitiatedDisconnect"] is True
    await watcher.ping()
    assert type(await watcher.receive()).__name__ == "Pingresp"  # no will before it
    assert world.emulator.stats()["disconnects_by_reason"] == {"CLIENT_INITIATED_DISCONNECT": 1}
    await watcher.disconnect()


async def test_will_needs_publish_permission(world: Harness) -> None:
    from iotnotify_emulator.mqtt import Will

    with pytest.raises(ConnectionRefused) as refused:
        await world.connect(
            world.subscriber("alice"),
            "alice.1",
            will=Will(world.topic_of("alice"), b"gone"),
        )
    assert refused.value.hung_up


async def test_retained_mqtt_publish_needs_retain_publish(world: Harness) -> None:
    publish_only = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["iot:Connect", "iot:Publish"], "Resource": "*"}
        ],
    }
    client = await world.connect(world.store.issue([publish_only]), "p1")
    await client.publish("a/b", b"plain")  # allowed, stays connected
    await client.publish("a/b", b"kept", retain=True)
    await client.wait_closed()
    assert world.emulator.stats()["denials_by_action"] == {"iot:RetainPublish": 1}


async def test_clients_cannot_publish_to_reserved_topics(world: Harness) -> None:
    client = await world.connect(world.store.issue([ALLOW_ALL]), "c1")
    await client.publish("$aws/events/presence/connected/fake", b"{}")
    await client.wait_closed()


async def test_deliveries_of_every_frame_length_arrive_whole_and_in_order(world: Harness) -> None:
    # Given a subscriber and a publisher allowed everything
    subscriber = await world.connect(world.store.issue([ALLOW_ALL]), "sizes.sub")
    await subscriber.subscribe("t/sizes")
    publisher = await world.connect(world.store.issue([ALLOW_ALL]), "sizes.pub")
    # When messages are published whose WebSocket frames straddle each length
    # encoding of RFC 6455 (7-bit up to 125, 16-bit up to 65,535, 64-bit
    # above), staying under AWS's 512 KB/s per connection
    overhead = len(encode(Publish(topic="t/sizes", payload=b""))) + 2  # remaining length grows
    sizes = [0, 1, *range(122 - overhead, 130 - overhead)]
    sizes += [*range(65_534 - overhead, 65_538 - overhead), 0]
    for index, size in enumerate(sizes):
        await publisher.publish("t/sizes", bytes([index % 251]) * size)
    # Then each arrives once, whole, in order
    for index, size in enumerate(sizes):
        message = await subscriber.next_publish()
        assert message.payload == bytes([index % 251]) * size, (index, size)
    await publisher.disconnect()
    await subscriber.disconnect()
