"""Signed AWS requests over kept-alive connections: the publisher's hot path.

Why this is hand-written (the house rule: only what no library does right).
A fan-out to 10,000 users is 10,000 iot-data ``Publish`` calls and 400
DynamoDB ``BatchWriteItem`` calls from one Python process; once concurrency
hides the round trip, the CPU per call is what limits it
(``bench/fanout_latency.py``). Measured single-threaded against ``iotnotify
local`` (one ``Publish``, client CPU per call): botocore's generic client
about 530 µs; botocore's ``SigV4Auth`` + ``AWSRequest.prepare`` +
``URLLib3Session`` (the earlier ``FastPublish``) about 300 µs; urllib3's
``urlopen`` with a lean signature 170 µs; ``http.client`` with a lean
signature 95-120 µs, of which the signature is 7-12 µs; this module, which
adds botocore's hooks, retry handler and response objects to that, about
165 µs. The cost is generic
machinery, not the work: ``SigV4Auth`` derives the signing key (four HMACs)
and rebuilds its header maps on every call, urllib3 parses the URL and
builds ``Retry``/``Timeout``/response objects per call, and for
``BatchWriteItem`` the boto3 resource's ``TypeSerializer`` and botocore's
model-driven validator and serializer walk every attribute of 25 items
(2.3 ms per call against 0.7 ms, :mod:`iotnotify.dynamodb_batch`). No
library offers a lean signed call; so this module writes two small things
itself and takes the rest from botocore:

* :class:`SigV4Signer`: the SigV4 ``Authorization`` header, equal to
  botocore's ``SigV4Auth`` for the same request (the same canonical request,
  path normalisation and double encoding, blacklisted headers left unsigned;
  ``tests/unit/sdk/test_signed_http.py`` compares them), with the signing
  key derived once per (credentials, day, region, service);
* a small pool of ``http.client`` connections per endpoint (the most
  recently used first; a connection the server closed while idle is
  dropped before reuse, as urllib3 does, with ``urllib3.util.wait``), each
  request's header block and body sent in one segment.

What stays botocore's, so behaviour is the client's own
(:class:`SignedEndpoint`):

* endpoint URL, region, signing name, connect and read timeouts, TCP
  keep-alive, CA bundle (``verify``, ``AWS_CA_BUNDLE``) and client
  certificate are read from the boto3 client;
* credentials come from a callable (a session's ``get_credentials``) on
  every call, so botocore refreshes temporary ones;
* the client's ``before-send`` hooks run first, as in botocore's
  ``Endpoint``: moto's ``mock_aws``, ``Stubber``-style hooks and adaptive
  retry mode's rate limiter still act;
* retries are the client's: botocore's ``needs-retry`` event, answered by
  the retry handler the client registered (standard mode by default: 3
  attempts, DynamoDB 4, exponential backoff with jitter, the retry quota),
  and ``after-call`` so that handler's quota is refunded;
* errors are botocore's: an error answer is parsed by botocore's parser
  for the service's protocol and raised as the client's modelled
  exception class (a ``ClientError``); a transport failure raises the
  botocore exception ``URLLib3Session`` would (``EndpointConnectionError``,
  ``ConnectTimeoutError``, ``ReadTimeoutError``, ``ConnectionClosedError``,
  ``SSLError``, ``HTTPClientError``);
* when a proxy applies to the endpoint, or the client's HTTP session is not
  botocore's ``URLLib3Session``, requests go through the client's own HTTP
  session unchanged (proxies are not re-implemented here).

Thread-safe: any number of threads may call at once; each holds its own
connection while its call is in flight.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import quote, urlsplit

from botocore.auth import SIGNED_HEADERS_BLACKLIST
from botocore.awsrequest import AWSPreparedRequest, AWSResponse, HeadersDict
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ReadTimeoutError,
    SSLError,
)
from botocore.hooks import first_non_none_response
from botocore.httpsession import URLLib3Session, create_urllib3_context, get_cert_path
from botocore.parsers import create_parser
from botocore.utils import normalize_url_path
from urllib3.util.wait import wait_for_read

__all__ = ["SigV4Signer", "SignedEndpoint"]

_ALGORITHM: Final = "AWS4-HMAC-SHA256"
_TIMESTAMP: Final = "%Y%m%dT%H%M%SZ"
_UNSIGNED: Final = frozenset(SIGNED_HEADERS_BLACKLIST)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class SigV4Signer:
    """SigV4 ``Authorization`` headers for one (service, region), as botocore's ``SigV4Auth``.

    ``clock`` returns seconds since the epoch (``time.time``). Thread-safe:
    the cached signing key is replaced atomically, and a race only derives
    it twice.
    """

    def __init__(
        self, *, service: str, region: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._service = service
        self._region = region
        self._clock = clock
        # ((access key, secret key, day), signing key): SigV4's key depends on
        # nothing else, so it is derived once a day per credentials.
        self._key: tuple[tuple[str, str, str], bytes] | None = None

    def sign(
        self,
        credentials: Any,
        *,
        method: str,
        host: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> dict[str, str]:
        """The headers to add: ``X-Amz-Date``, ``Authorization`` and, for
        temporary credentials, ``X-Amz-Security-Token``.

        ``credentials`` is botocore's frozen credentials (``access_key``,
        ``secret_key``, ``token``); ``host`` the ``Host`` header as sent
        (no default port); ``path`` the URL path as sent (percent-encoded);
        ``query`` the query string as sent (``a=1&b=2``, encoded); ``headers``
        the other headers that will be sent (all but botocore's blacklist,
        such as ``User-Agent``, are signed).
        """
        amz_date = time.strftime(_TIMESTAMP, time.gmtime(self._clock()))
        day = amz_date[:8]
        token = credentials.token
        signed: dict[str, str] = {}
        for name, value in headers.items():
            lower = name.lower()
            if lower not in _UNSIGNED:
                signed[lower] = " ".join(value.split())
        signed["host"] = host
        signed["x-amz-date"] = amz_date
        if token:
            signed["x-amz-security-token"] = token
        names = sorted(signed)
        signed_names = ";".join(names)
        canonical = "\n".join(
            (
                method,
                # botocore (non-S3) signs the path normalised and encoded once more.
                quote(normalize_url_path(path), safe="/~"),
                _canonical_query(query),
                "".join(f"{name}:{signed[name]}\n" for name in names),
                signed_names,
                hashlib.sha256(body).hexdigest(),
            )
        )
        scope = f"{day}/{self._region}/{self._service}/aws4_request"
        string_to_sign = (
            f"{_ALGORITHM}\n{amz_date}\n{scope}\n"
            f"{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"
        )
        key = self._signing_key(credentials.access_key, credentials.secret_key, day)
        signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        added = {
            "X-Amz-Date": amz_date,
            "Authorization": (
                f"{_ALGORITHM} Credential={credentials.access_key}/{scope}, "
                f"SignedHeaders={signed_names}, Signature={signature}"
            ),
        }
        if token:
            added["X-Amz-Security-Token"] = token
        return added

    def _signing_key(self, access_key: str, secret_key: str, day: str) -> bytes:
        identity = (access_key, secret_key, day)
        cached = self._key
        if cached is not None and cached[0] == identity:
            return cached[1]
        key = f"AWS4{secret_key}".encode()
        for part in (day, self._region, self._service, "aws4_request"):
            key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
        self._key = (identity, key)
        return key


def _canonical_query(query: str) -> str:
    """botocore's canonical query for a query already in the URL: pairs sorted, as sent."""
    if not query:
        return ""
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&"))
    return "&".join(f"{key}={value}" for key, value in pairs)


class _Body:
    """A read response body in the shape ``AWSResponse.content`` reads (``stream()``)."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, *_: Any, **__: Any) -> Any:
        yield self._data


class _OneSegment:
    """Sends a request's header block and body in one ``send``.

    ``http.client`` sends them in two: with Nagle off, a small request then
    costs two segments, two wake-ups of the server (and of any proxy on the
    way) and two syscalls here. :meth:`send_request` uses only the
    documented request steps (``putrequest``, ``putheader``, ``endheaders``,
    ``send``), holding the header block ``endheaders`` sends until the body
    goes with it.
    """

    _hold_next = False
    _held = b""

    def send(self, data: Any) -> None:
        if self._hold_next:
            self._hold_next = False
            self._held = bytes(data)
            return
        held, self._held = self._held, b""
        super().send(held + bytes(data) if held else data)  # type: ignore[misc]

    def send_request(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> None:
        connection: Any = self
        # http.client adds "Accept-Encoding: identity" (unsigned), as under urllib3.
        connection.putrequest(method, target, skip_host=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        self._hold_next = True
        connection.endheaders()
        self.send(body)  # the held header block and the body (or the block alone)


class _HTTPConnection(_OneSegment, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_OneSegment, http.client.HTTPSConnection):
    pass


class _Connections:
    """Kept-alive ``http.client`` connections to one endpoint, most recently used first."""

    def __init__(
        self,
        *,
        scheme: str,
        host: str,
        port: int,
        connect_timeout: float | None,
        read_timeout: float | None,
        ssl_context: ssl.SSLContext | None,
        socket_options: list[tuple[int, int, int]],
        maxsize: int,
    ) -> None:
        self._scheme = scheme
        self._host = host
        self._port = port
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._ssl_context = ssl_context
        self._socket_options = socket_options
        self._maxsize = maxsize
        self._idle: list[_HTTPConnection | _HTTPSConnection] = []
        self._lock = threading.Lock()

    def acquire(self) -> _HTTPConnection | _HTTPSConnection:
        """An idle connection still open, else a new connected one (connect errors raise)."""
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return self._connect()
            sock = connection.sock
            # Readable while idle means the server closed it (or sent
            # garbage): either way it cannot carry the next request.
            if sock is not None and not wait_for_read(sock, timeout=0.0):
                return connection
            connection.close()

    def release(self, connection: _HTTPConnection | _HTTPSConnection) -> None:
        with self._lock:
            if len(self._idle) < self._maxsize:
                self._idle.append(connection)
                return
        connection.close()

    def _connect(self) -> _HTTPConnection | _HTTPSConnection:
        connection: _HTTPConnection | _HTTPSConnection
        if self._ssl_context is not None:
            connection = _HTTPSConnection(
                self._host, self._port, timeout=self._connect_timeout, context=self._ssl_context
            )
        else:
            connection = _HTTPConnection(self._host, self._port, timeout=self._connect_timeout)
        connection.connect()
        sock = connection.sock
        assert sock is not None  # connect() either set it or raised
        for level, option, value in self._socket_options:
            sock.setsockopt(level, option, value)
        sock.settimeout(self._read_timeout)
        return connection

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def _lean_connections(http_session: Any, url: str, config: Any) -> _Connections | None:
    """The lean pool for ``url``, configured as the client's session; None when a
    proxy applies or the session is not botocore's own (then it sends)."""
    if type(http_session) is not URLLib3Session:
        return None
    proxies = getattr(http_session, "_proxy_config", None)
    if proxies is None or proxies.proxy_url_for(url):
        return None
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    context: ssl.SSLContext | None = None
    if scheme == "https":
        verify = getattr(http_session, "_verify", True)
        context = create_urllib3_context()
        if verify:
            context.verify_mode = ssl.CERT_REQUIRED
            context.check_hostname = True
            context.load_verify_locations(cafile=get_cert_path(verify))
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        cert_file = getattr(http_session, "_cert_file", None)
        if cert_file:
            context.load_cert_chain(cert_file, getattr(http_session, "_key_file", None))
    # As botocore's URLLib3Session: Nagle off, TCP keep-alive if configured.
    options = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    if getattr(config, "tcp_keepalive", False):
        options.append((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
    return _Connections(
        scheme=scheme,
        host=parts.hostname,
        port=parts.port or _DEFAULT_PORTS[scheme],
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        ssl_context=context,
        socket_options=options,
        maxsize=max(1, int(getattr(config, "max_pool_connections", 10) or 10)),
    )


def _host_header(url: str) -> str:
    """The ``Host`` value botocore signs: lower-case host, port unless the scheme's default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        host = f"{host}:{parts.port}"
    return host


class SignedEndpoint:
    """Sends signed requests to one boto3 client's endpoint (module docstring).

    ``client`` is the boto3 client whose endpoint, region, signing name,
    configuration, HTTP session, hooks and retry handler are used;
    ``credentials`` returns botocore credentials (a session's
    ``get_credentials``) or None (then ``NoCredentialsError``).
    """

    def __init__(
        self,
        client: Any,
        credentials: Callable[[], Any],
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        meta = client.meta
        self.meta = meta
        self._events = meta.events
        self._service_model = meta.service_model
        self._service_id = meta.service_model.service_id.hyphenize()
        self._endpoint_url = meta.endpoint_url.rstrip("/")
        self._path_prefix = urlsplit(self._endpoint_url).path
        self._host = _host_header(self._endpoint_url)
        self._signer = SigV4Signer(
            service=meta.service_model.signing_name, region=meta.region_name, clock=clock
        )
        self._credentials = credentials
        self._sleep = sleep
        self._botocore_endpoint = client._endpoint
        # The client's own session (botocore's Endpoint keeps it as
        # ``http_session``): its settings configure the lean pool, and it
        # sends whenever the lean pool cannot (a proxy).
        self._http: Any = client._endpoint.http_session
        self._pool = _lean_connections(self._http, self._endpoint_url + "/", meta.config)
        self._operations: dict[str, Any] = {}
        self._parser = create_parser(meta.service_model.protocol)
        self._exceptions = client.exceptions  # the modelled error classes, as the client raises
        self._user_agent = f"iotnotify-signed-http {meta.config.user_agent or ''}".strip()

    @property
    def lean(self) -> bool:
        """Whether requests go over the lean connection pool (no proxy applies)."""
        return self._pool is not None

    def call(
        self,
        operation: str,
        *,
        path: str,
        query: str = "",
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        method: str = "POST",
    ) -> AWSResponse:
        """One operation, retried as the client's retry handler says; a 2xx answer.

        ``path`` is relative to the endpoint URL and percent-encoded as sent;
        ``query`` likewise (``qos=0``). Raises the client's modelled
        ``ClientError`` for an error answer, ``NoCredentialsError``, or the
        botocore exception of a transport failure (module docstring).
        """
        model = self._operations.get(operation)
        if model is None:
            model = self._operations[operation] = self._service_model.operation_model(operation)
        request_context: dict[str, Any] = {"retries": {}}
        request_dict = {"context": request_context}
        base_headers = {"User-Agent": self._user_agent, **(headers or {})}
        attempts = 0
        while True:
            attempts += 1
            response: AWSResponse | None = None
            error: Exception | None = None
            try:
                response = self._send_once(operation, method, path, query, base_headers, body)
            except NoCredentialsError:
                raise
            except Exception as exc:  # as botocore's Endpoint: the retry handler decides
                error = exc
            parsed = self._parse(response, model)
            retry = first_non_none_response(
                self._events.emit(
                    f"needs-retry.{self._service_id}.{operation}",
                    response=None if response is None else (response, parsed),
                    endpoint=self._botocore_endpoint,
                    operation=model,
                    attempts=attempts,
                    caught_exception=error,
                    request_dict=request_dict,
                )
            )
            if retry is None or retry is False:
                break
            self._sleep(float(retry))
        if response is None:
            assert error is not None
            self._events.emit(
                f"after-call-error.{self._service_id}.{operation}",
                exception=error,
                context=request_context,
            )
            raise error
        self._events.emit(
            f"after-call.{self._service_id}.{operation}",
            http_response=response,
            parsed=parsed,
            model=model,
            context=request_context,
        )
        if response.status_code >= 300:
            code = str(parsed.get("Error", {}).get("Code") or "")
            raise self._exceptions.from_code(code)(parsed, operation)
        return response

    def _parse(self, response: AWSResponse | None, model: Any) -> dict[str, Any]:
        if response is None:
            return {}
        if response.status_code < 300:
            # Success bodies are read by the caller; botocore's model-driven
            # parse of them is the cost this module avoids.
            return {"ResponseMetadata": {"HTTPStatusCode": response.status_code}}
        parsed: dict[str, Any] = self._parser.parse(
            {
                "status_code": response.status_code,
                "headers": response.headers,
                "body": response.content,
            },
            model.output_shape,
        )
        return parsed

    def _send_once(
        self,
        operation: str,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
    ) -> AWSResponse:
        suffix = f"{path}?{query}" if query else path
        url = self._endpoint_url + suffix
        path = self._path_prefix + path
        credentials = self._credentials()
        if credentials is None:
            raise NoCredentialsError()
        frozen = credentials.get_frozen_credentials()
        signed = dict(headers)
        signed.update(
            self._signer.sign(
                frozen,
                method=method,
                host=self._host,
                path=path,
                query=query,
                headers=headers,
                body=body,
            )
        )
        # As botocore's Endpoint: a hook (moto, a stubber) may answer instead.
        headers_dict: Any = HeadersDict(signed)  # what botocore's hooks receive
        prepared = AWSPreparedRequest(method, url, headers_dict, body, False)
        hooked = first_non_none_response(
            self._events.emit(f"before-send.{self._service_id}.{operation}", request=prepared)
        )
        if hooked is not None:
            answer: AWSResponse = hooked
            return answer
        if self._pool is None:
            sent: AWSResponse = self._http.send(prepared)
            return sent
        return self._exchange(method, url, self._path_prefix + suffix, signed, body)

    def _exchange(
        self, method: str, url: str, target: str, headers: dict[str, str], body: bytes
    ) -> AWSResponse:
        assert self._pool is not None
        try:
            connection = self._pool.acquire()
        except TimeoutError as exc:
            raise ConnectTimeoutError(endpoint_url=url, error=exc) from exc
        except ssl.SSLError as exc:
            raise SSLError(endpoint_url=url, error=exc) from exc
        except OSError as exc:  # refused, unreachable, unknown host (gaierror)
            raise EndpointConnectionError(endpoint_url=url, error=exc) from exc
        try:
            connection.send_request(method, target, {"Host": self._host, **headers}, body)
            answer = connection.getresponse()
            data = answer.read()
        except BaseException as exc:
            connection.close()  # half a request or answer: the connection is unusable
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt and the like, unchanged
            raise _transport_error(exc, url) from exc
        if answer.will_close:
            connection.close()
        else:
            self._pool.release(connection)
        received: Any = answer.getheaders()  # AWSResponse makes a HeadersDict of them
        return AWSResponse(url, answer.status, received, _Body(data))

    def close(self) -> None:
        """Close the idle kept-alive connections (the client's own session stays open)."""
        if self._pool is not None:
            self._pool.close()

    def close_client_session(self) -> None:
        """Also close the client's HTTP session (its pooled connections)."""
        self.close()
        self._http.close()


def _transport_error(exc: Exception, url: str) -> Exception:
    """The botocore exception ``URLLib3Session`` raises for the same failure."""
    if isinstance(exc, TimeoutError):
        return ReadTimeoutError(endpoint_url=url, error=exc)
    if isinstance(exc, ssl.SSLError):
        return SSLError(endpoint_url=url, error=exc)
    if isinstance(exc, (http.client.HTTPException, ConnectionError)):
        # The server closed, reset or answered garbage before a full response.
        return ConnectionClosedError(endpoint_url=url, error=exc)
    return HTTPClientError(error=exc)
