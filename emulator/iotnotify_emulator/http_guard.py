"""An aiohttp runner for a port anyone on the network can reach: bounded and JSON-only.

aiohttp's defaults suit a server behind a proxy, not one facing clients
directly: a connection that sends half a request stays open for the
keep-alive timeout (3,630 s), there is no cap on open connections, and
errors the HTTP parser finds (a header over 8 KB, garbage) are answered
with ``text/plain`` and logged with a traceback. With a 1,024 file
descriptor limit, about a thousand idle sockets stopped every other client,
and each refused ``accept()`` logged a traceback. :class:`GuardedRunner`
closes that off for both the IoT emulator's port and the local API:

* **header timeout**: a connection must send complete request headers
  within ``header_timeout`` seconds of connecting, or it is closed; on a
  TLS port (:class:`GuardedSite`) the handshake must also finish within
  ``header_timeout`` (asyncio's default is 60 s, and the request handler,
  with its header deadline and the cap, only sees a connection once the
  handshake is done);
* **idle timeout**: a kept-alive connection with no request in progress
  is closed after ``idle_timeout`` seconds (aiohttp's keep-alive timer,
  which also covers a half-sent follow-up request);
* **body timeout**: :func:`read_body` bounds how long a handler waits
  for a request body (408 after ``body_timeout``);
* **connection cap**: beyond ``max_connections`` open connections (kept
  below the process's file descriptor limit) a new connection is closed at
  once, so the process always has descriptors left for its own work;
* **one error path**: every error response, from a handler's
  :class:`aiohttp.web.HTTPException` (404, 405, 413) to the parser's
  refusals (400, and 431 for a header line over ``max_field_size``), is
  rendered by the one ``render_error`` function the server is given;
* **rate-limited logs**: refusals and ``accept()`` failures ("Too many open
  files") are logged at most once per ``log_interval`` seconds, with a
  count of what was suppressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

__all__ = [
    "DirectHandler",
    "ErrorRenderer",
    "GuardedRunner",
    "GuardedSite",
    "ServerLimits",
    "error_middleware",
    "install_accept_error_throttle",
    "read_body",
]

log = logging.getLogger("iotnotify_emulator.http")

# (status, code, message) -> the response to send; it must not raise.
ErrorRenderer = Callable[[int, str, str], web.StreamResponse]
# A request handler GuardedRunner calls without the app (its ``direct`` routes).
DirectHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Descriptors kept free for the process's own files, pipes and outgoing
# sockets (moto, the emulator, boto3 pools) when the cap follows the limit.
_FD_RESERVE: Final = 64
_ACCEPT_ERROR: Final = "socket.accept() out of system resource"
_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "too_many_requests",
    431: "request_header_fields_too_large",
    500: "internal_error",
    503: "service_unavailable",
    504: "gateway_timeout",
}


def error_code(status: int) -> str:
    """The ``error`` code for an HTTP status (``"http_<status>"`` when unnamed)."""
    return _CODES.get(status, f"http_{status}")


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Time and size bounds of one listening port; seconds and counts.

    ``max_connections`` is lowered to the file descriptor limit minus a
    reserve when that is smaller. ``max_field_size`` and ``max_line_size``
    are aiohttp's (8,190 bytes by default); over them the answer is 431.
    """

    header_timeout: float = 10.0
    idle_timeout: float = 30.0
    body_timeout: float = 30.0
    max_connections: int = 4096
    max_field_size: int = 8190
    max_line_size: int = 8190
    log_interval: float = 10.0

    def connection_cap(self) -> int:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(1, min(self.max_connections, soft - _FD_RESERVE))


class _Throttle:
    """Logs one line per interval per key, counting what it held back."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warn(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next.get(key, 0.0):
            self._held[key] = self._held.get(key, 0) + 1
            return
        held = self._held.pop(key, 0)
        self._next[key] = now + self._interval
        suffix = f" ({held} more like this suppressed)" if held else ""
        log.warning(message + suffix, *args)


def _status_of(exc: BaseException | None, status: int) -> tuple[int, str]:
    if isinstance(exc, LineTooLong):
        return 431, "a request line or header is too large"
    if isinstance(exc, BadHttpMessage):
        if "too many headers" in str(exc.message).lower():
            return 431, "too many request headers"
        return 400, f"malformed HTTP request: {exc.message}"
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "error"
    return status, phrase


class _GuardedHandler(RequestHandler):
    """aiohttp's protocol with a header deadline and JSON parser errors."""

    def __init__(self, manager: _GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        guard = self._guard
        if guard.open_connections > guard.cap:
            guard.refused += 1
            guard.throttle.warn(
                "cap", "connection refused: the cap of %d open connections is reached", guard.cap
            )
            self.force_close()
            return
        self._header_deadline = self._loop.call_later(
            guard.limits.header_timeout, self._headers_overdue
        )

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # The first complete request header block ends the header deadline;
        # later requests on the connection are bounded by the idle timer.
        if self._header_deadline is not None and self._request_count > 0:
            self._header_deadline.cancel()
            self._header_deadline = None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
        super().connection_lost(exc)

    def _headers_overdue(self) -> None:
        self._header_deadline = None
        if self._request_count == 0:
            self._guard.timed_out += 1
            self._guard.throttle.warn(
                "header-timeout",
                "closed a connection that sent no complete request in %.1f s",
                self._guard.limits.header_timeout,
            )
            self.force_close()

    def log_exception(self, *args: Any, **kw: Any) -> None:
        # After a 400 for a body that could not be read (error_middleware),
        # aiohttp drains the rest of it, meets the same error and logs it
        # with a traceback: one throttled line instead.
        exc = kw.get("exc_info")
        if isinstance(exc, RequestPayloadError):
            self._guard.throttle.warn("payload", "dropped a request body: %s", exc)
            return
        super().log_exception(*args, **kw)

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        status, text = _status_of(exc, status)
        if status >= 500:
            log.error("error handling a request", exc_info=exc)
        else:
            self._guard.throttle.warn("refused", "refused a request: %d %s", status, text)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error")
        response = self._guard.render(status, error_code(status), text)
        response.force_close()
        return response


class _GuardedServer(web.Server):
    def __init__(
        self,
        base: web.Server,
        *,
        limits: ServerLimits,
        render: ErrorRenderer,
        throttle: _Throttle,
        request_handler: _Handler,
    ) -> None:
        kwargs: dict[str, Any] = dict(base._kwargs)  # what AppRunner passed to RequestHandler
        kwargs["keepalive_timeout"] = limits.idle_timeout
        kwargs["max_field_size"] = limits.max_field_size
        kwargs["max_line_size"] = limits.max_line_size
        super().__init__(
            request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            loop=base._loop,
            **kwargs,
        )
        self.limits = limits
        self.render = render
        self.throttle = throttle
        self.cap = limits.connection_cap()
        self.refused = 0
        self.timed_out = 0
        self._open: set[RequestHandler] = set()

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._open.add(handler)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self._open.discard(handler)
        super().connection_lost(handler, exc)

    def __call__(self) -> RequestHandler:
        return _GuardedHandler(self, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """``web.AppRunner`` with :class:`ServerLimits` and one error renderer.

    Use it exactly like ``AppRunner``; add :func:`error_middleware` with the
    same renderer to the app so handler errors take the same path, or pass
    ``handle_errors=True`` and the runner answers them alike from outside
    the app. An app without middleware gets no middleware chain from
    aiohttp, which matters for a long-lived request: a WebSocket handler's
    every caller frame lives as long as its connection (the two of
    :func:`error_middleware` and aiohttp's own were 0.5 KB of RSS per idle
    connection, bench/emulator_bench.py ``--only idle``). A request whose
    ``(method, path)`` is a key of ``direct`` (only with ``handle_errors``)
    goes straight to that handler, as in aiohttp's low-level ``web.Server``:
    no router (keep the route in the app too, for the other methods' 405),
    no middleware, no frame of this module; ``request.match_info`` is None
    there. An exception it raises reaches the protocol's error handler,
    which renders a 500 the same way.
    """

    def __init__(
        self,
        app: web.Application,
        *,
        limits: ServerLimits | None = None,
        render_error: ErrorRenderer,
        handle_errors: bool = False,
        direct: Mapping[tuple[str, str], DirectHandler] | None = None,
        **kwargs: Any,
    ) -> None:
        if direct and not handle_errors:
            raise ValueError("direct routes need handle_errors=True")
        super().__init__(app, **kwargs)
        self.limits = limits or ServerLimits()
        self._render = render_error
        self._handle_errors = handle_errors
        self._direct = dict(direct or {})
        self._throttle = _Throttle(self.limits.log_interval)

    async def _make_server(self) -> web.Server:
        base = await super()._make_server()
        install_accept_error_throttle(asyncio.get_running_loop(), self.limits.log_interval)
        handler: _Handler = base.request_handler
        if self._handle_errors:
            handler = _rendering_errors(handler, self._render, self._direct)
        return _GuardedServer(
            base,
            limits=self.limits,
            render=self._render,
            throttle=self._throttle,
            request_handler=handler,
        )

    @property
    def refused_connections(self) -> int:
        """Connections closed at once because the cap was reached."""
        server = self.server
        return server.refused if isinstance(server, _GuardedServer) else 0


def error_middleware(render: ErrorRenderer) -> Any:
    """An aiohttp middleware: any ``HTTPException`` >= 400 or crash becomes ``render(...)``.

    Headers the exception carries (``Allow`` on 405) are kept. A body that
    cannot be read as its headers describe it (``RequestPayloadError``: a
    ``Content-Encoding`` that does not decode) is a 400.
    """

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        return await _answering_errors(render, request, handler)

    return middleware


async def _answering_errors(
    render: ErrorRenderer,
    request: Any,
    handler: Callable[[Any], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    """``await handler(request)``, with what :func:`_error_response` answers for
    its exception (an exception it leaves alone propagates)."""
    try:
        return await handler(request)
    except Exception as exc:
        response = _error_response(render, request, exc)
        if response is None:
            raise
        return response


def _error_response(
    render: ErrorRenderer, request: web.BaseRequest, exc: Exception
) -> web.StreamResponse | None:
    """What :func:`error_middleware` answers for ``exc``; None: let it propagate.

    Call it from the ``except`` block (it logs the exception being handled).
    """
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            return None
        response = render(exc.status, error_code(exc.status), exc.reason)
        for name in ("Allow",):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    if isinstance(exc, RequestPayloadError):
        # The body could not be read as its headers describe it (a
        # Content-Encoding that does not decode): the client's fault.
        return render(400, error_code(400), f"the request body could not be read: {exc}")
    if isinstance(exc, ConnectionError):
        return None
    log.exception("unhandled error in %s %s", request.method, request.path)
    return render(500, error_code(500), "internal error")


_Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def _rendering_errors(
    handler: _Handler, render: ErrorRenderer, direct: dict[tuple[str, str], DirectHandler]
) -> _Handler:
    """``handler`` (the app) with :func:`error_middleware`'s answers, from outside the app.

    The returned callable is a plain function: a request in ``direct`` gets
    its handler's coroutine itself, with no frame of this module or the app
    above it.
    """

    def dispatch(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        target = direct.get((request.method, request.path))
        if target is not None and isinstance(request, web.Request):
            return target(request)
        return _answering_errors(render, request, handler)

    return dispatch


async def read_body(request: web.Request, limit_seconds: float, max_bytes: int) -> bytes:
    """The whole body, bounded in time and size.

    A declared ``Content-Length`` over ``max_bytes`` is refused (413) before
    anything is read, as API Gateway does; a body that grows past the app's
    ``client_max_size`` while read raises aiohttp's 413; a client that takes
    more than ``limit_seconds`` to send it gets 408.
    """
    length = request.content_length
    if length is not None and length > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=length)
    try:
        async with asyncio.timeout(limit_seconds):
            return await request.read()
    except TimeoutError as exc:
        raise web.HTTPRequestTimeout(reason="the request body was not sent in time") from exc


def install_accept_error_throttle(loop: asyncio.AbstractEventLoop, interval: float) -> None:
    """Log ``accept()`` failures (EMFILE, ENFILE, ENOBUFS) once per ``interval`` on ``loop``.

    asyncio reports each failed ``accept()`` through the loop's exception
    handler with a traceback and retries a second later, per listening
    socket; under a descriptor shortage that is a flood of identical
    tracebacks. Other contexts go to the previous handler unchanged.
    Installing twice on one loop is a no-op.
    """
    previous = loop.get_exception_handler()
    if getattr(previous, "_iotnotify_accept_throttle", False):
        return
    throttle = _Throttle(interval)

    def handler(the_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith(_ACCEPT_ERROR):
            exc = context.get("exception")
            throttle.warn("accept", "accept() failed: %s; retrying", exc)
            return
        if previous is not None:
            previous(the_loop, context)
        else:
            the_loop.default_exception_handler(context)

    handler._iotnotify_accept_throttle = True  # type: ignore[attr-defined]
    with contextlib.suppress(RuntimeError):
        loop.set_exception_handler(handler)


class GuardedSite(web.SockSite):
    """``web.SockSite`` whose TLS handshake must finish within ``header_timeout``.

    asyncio creates the request handler's transport only after the TLS
    handshake, so a client that opens a ``wss://`` connection and sends
    nothing is outside the header deadline and the connection cap; without
    this, asyncio holds its descriptor for 60 s (``ssl_handshake_timeout``).
    """

    def __init__(
        self,
        runner: GuardedRunner,
        sock: Any,
        *,
        ssl_context: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(runner, sock, ssl_context=ssl_context, **kwargs)
        self._handshake_timeout = runner.limits.header_timeout

    async def start(self) -> None:
        if self._ssl_context is None:
            await super().start()
            return
        # SockSite.start without its create_server call, which takes no
        # handshake timeout; BaseSite.start registers the site with the runner.
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            server,
            sock=self._sock,
            ssl=self._ssl_context,
            backlog=self._backlog,
            ssl_handshake_timeout=self._handshake_timeout,
        )
