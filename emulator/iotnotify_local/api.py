"""The local HTTP API: API Gateway's job, done by aiohttp in front of the handlers.

Each route builds the REST proxy event API Gateway would send, after the
same authorisation API Gateway would do (a Cognito authorizer on user
routes, SigV4 on the IAM route), and calls the very handler function that
runs on Lambda. Handlers are synchronous (boto3), so they run in a thread
pool and never block the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from iotnotify_local.authorizer import CognitoAuthorizer, TokenRejected

__all__ = ["IamVerifier", "LocalApi", "Route", "build_app"]

LambdaHandler = Callable[[Mapping[str, Any], Any], Mapping[str, Any]]
# Returns the caller's ARN for a valid SigV4-signed request, raises otherwise.
IamVerifier = Callable[[str, str, Mapping[str, str], bytes], str]

_CORS: Final = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": (
        "Authorization,Content-Type,X-Amz-Date,X-Amz-Security-Token,X-Api-Key"
    ),
    "Access-Control-Allow-Methods": "GET,POST,OPTIONS",
    "Access-Control-Max-Age": "600",
}


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: LambdaHandler
    auth: str  # "cognito", "iam" (SigV4, as API Gateway's AWS_IAM) or "none"


@dataclass
class LocalApi:
    routes: list[Route]
    authorizer: CognitoAuthorizer
    iam_verifier: IamVerifier | None = None
    stage: str = "local"
    web_dir: Path | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=8, thread_name_prefix="lambda")
    )


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=_CORS)


async def _event(request: web.Request, route: Route, context: dict[str, Any]) -> dict[str, Any]:
    body = await request.read()
    text: str | None
    try:
        text = body.decode("utf-8") if body else None
        encoded = False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    return {
        "resource": route.path,
        "path": request.path,
        "httpMethod": request.method,
        "headers": dict(request.headers),
        "multiValueHeaders": {k: request.headers.getall(k) for k in request.headers},
        "queryStringParameters": dict(request.query) or None,
        "multiValueQueryStringParameters": {k: request.query.getall(k) for k in request.query}
        or None,
        # API Gateway passes {name} path segments here (None when there are none).
        "pathParameters": dict(request.match_info) or None,
        "body": text,
        "isBase64Encoded": encoded,
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "httpMethod": request.method,
            "path": request.path,
            "resourcePath": route.path,
            **context,
        },
    }


def _lambda_view(api: LocalApi, route: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def view(request: web.Request) -> web.Response:
        identity: dict[str, Any] = {"sourceIp": request.remote, "userArn": None}
        context: dict[str, Any] = {"stage": api.stage, "identity": identity}
        if route.auth == "cognito":
            try:
                claims = api.authorizer.claims(request.headers.get("Authorization"))
            except TokenRejected as exc:
                return _error(401, "unauthorized", str(exc))
            context["authorizer"] = {"claims": {k: str(v) for k, v in claims.items()}}
        elif route.auth == "iam" and request.headers.get("Authorization", "").startswith(
            "AWS4-HMAC-SHA256"
        ):
            if api.iam_verifier is None:
                return _error(403, "forbidden", "IAM authorisation is not available locally")
            body = await request.read()
            try:
                identity["userArn"] = api.iam_verifier(
                    request.method, str(request.url), dict(request.headers), body
                )
            except Exception as exc:  # the verifier's refusal, whatever its type
                return _error(403, "forbidden", f"signature rejected: {exc}")
        event = await _event(request, route, context)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(api.executor, route.handler, event, None)
        headers = {**_CORS, **dict(result.get("headers") or {})}
        return web.Response(
            status=int(result["statusCode"]), text=str(result.get("body") or ""), headers=headers
        )

    return view


async def _preflight(_: web.Request) -> web.Response:
    return web.Response(status=204, headers=_CORS)


def build_app(api: LocalApi) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    for route in api.routes:
        app.router.add_route(route.method, route.path, _lambda_view(api, route))
    paths = {route.path for route in api.routes}
    for path in paths:
        app.router.add_route("OPTIONS", path, _preflight)

    async def config_json(_: web.Request) -> web.Response:
        return web.Response(
            text=json.dumps(api.config, indent=2),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    app.router.add_get("/config.json", config_json)
    if api.web_dir is not None and (api.web_dir / "index.html").is_file():
        web_dir = api.web_dir

        async def index(_: web.Request) -> web.FileResponse:
            return web.FileResponse(web_dir / "index.html")

        app.router.add_get("/", index)
        app.router.add_static("/", web_dir, show_index=False)
    else:

        async def placeholder(_: web.Request) -> web.Response:
            return web.Response(
                text="<!doctype html><title>iotnotify</title><p>iotnotify local is running. "
                "The web page is not built yet.</p>",
                content_type="text/html",
            )

        app.router.add_get("/", placeholder)

    async def close_executor(_: web.Application) -> None:
        api.executor.shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(close_executor)
    return app
