"""The IoT data endpoint: configured, or discovered once and cached."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from iotnotify.endpoints import IotEndpoint
from iotnotify.errors import PublishError


class CountingIot:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = fail

    def describe_endpoint(self, **kwargs: Any) -> dict[str, str]:
        self.calls.append(kwargs)
        if self.fail:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "Describe")
        return {"endpointAddress": f"abc{len(self.calls)}-ats.iot.eu-west-1.amazonaws.com"}


def test_configured_endpoint_never_calls_aws() -> None:
    iot = CountingIot()
    assert IotEndpoint(configured="h:1", iot_client=iot).host() == "h:1"
    assert iot.calls == []


def test_discovery_asks_for_the_ats_endpoint_once() -> None:
    iot = CountingIot()
    endpoint = IotEndpoint(iot_client=iot)
    first, second = endpoint.host(), endpoint.host()
    assert first == second == "abc1-ats.iot.eu-west-1.amazonaws.com"
    assert iot.calls == [{"endpointType": "iot:Data-ATS"}]


def test_discovery_failure_is_translated() -> None:
    with pytest.raises(PublishError, match="DescribeEndpoint"):
        IotEndpoint(iot_client=CountingIot(fail=True)).host()
