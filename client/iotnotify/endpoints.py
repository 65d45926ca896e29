"""Where AWS IoT Core's data plane is: configured, or discovered once.

``DescribeEndpoint(endpointType='iot:Data-ATS')`` returns the account's ATS
host. Calling it per request would add latency and cost, so the answer is
cached for the life of the process (a Lambda cold start). Locally the
endpoint is configured to the emulator and DescribeEndpoint is never called
(moto would answer a new random host on each call anyway).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from iotnotify.errors import PublishError

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_iot import IoTClient

__all__ = ["IotEndpoint"]


class IotEndpoint:
    """The ``host[:port]`` of the iot:Data-ATS endpoint, resolved at most once."""

    def __init__(self, *, configured: str = "", iot_client: IoTClient | Any = None) -> None:
        self._host = configured.strip()
        self._iot_client = iot_client
        self._lock = threading.Lock()

    def host(self) -> str:
        if self._host:
            return self._host
        with self._lock:
            if not self._host:
                self._host = self._discover()
        return self._host

    def _discover(self) -> str:
        if self._iot_client is None:
            raise PublishError("no IoT endpoint configured and no iot client to discover it")
        try:
            answer = self._iot_client.describe_endpoint(endpointType="iot:Data-ATS")
        except (BotoCoreError, ClientError) as exc:
            raise PublishError(f"DescribeEndpoint(iot:Data-ATS) failed: {exc}") from exc
        return str(answer["endpointAddress"])
