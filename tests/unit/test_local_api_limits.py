"""The local HTTP API answers as API Gateway + Lambda would at their limits."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import threading
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from iotnotify_local.api import (
    MAX_HEADER_BYTES,
    MAX_LAMBDA_REQUEST_BYTES,
    MAX_LAMBDA_RESPONSE_BYTES,
    MAX_REQUEST_BYTES,
    LocalApi,
    Route,
    build_app,
    build_runner,
)
from iotnotify_local.authorizer import CognitoAuthorizer

release = threading.Event()


def sized(event: Mapping[str, Any], _context: Any) -> Mapping[str, Any]:
    """A function whose JSON response has the number of bytes the query asks for."""
    wanted = int(event["queryStringParameters"]["bytes"])
    empty = {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": ""}
    overhead = len(json.dumps(empty, separators=(",", ":")))
    return {**empty, "body": "x" * (wanted - overhead)}


def echo_length(event: Mapping[str, Any], _context: Any) -> Mapping[str, Any]:
    return {"statusCode": 200, "body": json.dumps({"length": len(event["body"] or "")})}


def echo_query(event: Mapping[str, Any], _context: Any) -> Mapping[str, Any]:
    wanted = ("queryStringParameters", "multiValueQueryStringParameters")
    return {"statusCode": 200, "body": json.dumps({k: event[k] for k in wanted})}


def echo_headers(event: Mapping[str, Any], _context: Any) -> Mapping[str, Any]:
    wanted = ("headers", "multiValueHeaders")
    named = {k: {h: v for h, v in event[k].items() if h.lower() == "x-api-key"} for k in wanted}
    return {"statusCode": 200, "body": json.dumps(named)}


def slow(_event: Mapping[str, Any], _context: Any) -> Mapping[str, Any]:
    release.wait(30)
    return {"statusCode": 200, "body": "{}"}


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    api = LocalApi(
        routes=[
            Route("GET", "/sized", sized, "none"),
            Route("POST", "/echo", echo_length, "none"),
            Route("GET", "/slow", slow, "none"),
            Route("GET", "/query", echo_query, "none"),
            Route("GET", "/headers", echo_headers, "none"),
        ],
        authorizer=CognitoAuthorizer(
            jwks_url="http://127.0.0.1:9/jwks.json", issuer="https://issuer", audience="client"
        ),
        integration_timeout=0.5,  # AWS's is 29 s; the behaviour is the same
    )
    release.clear()
    async with TestClient(TestServer(build_app(api))) as test_client:
        yield test_client
    release.set()


async def assert_json_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status == status
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    body = await response.json()
    assert body["error"] == code
    assert body["message"]
    return dict(body)


async def test_a_response_over_6_mb_is_a_502_json_error(client: TestClient[Any, Any]) -> None:
    at_limit = await client.get(f"/sized?bytes={MAX_LAMBDA_RESPONSE_BYTES}")
    assert at_limit.status == 200
    assert len(await at_limit.read()) > 6_000_000

    over = await client.get(f"/sized?bytes={MAX_LAMBDA_RESPONSE_BYTES + 1}")
    body = await assert_json_error(over, 502, "bad_gateway")
    assert "6291456" in body["message"]


async def test_a_request_over_10_mb_is_a_413_json_error(client: TestClient[Any, Any]) -> None:
    over = await client.post("/echo", data=b"a" * (MAX_REQUEST_BYTES + 1))
    body = await assert_json_error(over, 413, "payload_too_large")
    assert "API Gateway" in body["message"]


async def test_an_event_over_lambdas_6_mb_is_a_413_json_error(
    client: TestClient[Any, Any],
) -> None:
    # Lambda takes at most 6 MB per synchronous invocation, the event JSON
    # (body, headers and all); over it API Gateway answers 413 "Request Too
    # Long" although its own limit is 10 MB. Locally a 9 MB body reached the
    # function, so a function taking large bodies worked here and not on AWS.
    fits = await client.post("/echo", data=b"a" * (MAX_LAMBDA_REQUEST_BYTES - 4096))
    assert fits.status == 200
    assert json.loads(await fits.read())["length"] == MAX_LAMBDA_REQUEST_BYTES - 4096

    nine_mb = await client.post("/echo", data=b"a" * (9 * 1024 * 1024))
    body = await assert_json_error(nine_mb, 413, "payload_too_large")
    assert "Lambda" in body["message"]


async def test_a_function_past_the_integration_timeout_is_a_504_json_error(
    client: TestClient[Any, Any],
) -> None:
    response = await client.get("/slow")
    await assert_json_error(response, 504, "gateway_timeout")


async def test_a_repeated_query_parameter_passes_its_last_value_as_api_gateway_does(
    client: TestClient[Any, Any],
) -> None:
    # API Gateway REST proxy events: queryStringParameters holds the last value
    # of a repeated key, multiValueQueryStringParameters all of them (developer
    # guide, "Support for multi-value headers and query string parameters").
    # Locally the first one was passed, so `GET /token?rooms=a&rooms=b` meant a.
    response = await client.get("/query?rooms=lobby&rooms=secret&limit=5")
    assert response.status == 200
    assert json.loads(await response.text()) == {
        "queryStringParameters": {"rooms": "secret", "limit": "5"},
        "multiValueQueryStringParameters": {"rooms": ["lobby", "secret"], "limit": ["5"]},
    }


async def test_a_repeated_header_passes_its_last_value_as_api_gateway_does(
    client: TestClient[Any, Any],
) -> None:
    # The same rule as for query strings: `headers` holds the last value of a
    # repeated header, `multiValueHeaders` all of them, one entry per header
    # whatever the case of its name. Locally the first value was passed (and
    # one entry per spelling), so `x-api-key: wrong` followed by the right key
    # was refused here and accepted on AWS, and the other way round.
    # (aiohttp's client would merge the two, so the request is written by hand)
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(
        b"GET /headers HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: first\r\n"
        b"x-api-key: second\r\nConnection: close\r\n\r\n"
    )
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body) == {
        "headers": {"X-Api-Key": "second"},
        "multiValueHeaders": {"X-Api-Key": ["first", "second"]},
    }


async def test_a_request_line_and_headers_over_10240_bytes_are_a_431_json_error(
    client: TestClient[Any, Any],
) -> None:
    # API Gateway REST: "Total combined size of request line and header
    # values", 10240 bytes. Each header here is under the parser's 8 KB per
    # field, so only the total can refuse them (locally 160 KB went through).
    def head_bytes(response: Any) -> int:
        values = response.request_info.headers.values()
        return len("GET /query?x=1 HTTP/1.1") + sum(len(v) for v in values)

    probe = await client.get("/query?x=1", headers={"X-A": "a" * 4000, "X-B": "b" * 4000})
    assert probe.status == 200
    room = MAX_HEADER_BYTES - head_bytes(probe)
    at_limit = await client.get(
        "/query?x=1", headers={"X-A": "a" * 4000, "X-B": "b" * (4000 + room)}
    )
    assert head_bytes(at_limit) == MAX_HEADER_BYTES
    assert at_limit.status == 200

    over = await client.get("/query?x=1", headers={"X-A": "a" * 4000, "X-B": "b" * (4001 + room)})
    body = await assert_json_error(over, 431, "request_header_fields_too_large")
    assert str(MAX_HEADER_BYTES) in body["message"]
    many = await client.get("/query?x=1", headers={f"X-{n}": "v" * 8000 for n in range(20)})
    await assert_json_error(many, 431, "request_header_fields_too_large")


def echo_body(event: Mapping[str, Any], _context: Any) -> Mapping[str, Any]:
    return {
        "statusCode": 200,
        "body": json.dumps({"body": event["body"], "isBase64Encoded": event["isBase64Encoded"]}),
    }


async def test_a_compressed_body_reaches_the_function_as_sent_as_api_gateway_passes_it() -> None:
    # API Gateway REST without content encoding enabled passes a request
    # payload through as sent (developer guide, "Content encoding for REST
    # APIs"); aiohttp inflated it, so a gzip body was JSON to the function
    # locally only, a 200 MB gzip bomb was inflated up to the 10 MB cap, and
    # a body that was not gzip at all was a 500 with a traceback in the log.
    api = LocalApi(
        routes=[Route("POST", "/echo", echo_body, "none")],
        authorizer=CognitoAuthorizer(
            jwks_url="http://127.0.0.1:9/jwks.json", issuer="https://issuer", audience="client"
        ),
    )
    runner = build_runner(api)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/echo"
    packed = gzip.compress(b'{"user": "alice", "title": "t"}')
    try:
        async with aiohttp.ClientSession() as http:
            for sent in (packed, b"not gzip at all"):
                headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
                async with http.post(url, data=sent, headers=headers) as response:
                    assert response.status == 200
                    event = json.loads(await response.text())
                received = (
                    base64.b64decode(event["body"])
                    if event["isBase64Encoded"]
                    else event["body"].encode()
                )
                assert received == sent
    finally:
        await runner.cleanup()
