"""signed_http: botocore's signature, the client's retries and errors, kept-alive connections.

The signature is compared with botocore's own ``SigV4Auth`` for the same
request at the same instant; retries and errors with what the boto3 client
itself does; the connection pool against a small HTTP/1.1 server on
127.0.0.1 that counts connections (stopped by each test).
"""

from __future__ import annotations

import datetime
import http.server
import socket
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from iotnotify.contract import Notification
from iotnotify.dynamodb_batch import FastBatchWrite
from iotnotify.inbox import Inbox
from iotnotify.iot_data import FastPublish
from iotnotify.signed_http import SignedEndpoint, SigV4Signer, _HTTPConnection

INSTANT = datetime.datetime(2026, 11, 29, 23, 59, 58, tzinfo=datetime.UTC)


def _botocore_authorization(
    monkeypatch: pytest.MonkeyPatch,
    credentials: Credentials,
    *,
    service: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    at: datetime.datetime = INSTANT,
) -> str:
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: at)
    request = AWSRequest(method="POST", url=url, headers=dict(headers), data=body)
    SigV4Auth(credentials, service, "eu-west-1").add_auth(request)
    return str(request.headers["Authorization"])


def _mine(
    credentials: Credentials,
    *,
    service: str,
    host: str,
    path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    at: datetime.datetime = INSTANT,
) -> dict[str, str]:
    signer = SigV4Signer(service=service, region="eu-west-1", clock=at.timestamp)
    return signer.sign(
        credentials.get_frozen_credentials(),
        method="POST",
        host=host,
        path=path,
        query=query,
        headers=headers,
        body=body,
    )


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEXAMPLE//token+with/chars="])
def test_a_publish_signature_equals_botocores_sigv4auth(
    monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    # Given a Publish request whose topic needs encoding (botocore signs the
    # path encoded twice), with and without a session token
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    path = "/topics/app%2Fst%2Fuser%2Fa%20b%2Bc%2Fnotifications"
    body = b'{"v":1,"title":"Your turn"}'

    # When both sign it at the same instant
    mine = _mine(
        credentials,
        service="iotdata",
        host="data.example.com:8443",
        path=path,
        query="retain=true&qos=1",
        headers={"User-Agent": "test agent"},
        body=body,
    )
    theirs = _botocore_authorization(
        monkeypatch,
        credentials,
        service="iotdata",
        url=f"https://data.example.com:8443{path}?retain=true&qos=1",
        headers={"User-Agent": "test agent"},
        body=body,
    )

    # Then the Authorization headers are identical (User-Agent left unsigned)
    assert mine["Authorization"] == theirs
    assert "user-agent" not in mine["Authorization"]
    assert mine["X-Amz-Date"] == "20261129T235958Z"
    assert mine.get("X-Amz-Security-Token") == token


def test_a_dynamodb_signature_equals_botocores_and_covers_its_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    credentials = Credentials("AKIDEXAMPLE", "secret")
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "DynamoDB_20120810.BatchWriteItem",
    }
    body = b'{"RequestItems":{}}'
    mine = _mine(
        credentials,
        service="dynamodb",
        host="dynamodb.eu-west-1.amazonaws.com",
        path="/",
        query="",
        headers=headers,
        body=body,
    )
    theirs = _botocore_authorization(
        monkeypatch,
        credentials,
        service="dynamodb",
        url="https://dynamodb.eu-west-1.amazonaws.com/",
        headers=headers,
        body=body,
    )
    assert mine["Authorization"] == theirs
    assert "SignedHeaders=content-type;host;x-amz-date;x-amz-target," in theirs


def test_the_cached_signing_key_follows_new_credentials_and_a_new_day(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given one signer used for three requests: credentials rotated between
    # the first two (same day), the day changed before the third
    old, new = Credentials("AKIDOLD", "old-secret"), Credentials("AKIDNEW", "new-secret")
    tomorrow = INSTANT + datetime.timedelta(seconds=5)
    clock = [INSTANT.timestamp()]
    signer = SigV4Signer(service="iotdata", region="eu-west-1", clock=lambda: clock[0])

    def sign(credentials: Credentials) -> str:
        return signer.sign(
            credentials.get_frozen_credentials(),
            method="POST",
            host="h.example.com",
            path="/topics/a",
            query="qos=0",
            headers={},
            body=b"x",
        )["Authorization"]

    first, second = sign(old), sign(new)
    clock[0] = tomorrow.timestamp()
    third = sign(new)

    # Then each equals botocore's signature for its own credentials and day
    def reference(credentials: Credentials, at: datetime.datetime) -> str:
        return _botocore_authorization(
            monkeypatch,
            credentials,
            service="iotdata",
            url="https://h.example.com/topics/a?qos=0",
            headers={},
            body=b"x",
            at=at,
        )

    assert first == reference(old, INSTANT)
    assert second == reference(new, INSTANT)
    assert third == reference(new, tomorrow)


# --- against a local HTTP/1.1 server ----------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections = 0
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses: list[int] = []  # answers to give, in order; then 200
        self.close_after_each = False  # close the socket after answering (no header)
        self.lock = threading.Lock()
        self.closed = threading.Semaphore(0)  # released once per connection closed

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)  # the socket is closed once this returns
        self.closed.release()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.requests.append((self.path, dict(self.headers), body))
            status = self.server.statuses.pop(0) if self.server.statuses else 200
        answer = b'{"message":"OK"}' if status == 200 else b'{"message":"busy"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        if status != 200:
            self.send_header("x-amzn-ErrorType", "InternalFailureException")
        self.end_headers()
        self.wfile.write(answer)
        self.wfile.flush()
        if self.server.close_after_each:
            self.close_connection = True

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    running = _Server()
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server_close()
    thread.join(timeout=10)


def _session() -> boto3.session.Session:
    return boto3.session.Session(
        region_name="eu-west-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="s3cr3t"
    )


def _fast(url: str, pauses: list[float], config: Config | None = None) -> FastPublish:
    session = _session()
    client = session.client("iot-data", endpoint_url=url, config=config)
    return FastPublish(client, session.get_credentials, sleep=pauses.append)


def test_calls_reuse_one_kept_alive_connection_and_send_what_was_signed(server: _Server) -> None:
    # Given FastPublish pointed at a local HTTP/1.1 server
    pauses: list[float] = []
    fast = _fast(server.url, pauses)

    # When it publishes 20 times one after the other
    for n in range(20):
        fast.publish(topic=f"app/st/user/u{n}/notifications", payload=b"hello")
    fast.close()

    # Then one connection carried them all, each with its body and signature
    assert server.connections == 1
    assert len(server.requests) == 20
    path, headers, body = server.requests[3]
    assert path == "/topics/app%2Fst%2Fuser%2Fu3%2Fnotifications?qos=0"
    assert body == b"hello"
    assert headers["Host"] == server.url.removeprefix("http://")
    assert "Credential=AKIDEXAMPLE/" in headers["Authorization"]
    assert pauses == []


def test_a_connection_the_server_closed_while_idle_is_dropped_not_retried(
    server: _Server,
) -> None:
    # Given a server that closes each connection after answering, without
    # saying so in a header (as an idle timeout does)
    server.close_after_each = True
    pauses: list[float] = []
    fast = _fast(server.url, pauses)

    # When publishing three times, each once the server has closed the last connection
    for _ in range(3):
        fast.publish(topic="a/b", payload=b"x")
        assert server.closed.acquire(timeout=10)
    fast.close()

    # Then each call found the closed connection before using it: a new
    # connection each, no failed attempt and no retry pause
    assert server.connections == 3
    assert len(server.requests) == 3
    assert pauses == []


def test_5xx_answers_are_retried_as_the_clients_retry_config_says(server: _Server) -> None:
    # Given a client configured for 5 attempts and a server failing 4 times
    server.statuses = [500, 503, 500, 502]
    pauses: list[float] = []
    config = Config(retries={"mode": "standard", "total_max_attempts": 5})
    fast = _fast(server.url, pauses, config)

    # When publishing once
    assert fast.publish(topic="a/b", payload=b"x") == {}
    fast.close()

    # Then the fifth attempt succeeded after four jittered pauses (at most
    # 50 ms x 2^n: botocore's standard backoff for a non-throttling error)
    assert len(server.requests) == 5
    assert len(pauses) == 4
    assert all(0 <= pause <= 0.05 * 2**n for n, pause in enumerate(pauses))


def test_an_error_that_stays_is_the_clients_modelled_exception(server: _Server) -> None:
    server.statuses = [500] * 10
    pauses: list[float] = []
    session = _session()
    client = session.client("iot-data", endpoint_url=server.url)
    fast = FastPublish(client, session.get_credentials, sleep=pauses.append)
    with pytest.raises(client.exceptions.InternalFailureException) as caught:
        fast.publish(topic="a/b", payload=b"x")
    fast.close()
    assert isinstance(caught.value, ClientError)
    assert caught.value.response["Error"]["Message"] == "busy"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert len(server.requests) == 3  # standard mode's default


def test_a_refused_connection_is_botocores_endpoint_connection_error() -> None:
    # Given an endpoint where nothing listens (a port bound, then released)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pauses: list[float] = []
    fast = _fast(f"http://127.0.0.1:{port}", pauses)

    # Then publishing raises what botocore raises, after its retries
    with pytest.raises(EndpointConnectionError):
        fast.publish(topic="a/b", payload=b"x")
    assert len(pauses) == 2


def test_with_a_proxy_the_clients_own_http_session_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an iot-data client configured with a proxy
    session = _session()
    client = session.client(
        "iot-data",
        endpoint_url="https://data.example.invalid",
        config=Config(proxies={"https": "http://proxy.example.invalid:3128"}),
    )
    sent: list[AWSPreparedRequest] = []

    def send(request: AWSPreparedRequest) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, {}, _Raw(b"{}"))

    monkeypatch.setattr(client._endpoint.http_session, "send", send)
    endpoint = SignedEndpoint(client, session.get_credentials)

    # When publishing through it
    FastPublish(client, session.get_credentials).publish(topic="a/b", payload=b"x")

    # Then the lean pool is not used: botocore's session (which speaks to the proxy) sent it
    assert endpoint.lean is False
    assert [request.url for request in sent] == ["https://data.example.invalid/topics/a%2Fb?qos=0"]


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, *_: Any, **__: Any) -> Any:
        yield self._body


def test_batch_write_sends_dynamodb_json_and_returns_the_unprocessed_items_plain() -> None:
    # Given a DynamoDB client whose before-send hook answers with one item unprocessed
    session = _session()
    client = session.client("dynamodb", endpoint_url="https://ddb.example.invalid")
    seen: list[AWSPreparedRequest] = []
    left = (
        b'{"UnprocessedItems":{"inbox":'
        b'[{"PutRequest":{"Item":{"userId":{"S":"bob"},"n":{"N":"7"}}}}]}}'
    )

    def hook(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        seen.append(request)
        return AWSResponse(request.url, 200, {}, _Raw(left))

    client.meta.events.register("before-send.dynamodb.BatchWriteItem", hook)
    writer = FastBatchWrite(client, session.get_credentials)

    # When writing two flat items
    unprocessed = writer.write("inbox", [{"userId": "al", "n": 1}, {"userId": "bob", "n": 7}])

    # Then the request is BatchWriteItem in DynamoDB JSON, and the answer is plain again
    [request] = seen
    assert request.headers["X-Amz-Target"] == "DynamoDB_20120810.BatchWriteItem"
    assert request.headers["Content-Type"] == "application/x-amz-json-1.0"
    assert request.body == (
        b'{"RequestItems":{"inbox":['
        b'{"PutRequest":{"Item":{"userId":{"S":"al"},"n":{"N":"1"}}}},'
        b'{"PutRequest":{"Item":{"userId":{"S":"bob"},"n":{"N":"7"}}}}]}}'
    )
    assert unprocessed == [{"userId": "bob", "n": 7}]
    with pytest.raises(TypeError):
        writer.write("inbox", [{"userId": "al", "flag": True}])


@pytest.mark.parametrize(
    "answer",
    [
        b"<html>gateway</html>",
        b"[1, 2]",
        b'{"UnprocessedItems": {"inbox": [{"PutRequest": {"Item": {"on": {"BOOL": true}}}}]}}',
        b'{"UnprocessedItems": {"inbox": [{"DeleteRequest": {}}]}}',
    ],
)
def test_an_answer_not_shaped_like_batch_write_items_fails_the_batch_not_the_fan_out(
    answer: bytes,
) -> None:
    # Given a DynamoDB that answers 200 with something that is not BatchWriteItem's JSON
    session = _session()
    client = session.client("dynamodb", endpoint_url="https://ddb.example.invalid")

    def hook(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, 200, {}, _Raw(answer))

    client.meta.events.register("before-send.dynamodb.BatchWriteItem", hook)
    writer = FastBatchWrite(client, session.get_credentials)
    # Then the writer raises botocore's parser error, a BotoCoreError
    with pytest.raises(BotoCoreError, match="unexpected BatchWriteItem answer"):
        writer.write("inbox", [{"userId": "al", "n": 1}])
    # And an inbox over it fails the batch's users, one reason each, without raising
    table = boto3.resource(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url="https://ddb.example.invalid",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
    ).Table("inbox")
    table.meta.client.meta.events.register("before-send.dynamodb.BatchWriteItem", hook)
    inbox = Inbox(
        table, batch_write=FastBatchWrite(table.meta.client, session.get_credentials).write
    )
    note = Notification.create(title="t")
    failed = inbox.put_batch([("al", note), ("bob", note)])
    assert sorted(failed) == ["al", "bob"]
    assert all("unexpected BatchWriteItem answer" in reason for reason in failed.values())


class _RecordingSocket:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sent.append(bytes(data))


@pytest.mark.parametrize("body", [b'{"v":1}', b""])
def test_a_request_leaves_in_one_send(body: bytes) -> None:
    # Given a connection (its socket recording what it is asked to send)
    connection = _HTTPConnection("h.example", 80)
    sock = _RecordingSocket()
    connection.sock = sock  # type: ignore[assignment]

    # When a request is sent
    connection.send_request("POST", "/topics/a?qos=0", {"Host": "h.example"}, body)

    # Then header block and body went in one send: one segment, one wake-up far side
    [sent] = sock.sent
    head, _, rest = sent.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /topics/a?qos=0 HTTP/1.1\r\n")
    assert b"\r\nHost: h.example\r\n" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert rest == body
