"""iot-data ``Publish`` without the generic botocore client's per-call machinery.

A fan-out to 10,000 users is 10,000 ``Publish`` calls, and a Python process
spends most of each call's time in CPU, not on the wire, once the round trip
is hidden by concurrency: botocore's generic client resolves the endpoint
rules, serialises the parameters against the service model, emits about 20
events and parses the response on every call, which costs about twice what
signing and sending the request does (``bench/fanout_latency.py`` prints the
CPU per user). :class:`FastPublish` keeps what matters and drops the rest:

* it is built from a boto3 ``iot-data`` client, whose endpoint URL, region,
  timeouts, proxies, connection-pool size and event hooks it uses;
* each request is the one botocore would send for ``Publish`` (``POST
  /topics/{topic}?qos=&retain=``, the topic percent-encoded with ``/`` as
  ``%2F``; botocore's rest-json serialiser, ``iot-data`` service model) and
  is signed by botocore's ``SigV4Auth`` (service ``iotdata``) with the
  session's credentials (refreshed by botocore when they are temporary);
* the client's ``before-send`` hooks run first, exactly as in botocore's
  ``Endpoint``, so ``moto``'s ``mock_aws`` and botocore's ``Stubber``-style
  hooks still answer in tests; otherwise botocore's own
  ``URLLib3Session`` sends it (the same TLS, certificate bundle and pool);
* errors are botocore's: a non-2xx answer raises ``ClientError`` with the
  code from ``x-amzn-ErrorType`` (as botocore's rest-json parser reads it),
  a transport failure the ``BotoCoreError`` the HTTP session raised.
  Throttling (429, ``ThrottlingException``), 5xx and transport errors are
  retried as botocore's "standard" retry mode does: 3 attempts in all,
  exponential backoff with full jitter, at most 20 s.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import quote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.exceptions import (
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
)

__all__ = ["FastPublish"]

_SIGNING_NAME: Final = "iotdata"  # iot-data's signingName in its service model
_MAX_ATTEMPTS: Final = 3  # botocore's "standard" retry mode
_MAX_BACKOFF: Final = 20.0
_RETRYABLE_STATUS: Final = frozenset({429, 500, 502, 503, 504})
_RETRYABLE_CODES: Final = frozenset(
    {"ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"}
)
# botocore's URI encoding of a non-greedy label: everything but unreserved characters.
_SAFE: Final = "-._~"


class FastPublish:
    """``publish(topic=, qos=, payload=, retain=)`` like a boto3 ``iot-data`` client.

    ``client`` is the boto3 ``iot-data`` client to take endpoint, region,
    config and hooks from; ``credentials`` returns botocore credentials (a
    session's ``get_credentials``). Thread-safe: the HTTP pool holds
    ``client.meta.config.max_pool_connections`` connections.
    """

    def __init__(
        self,
        client: Any,
        credentials: Callable[[], Any],
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.meta = client.meta  # endpoint, region, config (and its pool size), events
        self._endpoint = client.meta.endpoint_url.rstrip("/")
        self._region = client.meta.region_name
        self._events = client.meta.events
        self._service_id = client.meta.service_model.service_id.hyphenize()
        self._credentials = credentials
        self._sleep = sleep
        # The client's own HTTP session (botocore's Endpoint keeps it as
        # ``http_session``): the same proxies, CA bundle (AWS_CA_BUNDLE),
        # client certificate, socket options, timeouts and connection pool as
        # the boto3 client, rather than a second configuration to keep equal.
        self._http: Any = client._endpoint.http_session

    def publish(
        self, *, topic: str, qos: int = 0, payload: bytes = b"", retain: bool = False
    ) -> dict[str, Any]:
        """Publish one message; returns ``{}`` like botocore's parsed answer (no members).

        Raises ``botocore.exceptions.ClientError`` (an error answer, after
        retries), ``NoCredentialsError`` or the ``BotoCoreError`` of a
        transport failure.
        """
        url = f"{self._endpoint}/topics/{quote(topic, safe=_SAFE)}?qos={int(qos)}"
        if retain:
            url += "&retain=true"
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            try:
                response = self._send(url, payload)
            except (ConnectionError, HTTPClientError):
                if attempt == _MAX_ATTEMPTS:
                    raise
            else:
                if 200 <= response.status_code < 300:
                    return {}
                error = _client_error(response)
                if attempt == _MAX_ATTEMPTS or not _retryable(response.status_code, error):
                    raise error
            self._sleep(random.random() * min(_MAX_BACKOFF, 2.0**attempt))  # noqa: S311 - jitter
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _send(self, url: str, payload: bytes) -> AWSResponse:
        credentials = self._credentials()
        if credentials is None:
            raise NoCredentialsError()
        request = AWSRequest(method="POST", url=url, data=payload)
        SigV4Auth(credentials.get_frozen_credentials(), _SIGNING_NAME, self._region).add_auth(
            request
        )
        prepared = request.prepare()
        # As botocore's Endpoint does: a hook (moto, a stubber) may answer instead.
        for _, answer in self._events.emit(
            f"before-send.{self._service_id}.Publish", request=prepared
        ):
            if answer is not None:
                response: AWSResponse = answer
                return response
        sent: AWSResponse = self._http.send(prepared)
        return sent

    def close(self) -> None:
        """Release the pooled connections (the client's: it is closed too)."""
        self._http.close()


def _retryable(status: int, error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    return status in _RETRYABLE_STATUS or code in _RETRYABLE_CODES


def _client_error(response: AWSResponse) -> ClientError:
    """The error as botocore's rest-json parser would report it."""
    body: dict[str, Any] = {}
    try:
        parsed = json.loads(response.content or b"{}")
        if isinstance(parsed, dict):
            body = parsed
    except ValueError:
        pass
    code = str(response.headers.get("x-amzn-ErrorType", "")).split(":")[0]
    code = code or str(body.get("code") or body.get("__type") or response.status_code)
    message = str(body.get("message") or body.get("Message") or "")
    parsed_error: Any = {
        "Error": {"Code": code.rsplit("#", 1)[-1], "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": response.status_code},
    }
    return ClientError(parsed_error, "Publish")
