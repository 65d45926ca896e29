"""The local HTTP API: API Gateway's job, done by aiohttp in front of the handlers.

Each route builds the REST proxy event API Gateway would send, after the
same authorisation API Gateway would do (a Cognito authorizer on user
routes, SigV4 on the IAM route), and calls the very handler function that
runs on Lambda. Handlers are synchronous (boto3), so they run in a thread
pool and never block the event loop.

The limits of the real path hold here too, so a test sees what AWS would do:

* a request body over 10 MB (API Gateway REST "API payload size") -> 413;
* a request line and header values over 10,240 bytes together (API
  Gateway REST "Total combined size of request line and header values")
  -> 431, although each header is within what the HTTP parser reads;
* an event (the JSON Lambda is invoked with: body, headers and all) over
  6 MB, Lambda's limit for a synchronous invocation's request -> 413, as
  API Gateway answers ("Request Too Long"), although its own limit is 10 MB;
* a function that runs past the 29 s integration timeout -> 504 (API
  Gateway gives up; the function itself runs on, as on Lambda);
* a function response over 6 MB, measured as the JSON document the Lambda
  runtime sends back (Lambda Invoke API: "For synchronous invocations, the
  maximum payload size is 6 MB") -> 502, API Gateway's answer when the
  invocation fails.

Sources: API Gateway developer guide, "Quotas for configuring and running a
REST API" (api-gateway-execution-service-limits-table.html), and the Lambda
developer guide, "Lambda quotas" (gettingstarted-limits.html). All three
answer with this API's JSON error shape (``{"error", "message"}``) and CORS
headers, where AWS would answer ``{"message": ...}``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from iotnotify_emulator.http_guard import (
    GuardedRunner,
    ServerLimits,
    error_middleware,
    read_body,
)
from iotnotify_local.authorizer import CognitoAuthorizer, TokenRejected
from iotnotify_local.cognito_proxy import COGNITO_PATH, add_cognito_proxy
from iotnotify_local.iam_auth import IamRejected

__all__ = [
    "INTEGRATION_TIMEOUT_S",
    "MAX_HEADER_BYTES",
    "MAX_LAMBDA_REQUEST_BYTES",
    "MAX_LAMBDA_RESPONSE_BYTES",
    "MAX_REQUEST_BYTES",
    "IamVerifier",
    "LocalApi",
    "Route",
    "build_app",
    "build_runner",
]

MAX_REQUEST_BYTES: Final = 10 * 1024 * 1024  # API Gateway REST API payload size
# API Gateway REST: total combined size of request line and header values.
MAX_HEADER_BYTES: Final = 10240
MAX_LAMBDA_REQUEST_BYTES: Final = 6 * 1024 * 1024  # Lambda synchronous request payload
MAX_LAMBDA_RESPONSE_BYTES: Final = 6 * 1024 * 1024  # Lambda synchronous response payload
INTEGRATION_TIMEOUT_S: Final = 29.0  # API Gateway REST integration timeout (default maximum)

LambdaHandler = Callable[[Mapping[str, Any], Any], Mapping[str, Any]]
# (method, url, headers, body, route path) -> the caller's ARN for a SigV4-signed
# request allowed to invoke the route; raises IamRejected otherwise.
IamVerifier = Callable[[str, str, Mapping[str, str], bytes, str], str]

# What the page and config.json are served with. A meta CSP (index.html)
# cannot forbid framing: frame-ancestors is ignored in a <meta> (CSP Level 3,
# "frame-ancestors"; MDN), so without these any site the person visits could
# frame the signed-in page and trick clicks onto it (clickjacking).
# X-Frame-Options for browsers without CSP 2; nosniff so nothing served here
# is ever run as a type it is not; no Referer leaves the page.
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

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
    # The method's required request parameters (the CDK route's
    # ``request_parameters`` set to True): API Gateway's request validator
    # answers 400 when one is missing or blank, before the function runs
    # (API Gateway developer guide, "Request validation in API Gateway").
    required_headers: tuple[str, ...] = ()
    required_query: tuple[str, ...] = ()

    def missing_parameters(self, request: web.Request) -> list[str]:
        """The required parameters ``request`` lacks or leaves blank, in declared order."""
        return [h for h in self.required_headers if not request.headers.get(h, "").strip()] + [
            q for q in self.required_query if not request.query.get(q, "").strip()
        ]


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
    limits: ServerLimits = field(default_factory=ServerLimits)
    # AWS's limits (module docstring); tests may shrink them.
    max_request_bytes: int = MAX_REQUEST_BYTES
    max_header_bytes: int = MAX_HEADER_BYTES
    max_event_bytes: int = MAX_LAMBDA_REQUEST_BYTES
    max_response_bytes: int = MAX_LAMBDA_RESPONSE_BYTES
    integration_timeout: float = INTEGRATION_TIMEOUT_S
    # moto's URL: POST /cognito/ forwards the sign-in calls to it (cognito_proxy).
    cognito_url: str | None = None


class _GatewayError(Exception):
    """What API Gateway answers instead of the function's response."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def _invoke(api: LocalApi, route: Route, event: Mapping[str, Any]) -> Mapping[str, Any]:
    """Run the handler as Lambda behind API Gateway would: timeout and size limits."""
    size = len(json.dumps(event, separators=(",", ":")).encode("utf-8"))
    if size > api.max_event_bytes:
        raise _GatewayError(
            413,
            "payload_too_large",
            f"the request is {size} bytes as the function's event, over Lambda's limit of "
            f"{api.max_event_bytes} bytes for a synchronous invocation; on AWS API Gateway "
            "answers 413 (Request Too Long)",
        )
    loop = asyncio.get_running_loop()
    call = loop.run_in_executor(api.executor, route.handler, event, None)
    try:
        # shield: on timeout the thread runs on (it cannot be stopped), as a
        # Lambda function does after API Gateway has given up on it.
        result = await asyncio.wait_for(asyncio.shield(call), api.integration_timeout)
    except TimeoutError as exc:
        raise _GatewayError(
            504,
            "gateway_timeout",
            f"the function did not answer within API Gateway's {api.integration_timeout:g} s "
            "integration timeout (Endpoint request timed out)",
        ) from exc
    size = len(json.dumps(result, separators=(",", ":")).encode("utf-8"))
    if size > api.max_response_bytes:
        raise _GatewayError(
            502,
            "bad_gateway",
            f"the function's response is {size} bytes, over Lambda's limit of "
            f"{api.max_response_bytes} bytes for a synchronous invocation; on AWS API Gateway "
            "answers 502",
        )
    return result


def _error(status: int, code: str, message: str) -> web.Response:
    """The API's one error shape, ``{"error", "message"}`` with CORS headers, for every status."""
    # Compact, as the handlers write theirs: one shape whichever layer answers.
    return web.json_response(
        {"error": code, "message": message},
        status=status,
        headers=_CORS,
        dumps=functools.partial(json.dumps, separators=(",", ":")),
    )


async def _event(
    request: web.Request,
    route: Route,
    context: dict[str, Any],
    body_timeout: float,
    max_bytes: int,
) -> dict[str, Any]:
    body = await read_body(request, body_timeout, max_bytes)
    text: str | None
    try:
        text = body.decode("utf-8") if body else None
        encoded = False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    spelling: dict[str, str] = {}  # lower-case name -> its first spelling
    for name in request.headers:
        spelling.setdefault(name.lower(), name)
    names = spelling.values()
    return {
        "resource": route.path,
        "path": request.path,
        "httpMethod": request.method,
        # API Gateway passes a repeated header's or query key's last value in
        # the single-value maps, every value in the multi-value ones
        # (developer guide, "Support for multi-value headers and query string
        # parameters"); dict() would keep the first. One entry per header,
        # under the first spelling of its name.
        "headers": {k: request.headers.getall(k)[-1] for k in names},
        "multiValueHeaders": {k: request.headers.getall(k) for k in names},
        "queryStringParameters": {k: request.query.getall(k)[-1] for k in request.query} or None,
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


def _head_bytes(request: web.Request) -> int:
    """Bytes of the request line (``METHOD target HTTP/x.y``) and of every header value.

    Cookies are left out: browsers send every cookie of the host whatever
    the port, so other local apps' cookies on 127.0.0.1 reach this API,
    while on AWS the API's own domain gets none (the API uses no cookies).
    """
    line = len(request.method) + len(request.raw_path.encode("utf-8")) + len("  HTTP/1.1")
    values = (v for name, v in request.raw_headers if name.lower() != b"cookie")
    return line + sum(len(value) for value in values)


def _lambda_view(api: LocalApi, route: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def view(request: web.Request) -> web.Response:
        too_large = _error(
            413,
            "payload_too_large",
            f"the request body is over API Gateway's limit of {api.max_request_bytes} bytes",
        )
        head = _head_bytes(request)
        if head > api.max_header_bytes:
            return _error(
                431,
                "request_header_fields_too_large",
                f"the request line and header values are {head} bytes, over API Gateway's "
                f"limit of {api.max_header_bytes} bytes",
            )
        if (request.content_length or 0) > api.max_request_bytes:
            return too_large
        try:
            return await invoke(request)
        except web.HTTPRequestEntityTooLarge:  # a chunked body that grew past the limit
            return too_large
        except _GatewayError as exc:
            return _error(exc.status, exc.code, exc.message)

    async def invoke(request: web.Request) -> web.Response:
        identity: dict[str, Any] = {"sourceIp": request.remote, "userArn": None}
        context: dict[str, Any] = {"stage": api.stage, "identity": identity}
        if route.auth != "none" and len(request.headers.getall("Authorization", ())) > 1:
            # One credential per request. The checks below read one header
            # while the function's event carries the last (as API Gateway
            # passes a repeated header), so which one counted would depend
            # on the layer; RFC 9110 allows no list in Authorization.
            status, code = (401, "unauthorized") if route.auth == "cognito" else (403, "forbidden")
            return _error(status, code, "more than one Authorization header; send one")
        if (
            route.auth == "iam"
            and "Authorization" not in request.headers
            and "X-Amz-Signature" not in request.query
        ):
            # No signature at all: API Gateway's MISSING_AUTHENTICATION_TOKEN,
            # which the stack's gateway response answers as the 404 of an
            # unknown route (infra/iotnotify_infra/api.py, _GATEWAY_ERRORS).
            return _error(
                404,
                "not_found",
                f"no such route: {request.method} {request.path} (a route authorised by "
                "IAM answers this too to a request without a SigV4 signature)",
            )
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
            body = await read_body(request, api.limits.body_timeout, api.max_request_bytes)
            try:
                # The headers as received (case-insensitive), never a plain dict copy.
                identity["userArn"] = api.iam_verifier(
                    request.method, str(request.url), request.headers, body, route.path
                )
            except IamRejected as exc:
                return _error(403, "forbidden", str(exc))
        missing = route.missing_parameters(request)
        if missing:
            # After authorisation, as on API Gateway; its own wording.
            return _error(
                400,
                "bad_request",
                f"Missing required request parameters: [{', '.join(missing)}]",
            )
        event = await _event(
            request, route, context, api.limits.body_timeout, api.max_request_bytes
        )
        result = await _invoke(api, route, event)
        headers = {**_CORS, **dict(result.get("headers") or {})}
        return web.Response(
            status=int(result["statusCode"]), text=str(result.get("body") or ""), headers=headers
        )

    return view


async def _preflight(_: web.Request) -> web.Response:
    return web.Response(status=204, headers=_CORS)


def _wrong_method(path: str, methods: Sequence[str]) -> Callable[[web.Request], Awaitable[Any]]:
    """A catch-all for ``path``: any method it does not serve is a 405 naming those it does.

    Registered after the path's real routes, so the router tries it before
    the page's catch-all ``GET /{path}`` (which would call ``GET /task`` a
    missing page) and before the unknown-path 404.
    """
    allowed = sorted(set(methods))

    async def refuse(request: web.Request) -> web.Response:
        raise web.HTTPMethodNotAllowed(
            request.method,
            allowed,
            reason=f"{path} takes {', '.join(allowed)}, not {request.method}",
        )

    return refuse


def build_app(api: LocalApi) -> web.Application:
    # Every error, from a handler or from aiohttp's router (404, 405, 413),
    # leaves through _error; the runner renders parser errors (400, 431) alike.
    app = web.Application(
        client_max_size=api.max_request_bytes, middlewares=[error_middleware(_error)]
    )
    for route in api.routes:
        app.router.add_route(route.method, route.path, _lambda_view(api, route))
    if api.cognito_url is not None:
        add_cognito_proxy(app, moto_url=api.cognito_url, error=_error)
        for path in (COGNITO_PATH, COGNITO_PATH.rstrip("/")):
            app.router.add_route("*", path, _wrong_method(path, ["POST"]))
    methods: dict[str, list[str]] = {}
    for route in api.routes:
        methods.setdefault(route.path, []).append(route.method)
    for path, served in methods.items():
        app.router.add_route("OPTIONS", path, _preflight)
        # Only the declared methods, as API Gateway has: HEAD of a GET route too is a 405.
        app.router.add_route("*", path, _wrong_method(path, [*served, "OPTIONS"]))

    async def config_json(_: web.Request) -> web.Response:
        return web.Response(
            text=json.dumps(api.config, indent=2),
            content_type="application/json",
            headers={"Cache-Control": "no-store", **_PAGE_HEADERS},
        )

    app.router.add_get("/config.json", config_json)
    app.router.add_route("*", "/config.json", _wrong_method("/config.json", ["GET", "HEAD"]))
    if api.web_dir is not None and (api.web_dir / "index.html").is_file():
        web_dir = api.web_dir

        async def index(_: web.Request) -> web.FileResponse:
            return web.FileResponse(web_dir / "index.html", headers=_PAGE_HEADERS)

        root = web_dir.resolve()

        async def static(request: web.Request) -> web.FileResponse:
            # Not add_static: its misses are an empty octet-stream 404 that
            # bypasses the error middleware; here a miss raises like any route.
            path = request.match_info["path"]
            # A NUL is no file name (and makes the resolve below raise).
            target = root if "\0" in path else (root / path).resolve()
            if not target.is_relative_to(root) or not target.is_file():
                raise web.HTTPNotFound(reason=f"no such page or route: {request.path}")
            return web.FileResponse(target, headers=_PAGE_HEADERS)

        app.router.add_get("/", index)
        app.router.add_get("/{path:.+}", static)
    else:

        async def placeholder(_: web.Request) -> web.Response:
            return web.Response(
                text="<!doctype html><title>iotnotify</title><p>iotnotify local is running. "
                "The web page is not built yet: in a checkout of the repository, "
                "<code>make setup</code> (or <code>npm ci --prefix web &amp;&amp; "
                "npm run build --prefix web</code>) builds <code>web/dist</code>, "
                "then start <code>iotnotify local</code> again.</p>",
                content_type="text/html",
                headers=_PAGE_HEADERS,
            )

        app.router.add_get("/", placeholder)

    async def close_executor(_: web.Application) -> None:
        api.executor.shutdown(wait=False, cancel_futures=True)

    async def no_route(request: web.Request) -> web.Response:
        # After every real route and the page: any method but GET/HEAD (the
        # page's) on a path the API does not have, a CORS preflight included,
        # is a 404, not a 405 whose Allow offers the page's GET.
        raise web.HTTPNotFound(reason=f"no such route: {request.method} {request.path}")

    app.router.add_route("*", "/{path:.+}", no_route)
    app.on_cleanup.append(close_executor)
    return app


def build_runner(api: LocalApi) -> GuardedRunner:
    """The app in a runner bounded by ``api.limits`` whose parser errors are JSON too.

    Request bodies are not inflated: API Gateway REST without content
    encoding enabled (this API's, ``infra/iotnotify_infra/api.py``) passes a
    ``Content-Encoding: gzip`` payload through as sent (developer guide,
    "Content encoding for REST APIs"), so the function sees the compressed
    bytes, and nothing here inflates a bomb or fails on a body that is not
    what its header says.
    """
    return GuardedRunner(
        build_app(api),
        limits=api.limits,
        render_error=_error,
        access_log=None,
        auto_decompress=False,
    )
