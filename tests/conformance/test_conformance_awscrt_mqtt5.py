"""The AWS IoT Device SDK v2's MQTT 5 client (awscrt) over wss:// with its own SigV4.

``awsiot.mqtt5_client_builder.websockets_with_default_aws_signing`` is what
AWS's current Python samples use (issue 15): it must connect, get Not
authorized (0x87) for another user's topic without losing the connection,
and receive an iot-data publish with its user properties.
"""

from __future__ import annotations

import json
import queue
import threading
from concurrent.futures import Future
from typing import Any

from awscrt import auth, mqtt5
from awsiot import mqtt5_client_builder

from iotnotify_emulator.testing import ALLOW_ALL, Harness

WAIT = 15.0


def test_awscrt_mqtt5_client_with_default_aws_signing(harness: Harness) -> None:
    # Given alice's role-session credentials and the emulator's CA
    credential = harness.subscriber("alice")
    assert harness.emulator.ca_file is not None
    assert harness.emulator.wss_port is not None
    provider = auth.AwsCredentialsProvider.new_static(
        credential.access_key_id, credential.secret_access_key, credential.session_token
    )
    received: queue.Queue[mqtt5.PublishPacket] = queue.Queue()
    connected: Future[mqtt5.ConnackPacket] = Future()
    stopped = threading.Event()
    disconnections: list[Any] = []

    def on_success(data: mqtt5.LifecycleConnectSuccessData) -> None:
        if not connected.done():
            connected.set_result(data.connack_packet)

    def on_failure(data: mqtt5.LifecycleConnectFailureData) -> None:
        if not connected.done():
            connected.set_exception(RuntimeError(f"connect failed: {data.exception}"))

    client = mqtt5_client_builder.websockets_with_default_aws_signing(
        endpoint=harness.emulator.config.host,
        port=harness.emulator.wss_port,
        region=harness.region,
        credentials_provider=provider,
        ca_filepath=str(harness.emulator.ca_file),
        client_id="alice.crt5",
        on_publish_received=lambda data: received.put(data.publish_packet),
        on_lifecycle_connection_success=on_success,
        on_lifecycle_connection_failure=on_failure,
        on_lifecycle_disconnection=lambda data: disconnections.append(data),
        on_lifecycle_stopped=lambda data: stopped.set(),
    )
    client.start()
    try:
        connack = connected.result(WAIT)
        assert connack.reason_code == mqtt5.ConnectReasonCode.SUCCESS
        assert connack.topic_alias_maximum == 8
        assert connack.maximum_qos == mqtt5.QoS.AT_LEAST_ONCE
        # AWS IoT Core's CONNACK carries Receive Maximum 100 (its quota of
        # unacknowledged inbound QoS 1 publishes); the SDK caps its in-flight
        # publishes with it
        assert connack.receive_maximum == 100
        # and always Server Keep Alive, here the builder's default 1200 s as it is
        assert connack.server_keep_alive_sec == 1200
        # When she subscribes to bob's topic
        refused = client.subscribe(
            mqtt5.SubscribePacket(
                subscriptions=[mqtt5.Subscription(harness.topic_of("bob"), mqtt5.QoS.AT_LEAST_ONCE)]
            )
        ).result(WAIT)
        # Then the SDK reports Not authorized and stays connected
        assert refused.reason_codes == [mqtt5.SubackReasonCode.NOT_AUTHORIZED]
        granted = client.subscribe(
            mqtt5.SubscribePacket(
                subscriptions=[
                    mqtt5.Subscription(harness.topic_of("alice"), mqtt5.QoS.AT_LEAST_ONCE)
                ]
            )
        ).result(WAIT)
        assert granted.reason_codes == [mqtt5.SubackReasonCode.GRANTED_QOS_1]
        assert disconnections == []
        # And an iot-data publish with user properties reaches her with them
        harness.iot_data(harness.publisher(), tls=True).publish(
            topic=harness.topic_of("alice"),
            qos=1,
            payload=b'{"v":1}',
            contentType="application/json",
            userProperties=[{"kind": "turn"}, {"game": "g1"}],
        )
        message = received.get(timeout=WAIT)
        assert message.topic == harness.topic_of("alice")
        assert json.loads(message.payload) == {"v": 1}
        assert message.content_type == "application/json"
        assert [(p.name, p.value) for p in message.user_properties] == [
            ("kind", "turn"),
            ("game", "g1"),
        ]
    finally:
        client.stop()
        stopped.wait(WAIT)


def test_awscrt_mqtt5_will_with_qos2_is_refused_with_qos_not_supported(harness: Harness) -> None:
    # Given a CONNACK that says Maximum QoS 1 (AWS IoT Core: QoS 0 and 1 only,
    # DG "MQTT 5 properties"), a server "MUST reject the connection" whose
    # Will QoS exceeds it, with CONNACK 0x9B QoS not supported (MQTT5
    # 3.2.2.3.4, [MQTT-3.2.2-12]); awscrt sends such a will as it is
    credential = harness.store.issue([ALLOW_ALL])
    assert harness.emulator.ca_file is not None
    assert harness.emulator.wss_port is not None
    provider = auth.AwsCredentialsProvider.new_static(
        credential.access_key_id, credential.secret_access_key, credential.session_token
    )
    outcome: Future[mqtt5.ConnackPacket | None] = Future()
    stopped = threading.Event()

    def on_success(data: mqtt5.LifecycleConnectSuccessData) -> None:
        if not outcome.done():
            outcome.set_result(data.connack_packet)

    def on_failure(data: mqtt5.LifecycleConnectFailureData) -> None:
        if not outcome.done():
            outcome.set_result(data.connack_packet)

    client = mqtt5_client_builder.websockets_with_default_aws_signing(
        endpoint=harness.emulator.config.host,
        port=harness.emulator.wss_port,
        region=harness.region,
        credentials_provider=provider,
        ca_filepath=str(harness.emulator.ca_file),
        client_id="will.qos2",
        will=mqtt5.PublishPacket(topic="wills/w", payload=b"bye", qos=mqtt5.QoS.EXACTLY_ONCE),
        on_lifecycle_connection_success=on_success,
        on_lifecycle_connection_failure=on_failure,
        on_lifecycle_stopped=lambda data: stopped.set(),
    )
    # When it connects with a QoS 2 will
    client.start()
    try:
        connack = outcome.result(WAIT)
    finally:
        client.stop()
        stopped.wait(WAIT)
    # Then the SDK reports the refusal and its reason code
    assert connack is not None
    assert connack.reason_code == mqtt5.ConnectReasonCode.QOS_NOT_SUPPORTED
    assert harness.emulator.stats()["connects_refused"] == 1
