"""MQTT 5 session rules that need no network: iot-data fields, expiry, aliases."""

from __future__ import annotations

import base64
import json
import time

import pytest

from iotnotify_emulator.mqtt import Publish
from iotnotify_emulator.mqtt5 import Properties, ReasonCode
from iotnotify_emulator.session5 import (
    HttpPropertiesError,
    ProtocolViolation,
    State5,
    check_publish,
    forwarded,
    properties_from_http,
)


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def test_http_fields_become_properties() -> None:
    properties = properties_from_http(
        {
            "x-amz-mqtt5-user-properties": _b64(json.dumps([{"a": "1"}, {"b": "2"}])),
            "x-amz-mqtt5-payload-format-indicator": "UNSPECIFIED_BYTES",
            "x-amz-mqtt5-correlation-data": _b64(b"\xff\x00"),
        },
        {"contentType": "text/plain", "responseTopic": "r/1", "messageExpiry": "30"},
    )
    assert properties == Properties(
        payload_format_indicator=0,
        message_expiry_interval=30,
        content_type="text/plain",
        response_topic="r/1",
        correlation_data=b"\xff\x00",
        user_properties=(("a", "1"), ("b", "2")),
    )


def test_user_properties_given_as_a_json_string_are_accepted() -> None:
    # boto3's documentation passes a JSON string, which botocore encodes again.
    doubly = _b64(json.dumps(json.dumps([{"deviceName": "alpha"}])))
    properties = properties_from_http({"x-amz-mqtt5-user-properties": doubly}, {})
    assert properties == Properties(user_properties=(("deviceName", "alpha"),))


def test_no_http_fields_means_no_properties() -> None:
    assert properties_from_http({}, {"qos": "1"}) is None


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({"x-amz-mqtt5-user-properties": "not base64!"}, {}),
        ({"x-amz-mqtt5-user-properties": _b64('{"a": "1"}')}, {}),
        ({"x-amz-mqtt5-user-properties": _b64('[{"a": 1}]')}, {}),
        ({"x-amz-mqtt5-user-properties": _b64(json.dumps([{"k": "v" * 9000}]))}, {}),
        ({"x-amz-mqtt5-payload-format-indicator": "UTF16"}, {}),
        ({"x-amz-mqtt5-correlation-data": "%%%"}, {}),
        ({}, {"messageExpiry": "-1"}),
        ({}, {"messageExpiry": "4294967296"}),
        ({}, {"responseTopic": "a/#"}),
        # Not encodable (lone surrogates), or U+0000, which makes the
        # forwarded PUBLISH malformed for every MQTT 5 subscriber (MQTT5 1.5.4).
        ({"x-amz-mqtt5-user-properties": _b64('[{"k": "\\ud800"}]')}, {}),
        ({"x-amz-mqtt5-user-properties": _b64('[{"\\udfff": "v"}]')}, {}),
        ({"x-amz-mqtt5-user-properties": _b64('[{"k": "a\\u0000b"}]')}, {}),
        ({"x-amz-mqtt5-user-properties": _b64('[{"\\u0000": "v"}]')}, {}),
        ({}, {"contentType": "text/plain\x00"}),
        ({}, {"contentType": "\ud800"}),
        ({}, {"responseTopic": "a/\x00"}),
        ({}, {"messageExpiry": "\u00b2"}),
        ({}, {"messageExpiry": "\u0661\u0662"}),
    ],
)
def test_invalid_http_fields_are_rejected(headers: dict[str, str], query: dict[str, str]) -> None:
    with pytest.raises(HttpPropertiesError):
        properties_from_http(headers, query)


def test_forwarding_drops_connection_scoped_properties() -> None:
    properties = Properties(topic_alias=3, subscription_identifiers=(1,), content_type="x")
    assert forwarded(properties) == Properties(content_type="x")


def test_message_expiry_counts_down_and_expires() -> None:
    properties = Properties(message_expiry_interval=60)
    waited = forwarded(properties, received_at=time.monotonic() - 15.5)
    assert waited is not None
    assert waited.message_expiry_interval == 45
    assert forwarded(properties, received_at=time.monotonic() - 61) is None


def test_topic_alias_is_set_then_used() -> None:
    state = State5()
    assert state.resolve_topic(Publish("a/b", properties=Properties(topic_alias=1))) == "a/b"
    assert state.resolve_topic(Publish("", properties=Properties(topic_alias=1))) == "a/b"
    with pytest.raises(ProtocolViolation) as raised:
        state.resolve_topic(Publish("", properties=Properties(topic_alias=2)))
    assert raised.value.reason_code == ReasonCode.PROTOCOL_ERROR


@pytest.mark.parametrize(
    ("properties", "payload", "reason"),
    [
        (Properties(subscription_identifiers=(1,)), b"", ReasonCode.PROTOCOL_ERROR),
        (Properties(response_topic="a/+"), b"", ReasonCode.PROTOCOL_ERROR),
        (Properties(payload_format_indicator=1), b"\xc3", ReasonCode.PAYLOAD_FORMAT_INVALID),
        (Properties(user_properties=(("k", "v" * 8200),)), b"", ReasonCode.QUOTA_EXCEEDED),
    ],
)
def test_publish_property_rules(properties: Properties, payload: bytes, reason: int) -> None:
    with pytest.raises(ProtocolViolation) as raised:
        check_publish(Publish("t", payload, properties=properties), "t")
    assert raised.value.reason_code == reason
