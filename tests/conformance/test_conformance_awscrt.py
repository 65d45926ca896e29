"""The AWS IoT Device SDK v2 (awscrt) over wss:// with its own SigV4 signing.

awscrt signs ``connection;host``, sends Host without the port and an MQTT
username ``?SDK=...``: the emulator must accept all three like AWS does.
"""

from __future__ import annotations

import queue
from typing import Any

import pytest
from awscrt import auth, mqtt
from awscrt.exceptions import AwsCrtError
from awsiot import mqtt_connection_builder

from iotnotify_emulator.testing import Harness

WAIT = 15.0


def test_awscrt_websocket_with_default_aws_signing(harness: Harness) -> None:
    # Given alice's role-session credentials and the emulator's CA
    credential = harness.subscriber("alice")
    assert harness.emulator.ca_file is not None
    assert harness.emulator.wss_port is not None
    provider = auth.AwsCredentialsProvider.new_static(
        credential.access_key_id, credential.secret_access_key, credential.session_token
    )
    connection = mqtt_connection_builder.websockets_with_default_aws_signing(
        endpoint=harness.emulator.config.host,
        port=harness.emulator.wss_port,
        region=harness.region,
        credentials_provider=provider,
        ca_filepath=str(harness.emulator.ca_file),
        client_id="alice.crt",
        clean_session=True,
        keep_alive_secs=30,
    )
    messages: queue.Queue[tuple[str, bytes]] = queue.Queue()

    def on_message(topic: str, payload: bytes, **_: Any) -> None:
        messages.put((topic, payload))

    connection.connect().result(WAIT)
    try:
        # When she subscribes and the backend publishes through iot-data
        subscribed, _ = connection.subscribe(
            topic=harness.topic_of("alice"), qos=mqtt.QoS.AT_LEAST_ONCE, callback=on_message
        )
        result = subscribed.result(WAIT)
        assert result["qos"] == mqtt.QoS.AT_LEAST_ONCE
        harness.iot_data(harness.publisher(), tls=True).publish(
            topic=harness.topic_of("alice"), qos=1, payload=b"from iot-data"
        )
        # Then the SDK receives it
        assert messages.get(timeout=WAIT) == (harness.topic_of("alice"), b"from iot-data")
    finally:
        connection.disconnect().result(WAIT)


def test_awscrt_connecting_under_another_users_client_id_sees_an_unexpected_hangup(
    harness: Harness,
) -> None:
    """aws-iot-device-sdk-js-v2 issue 101: against AWS IoT Core, a CONNECT the
    policy does not allow fails with AWS_ERROR_MQTT_UNEXPECTED_HANGUP ("The
    connection was closed unexpectedly"), not with a CONNACK refusal."""
    # Given alice's credentials and bob's client id
    credential = harness.subscriber("alice")
    assert harness.emulator.ca_file is not None
    assert harness.emulator.wss_port is not None
    provider = auth.AwsCredentialsProvider.new_static(
        credential.access_key_id, credential.secret_access_key, credential.session_token
    )
    connection = mqtt_connection_builder.websockets_with_default_aws_signing(
        endpoint=harness.emulator.config.host,
        port=harness.emulator.wss_port,
        region=harness.region,
        credentials_provider=provider,
        ca_filepath=str(harness.emulator.ca_file),
        client_id="bob.crt",
        clean_session=True,
        keep_alive_secs=30,
    )
    # When the SDK connects, Then the server hangs up (a CONNACK 5 would be
    # AWS_ERROR_MQTT_PROTOCOL_ERROR here)
    with pytest.raises(AwsCrtError) as failed:
        connection.connect().result(WAIT)
    assert failed.value.name == "AWS_ERROR_MQTT_UNEXPECTED_HANGUP"
    assert harness.emulator.stats()["connects_refused"] == 1
