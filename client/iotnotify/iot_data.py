"""iot-data ``Publish`` without the generic botocore client's per-call machinery.

A fan-out to 10,000 users is 10,000 ``Publish`` calls, and once concurrency
hides the round trip a Python process spends each call's time in CPU:
botocore's generic client resolves endpoint rules, validates and serialises
the parameters against the service model, emits about 20 events and parses
the response on every call. :class:`FastPublish` sends the request botocore
would send for ``Publish`` (``POST /topics/{topic}?qos=&retain=``, the
topic percent-encoded with ``/`` as ``%2F`` as botocore's rest-json
serialiser encodes a non-greedy label; ``iot-data`` service model) through
:class:`~iotnotify.signed_http.SignedEndpoint`, which signs it for
``iotdata`` and keeps what matters of the client: endpoint, credentials
(refreshed), timeouts, CA bundle, proxies, ``before-send`` hooks (moto's
``mock_aws``, stubbers), its retry handler (standard mode: 3 attempts,
backoff with jitter) and botocore's errors (``ClientError`` with the code
from ``x-amzn-ErrorType``). See that module for why it is hand-written and
what it costs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import quote

from iotnotify.signed_http import SignedEndpoint

__all__ = ["FastPublish"]

# botocore's URI encoding of a non-greedy label: everything but unreserved characters.
_SAFE: Final = "-._~"


class FastPublish:
    """``publish(topic=, qos=, payload=, retain=)`` like a boto3 ``iot-data`` client.

    ``client`` is the boto3 ``iot-data`` client to take endpoint, region,
    config, hooks and retry handler from; ``credentials`` returns botocore
    credentials (a session's ``get_credentials``). Thread-safe: at most
    ``client.meta.config.max_pool_connections`` connections are kept.
    """

    def __init__(
        self,
        client: Any,
        credentials: Callable[[], Any],
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._endpoint = SignedEndpoint(client, credentials, sleep=sleep or time.sleep)
        self.meta = client.meta  # endpoint, region, config (and its pool size), events

    def publish(
        self, *, topic: str, qos: int = 0, payload: bytes = b"", retain: bool = False
    ) -> dict[str, Any]:
        """Publish one message; returns ``{}`` like botocore's parsed answer (no members).

        Raises ``botocore.exceptions.ClientError`` (an error answer, after
        retries), ``NoCredentialsError`` or the ``BotoCoreError`` of a
        transport failure.
        """
        query = f"qos={int(qos)}&retain=true" if retain else f"qos={int(qos)}"
        self._endpoint.call(
            "Publish", path=f"/topics/{quote(topic, safe=_SAFE)}", query=query, body=payload
        )
        return {}

    def close(self) -> None:
        """Release the pooled connections (the client's: it is closed too)."""
        self._endpoint.close_client_session()
