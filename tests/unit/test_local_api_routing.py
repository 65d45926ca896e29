"""The local API tells a wrong method (405) from an unknown route (404), beside the web page.

The page's catch-all ``GET /{path}`` used to answer for every API path too:
``GET /task`` (a POST route) was a 404 "no such page", ``HEAD /token`` a
404 although the 405's ``Allow`` listed HEAD, and ``POST /no/such/route`` a
405 with ``Allow: GET,HEAD``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from iotnotify_local.api import LocalApi, Route, build_app
from iotnotify_local.authorizer import CognitoAuthorizer


def ok(_event: Mapping[str, Any], _context: Any) -> Mapping[str, Any]:
    return {"statusCode": 200, "body": "{}"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    (tmp_path / "index.html").write_text("<!doctype html><title>page</title>")
    (tmp_path / "app.js").write_text("// the page")
    api = LocalApi(
        routes=[
            Route("GET", "/token", ok, "none"),
            Route("POST", "/task", ok, "none"),
            Route("GET", "/chats", ok, "none"),
            Route("POST", "/chats", ok, "none"),
            Route("POST", "/chats/{room}/members", ok, "none"),
        ],
        authorizer=CognitoAuthorizer(
            jwks_url="http://127.0.0.1:9/jwks.json", issuer="https://issuer", audience="client"
        ),
        web_dir=tmp_path,
    )
    async with TestClient(TestServer(build_app(api))) as test_client:
        yield test_client


async def assert_json_error(response: Any, status: int, code: str) -> None:
    assert response.status == status
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    if response.method != "HEAD":
        body = await response.json()
        assert body["error"] == code
        assert body["message"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/task", {"POST", "OPTIONS"}),
        ("HEAD", "/task", {"POST", "OPTIONS"}),
        ("HEAD", "/token", {"GET", "OPTIONS"}),
        ("PUT", "/token", {"GET", "OPTIONS"}),
        ("DELETE", "/chats", {"GET", "POST", "OPTIONS"}),
        ("GET", "/chats/lobby/members", {"POST", "OPTIONS"}),
    ],
)
async def test_a_method_an_api_route_does_not_take_is_a_405_naming_the_ones_it_does(
    client: TestClient[Any, Any], method: str, path: str, allowed: set[str]
) -> None:
    response = await client.request(method, path)
    await assert_json_error(response, 405, "method_not_allowed")
    assert set(response.headers["Allow"].split(",")) == allowed


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "GET", "OPTIONS"])
async def test_any_method_on_an_unknown_path_is_a_404(
    client: TestClient[Any, Any], method: str
) -> None:
    response = await client.request(method, "/no/such/route")
    await assert_json_error(response, 404, "not_found")


async def test_the_page_and_the_routes_are_still_served(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/")).status == 200
    assert (await client.get("/app.js")).status == 200
    assert (await client.head("/app.js")).status == 200
    assert (await client.get("/token")).status == 200
    assert (await client.post("/task")).status == 200
    assert (await client.post("/chats/lobby/members")).status == 200
    assert (await client.options("/task")).status == 204
    # a page is not posted to
    await assert_json_error(await client.post("/"), 405, "method_not_allowed")
    await assert_json_error(await client.post("/config.json"), 405, "method_not_allowed")


async def test_the_sign_in_proxy_takes_post_only(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>page</title>")
    api = LocalApi(
        routes=[],
        authorizer=CognitoAuthorizer(
            jwks_url="http://127.0.0.1:9/jwks.json", issuer="https://issuer", audience="client"
        ),
        web_dir=tmp_path,
        cognito_url="http://127.0.0.1:9/",
    )
    async with TestClient(TestServer(build_app(api))) as client:
        for path in ("/cognito/", "/cognito"):
            response = await client.get(path)
            await assert_json_error(response, 405, "method_not_allowed")
            assert response.headers["Allow"] == "POST"


def who(event: Mapping[str, Any], _context: Any) -> Mapping[str, Any]:
    return {"statusCode": 200, "body": json.dumps(event["requestContext"]["identity"]["userArn"])}


async def test_two_authorization_headers_are_refused_whichever_comes_first() -> None:
    # One credential per request: the authorizer read the first header while
    # the function's event carried the last (as API Gateway passes it), so
    # which one counted depended on the layer. An IAM route signed in the first
    # header went through with anything in the second.
    api = LocalApi(
        routes=[
            Route("GET", "/mine", ok, "cognito"),
            Route("POST", "/backend", who, "iam"),
        ],
        authorizer=CognitoAuthorizer(
            jwks_url="http://127.0.0.1:9/jwks.json", issuer="https://issuer", audience="client"
        ),
        iam_verifier=lambda *_args: "arn:aws:iam::123456789012:user/game-server",
    )
    signed = "AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/execute-api/aws4_request"
    async with TestClient(TestServer(build_app(api))) as client:
        assert (await client.post("/backend", headers={"Authorization": signed})).status == 200
        for path, method, status in (("/backend", "POST", 403), ("/mine", "GET", 401)):
            reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
            request = (
                f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {signed}\r\n"
                "Authorization: something else\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            writer.write(request.encode())
            answer = await reader.read()
            writer.close()
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(f"HTTP/1.1 {status} ".encode()), head
            assert b"Access-Control-Allow-Origin: *" in head
            assert "more than one Authorization header" in json.loads(body)["message"]


@pytest.mark.parametrize("path", ["/", "/index.html", "/app.js", "/config.json"])
async def test_the_page_cannot_be_framed_or_sniffed(
    client: TestClient[Any, Any], path: str
) -> None:
    # Any site the person visits could otherwise frame the signed-in page
    # and trick clicks onto it (clickjacking); a meta CSP cannot forbid
    # framing (frame-ancestors is ignored there: CSP Level 3, "frame-ancestors").
    response = await client.get(path)
    assert response.status == 200
    assert response.headers["X-Frame-Options"] == "DENY"
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in [part.strip() for part in policy.split(";")]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


async def test_a_required_header_or_query_parameter_missing_or_blank_is_api_gateways_400() -> None:
    # API Gateway's request validator refuses a method's required parameters
    # when missing or blank, before the function runs ("Request validation in
    # API Gateway"); the local API answered such calls from the function
    # (POST /notify/key without x-api-key: a 401 locally, a 400 on AWS).
    called: list[str] = []

    def handler(event: Mapping[str, Any], _context: Any) -> Mapping[str, Any]:
        called.append(event["path"])
        return {"statusCode": 200, "body": "{}"}

    api = LocalApi(
        routes=[
            Route("POST", "/notify/key", handler, "none", required_headers=("x-api-key",)),
            Route("GET", "/presence", handler, "none", required_query=("users",)),
        ],
        authorizer=CognitoAuthorizer(
            jwks_url="http://127.0.0.1:9/jwks.json", issuer="https://issuer", audience="client"
        ),
    )
    async with TestClient(TestServer(build_app(api))) as client:
        for headers in ({}, {"x-api-key": ""}, {"x-api-key": "  "}):
            response = await client.post("/notify/key", headers=headers)
            await assert_json_error(response, 400, "bad_request")
            assert (await response.json())["message"] == (
                "Missing required request parameters: [x-api-key]"
            )
        for query in ("", "?users=", "?other=1"):
            response = await client.get(f"/presence{query}")
            await assert_json_error(response, 400, "bad_request")
            assert "[users]" in (await response.json())["message"]
        assert called == []
        assert (await client.post("/notify/key", headers={"X-Api-Key": "k"})).status == 200
        assert (await client.get("/presence?users=a")).status == 200
        assert called == ["/notify/key", "/presence"]


@pytest.mark.parametrize("path", ["/app.js%00", "/%00", "/a%00b/app.js"])
async def test_a_page_path_with_a_nul_is_a_404_not_a_500(
    client: TestClient[Any, Any], path: str
) -> None:
    # The path is resolved on disk, where a NUL raised ValueError: a 500 and a traceback.
    response = await client.get(path)
    await assert_json_error(response, 404, "not_found")


async def test_an_iam_route_called_without_a_signature_is_api_gateways_404() -> None:
    # API Gateway answers a request that carries no signature (no
    # Authorization header, no X-Amz-Signature) on an IAM-authorised method
    # with MISSING_AUTHENTICATION_TOKEN, which the stack's gateway response
    # makes the 404 of an unknown route (infra/iotnotify_infra/api.py); the
    # local API passed it to the function, which said 401.
    called: list[str] = []

    def handler(event: Mapping[str, Any], _context: Any) -> Mapping[str, Any]:
        called.append(event["path"])
        return {"statusCode": 401, "body": "{}"}

    api = LocalApi(
        routes=[Route("POST", "/notify", handler, "iam")],
        authorizer=CognitoAuthorizer(
            jwks_url="http://127.0.0.1:9/jwks.json", issuer="https://issuer", audience="client"
        ),
    )
    async with TestClient(TestServer(build_app(api))) as client:
        response = await client.post("/notify", json={"users": ["u"], "title": "t"})
        await assert_json_error(response, 404, "not_found")
        assert "without a SigV4 signature" in (await response.json())["message"]
        assert called == []
        # A request that does carry credentials is judged by them, not hidden as a 404.
        response = await client.post("/notify", headers={"Authorization": "Bearer x"})
        assert response.status != 404
