"""FastPublish: botocore's request for Publish, its hooks, errors and retries (no network).

A ``before-send`` hook on the boto3 client answers instead of the network,
which is exactly how moto's ``mock_aws`` answers too.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.exceptions import ClientError

from iotnotify.iot_data import FastPublish
from iotnotify.publisher import Publisher
from tests.unit.sdk.test_fanout import SCHEME


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, *_: Any, **__: Any) -> Any:
        yield self._body


def _answer(status: int, body: bytes = b"{}", headers: dict[str, str] | None = None) -> AWSResponse:
    return AWSResponse("http://example.invalid", status, headers or {}, _Raw(body))


def _client(answers: list[AWSResponse], seen: list[AWSPreparedRequest]) -> Any:
    session = boto3.session.Session(
        region_name="eu-west-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="s3cr3t"
    )
    client = session.client("iot-data", endpoint_url="https://data.example.invalid")

    def hook(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        seen.append(request)
        return answers.pop(0) if len(answers) > 1 else answers[0]

    client.meta.events.register("before-send.iot-data-plane.Publish", hook)
    return client, session


def _fast(answers: list[AWSResponse]) -> tuple[FastPublish, list[AWSPreparedRequest], list[float]]:
    seen: list[AWSPreparedRequest] = []
    pauses: list[float] = []
    client, session = _client(answers, seen)
    return FastPublish(client, session.get_credentials, sleep=pauses.append), seen, pauses


def test_the_request_is_botocores_publish_signed_for_iotdata() -> None:
    # Given FastPublish and, for comparison, the boto3 client itself
    fast, seen, _ = _fast([_answer(200, b'{"message":"OK"}')])
    reference: list[AWSPreparedRequest] = []
    client, _ = _client([_answer(200)], reference)

    # When both publish the same message to a topic with characters to encode
    fast.publish(topic="app/st/user/a b+c/notifications", qos=0, payload=b"hello")
    client.publish(topic="app/st/user/a b+c/notifications", qos=0, payload=b"hello")

    # Then the method, URL and body are the ones botocore sends, signed as iotdata
    [mine], [theirs] = seen, reference
    assert (mine.method, mine.url, mine.body) == (theirs.method, theirs.url, theirs.body)
    assert mine.url.endswith("/topics/app%2Fst%2Fuser%2Fa%20b%2Bc%2Fnotifications?qos=0")
    authorization = str(mine.headers["Authorization"])
    assert "/eu-west-1/iotdata/aws4_request" in authorization
    assert "AKIDEXAMPLE" in authorization


def test_throttling_is_retried_with_backoff_then_succeeds() -> None:
    throttled = _answer(
        429, b'{"message":"slow down"}', {"x-amzn-ErrorType": "ThrottlingException"}
    )
    fast, seen, pauses = _fast([throttled, throttled, _answer(200)])

    assert fast.publish(topic="a/b", payload=b"x") == {}
    assert len(seen) == 3
    assert len(pauses) == 2


def test_an_error_that_stays_is_botocores_client_error_and_the_publisher_says_throttled() -> None:
    # Given an endpoint that always throttles
    throttled = _answer(
        429, b'{"message":"slow down"}', {"x-amzn-ErrorType": "ThrottlingException"}
    )
    fast, seen, _ = _fast([throttled])

    # Then FastPublish gives up after 3 attempts with botocore's error
    with pytest.raises(ClientError) as caught:
        fast.publish(topic="a/b", payload=b"x")
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    assert caught.value.response["Error"]["Message"] == "slow down"
    assert len(seen) == 3
    # and a Publisher over it reports Throttled for that user
    publisher = Publisher(scheme=SCHEME, iot_data=fast)
    [result] = publisher.notify_many(["alice"], title="t", ephemeral=True)
    publisher.close()
    assert not result.ok
    assert "throttled (ThrottlingException)" in (result.error or "")


@pytest.mark.parametrize("status", [401, 403, 413])
def test_client_errors_are_not_retried(status: int) -> None:
    refused = _answer(status, b'{"message":"no"}', {"x-amzn-ErrorType": "ForbiddenException"})
    fast, seen, pauses = _fast([refused])
    with pytest.raises(ClientError):
        fast.publish(topic="a/b", payload=b"x")
    assert (len(seen), pauses) == (1, [])


def test_publisher_create_publishes_through_fastpublish_with_its_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a publisher built by create() for a given endpoint
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    session = boto3.session.Session(region_name="eu-west-1")
    publisher = Publisher.create(
        app="iotnotify",
        stage="test",
        endpoint="data.example.invalid",
        session=session,
        max_workers=12,
    )
    calls: list[str] = []
    publisher.iot_data.meta.events.register(  # the client hooks are FastPublish hooks
        "before-send.iot-data-plane.Publish",
        lambda request, **_: calls.append(request.url) or _answer(200),
    )
    with publisher:
        results = publisher.notify_many(["a", "b"], title="t")
    assert isinstance(publisher.iot_data, FastPublish)
    assert publisher.concurrency == 12
    assert all(r.ok for r in results)
    assert sorted(calls) == [
        "https://data.example.invalid/topics/iotnotify%2Ftest%2Fuser%2Fa%2Fnotifications?qos=0",
        "https://data.example.invalid/topics/iotnotify%2Ftest%2Fuser%2Fb%2Fnotifications?qos=0",
    ]
