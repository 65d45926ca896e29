"""The emulator's network side: one aiohttp app on a ws:// and a wss:// port.

Endpoints (the same app on both ports, so ``https://`` publish works too):

* ``GET /mqtt``: WebSocket upgrade, authenticated by the SigV4 presigned
  query (service ``iotdevicegateway``) before the upgrade; subprotocols
  ``mqtt`` and ``mqttv3.1``.
* ``POST /topics/{topic}?qos=&retain=``: the iot-data ``Publish`` API
  (SigV4 header auth, service ``iotdata``), so boto3's ``iot-data`` client
  works with ``endpoint_url=emu.data_url``; its MQTT 5 fields (content
  type, user properties, response topic, correlation data, message expiry,
  payload format indicator) reach MQTT 5 subscribers. Its query is read as
  the other iot-data routes read theirs (``data_api.query_params``: first
  value of a repeated parameter, unknown ones ignored, a value that is not
  UTF-8 a 400).
* ``GET /retainedMessage[/{topic}]``, ``DELETE /connections/{clientId}``:
  iot-data ``ListRetainedMessages``, ``GetRetainedMessage`` and
  ``DeleteConnection`` (:mod:`iotnotify_emulator.data_api`).
* ``GET /_emulator/stats``: counters, as JSON; the most recent refusals
  (principals, client ids, addresses) only with the ``X-Emulator-Secret``
  header (:attr:`Emulator.admin_secret`, new at every start).
* ``POST /_emulator/restart``: only when ``fault_injection`` is on, and only
  with that secret.

Every port is an :class:`iotnotify_emulator.http_guard.GuardedRunner`:
header and idle timeouts, a connection cap, JSON errors.

aiohttp serves WebSocket and HTTP from one app and an idle aiohttp WebSocket
costs far less memory than one from the ``websockets`` library.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
import shutil
import socket
import struct
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, cast

from aiohttp import WSMessage, WSMsgType, web

from iotnotify.contract import MAX_PAYLOAD_BYTES, Topic
from iotnotify.errors import InvalidTopic
from iotnotify_emulator.broker import Broker, BrokerSettings, MqttSession
from iotnotify_emulator.credentials import CredentialStore
from iotnotify_emulator.data_api import (
    PUBLISH_QUERY,
    DataApi,
    NotUtf8,
    iot_data_error,
    not_utf8_error,
    parse_query,
    query_params,
    unquote_label,
)
from iotnotify_emulator.http_guard import GuardedRunner, GuardedSite, ServerLimits
from iotnotify_emulator.mqtt import MqttProtocolError, Packet, StreamDecoder
from iotnotify_emulator.rules import RulesEngine
from iotnotify_emulator.runtime import LoopMonitor, new_event_loop
from iotnotify_emulator.session5 import MAX_PACKET_SIZE, HttpPropertiesError, properties_from_http
from iotnotify_emulator.sigv4 import (
    HEADER_SIGNATURE_MAX_SKEW,
    SignatureError,
    prefetch_signer,
    verify_header_signature,
    verify_query_signature,
)
from iotnotify_emulator.tls import CertificateFiles, generate_certificates, server_ssl_context
from iotnotify_emulator.ws_mask import MaskedOnlyWebSocketResponse

__all__ = [
    "ADMIN_HEADER",
    "Emulator",
    "EmulatorConfig",
    "EmulatorThread",
    "create_emulator",
    "start_emulator",
]

log = logging.getLogger("iotnotify_emulator")

SUBPROTOCOLS: Final = ("mqtt", "mqttv3.1")
_WS_SERVICE: Final = "iotdevicegateway"
_DATA_SERVICE: Final = "iotdata"
# A PUBLISH frame is the payload plus topic and header (and, in MQTT 5,
# properties: AWS's Maximum Packet Size is 146 KB); anything larger is
# refused by the decoder before it is buffered.
_MAX_PACKET: Final = max(MAX_PAYLOAD_BYTES + 1024, MAX_PACKET_SIZE)
_TOPICS_PREFIX: Final = "/topics/"


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Where and how the emulator listens; AWS IoT Core's defaults otherwise.

    Port 0 picks a free port. ``wss_port=None`` disables TLS (no certificate
    is generated). ``cert_dir=None`` uses a temporary directory removed on
    stop; a CA already in ``cert_dir`` is kept (``tls.generate_certificates``).
    The keepalive and TTL knobs exist so tests can shrink AWS's timers.
    """

    host: str = "127.0.0.1"
    ws_port: int = 0
    wss_port: int | None = 0
    region: str = "us-east-1"
    account_id: str = "123456789012"
    websocket_ttl: float = 24 * 3600.0
    cert_dir: Path | None = None
    keepalive_min: int = 30
    keepalive_max: int = 1200
    keepalive_factor: float = 1.5
    connect_timeout: float = 10.0
    outbound_queue_bytes: int = 2 * 1024 * 1024
    persistent_session_expiry: float = 3600.0
    max_subscriptions: int = 50
    # Per-connection rate limits of AWS IoT Core: publishes per second (in and
    # out) and outbound bytes per second. ``publish_rate_limit=None`` turns
    # both off (load tests and benchmarks).
    publish_rate_limit: float | None = 100.0
    throughput_limit: float | None = 512 * 1024
    # A resumed persistent session's stored messages per second (AWS: 10);
    # off with the rate limits or when None.
    stored_message_rate: float | None = 10.0
    # AWS allows one CONNECT per second per client id; off unless set (1.0 is
    # AWS's value), because tests reconnect one client id faster than that.
    connect_rate_per_client_id: float | None = None
    # MQTT 5 on /mqtt (AWS IoT Core speaks it); False answers a v5 CONNECT
    # with CONNACK 0x84, for clients' fallback tests.
    mqtt5: bool = True
    # Presigned WebSocket URLs: X-Amz-Date within this of the server's clock
    # (and X-Amz-Expires, when given, not passed).
    signature_max_skew: timedelta = timedelta(minutes=15)
    # Header-signed iot-data requests: AWS's 5 minutes (sigv4.HEADER_SIGNATURE_MAX_SKEW).
    header_signature_max_skew: timedelta = HEADER_SIGNATURE_MAX_SKEW
    extra_hosts: tuple[str, ...] = field(default=())
    # ``POST /_emulator/restart``: drop every connection and stop listening for
    # a while, as an outage would. For tests and demos of reconnecting
    # clients; off unless asked for (``iotnotify local`` turns it on).
    fault_injection: bool = False
    # The secret the admin endpoints require (header X-Emulator-Secret); None
    # makes a fresh random one per start (Emulator.admin_secret).
    admin_secret: str | None = field(default=None, repr=False)
    # Timeouts and the connection cap of the ports (http_guard).
    http_limits: ServerLimits = field(default_factory=ServerLimits)

    def broker_settings(self) -> BrokerSettings:
        return BrokerSettings(
            region=self.region,
            account_id=self.account_id,
            keepalive_min=self.keepalive_min,
            keepalive_max=self.keepalive_max,
            keepalive_factor=self.keepalive_factor,
            websocket_ttl=self.websocket_ttl,
            connect_timeout=self.connect_timeout,
            max_subscriptions=self.max_subscriptions,
            outbound_queue_bytes=self.outbound_queue_bytes,
            persistent_session_expiry=self.persistent_session_expiry,
            publish_rate_limit=self.publish_rate_limit,
            throughput_limit=None if self.publish_rate_limit is None else self.throughput_limit,
            stored_message_rate=(
                None if self.publish_rate_limit is None else self.stored_message_rate
            ),
            connect_rate_per_client_id=self.connect_rate_per_client_id,
            mqtt5=self.mqtt5,
        )


# RFC 6455 section 5.2: FIN + binary opcode, then the payload length in 7
# bits, 7+16 or 7+64 (a server's frames are not masked).
_FRAME_LEN1: Final = struct.Struct("!BB").pack
_FRAME_LEN2: Final = struct.Struct("!BBH").pack
_FRAME_LEN3: Final = struct.Struct("!BBQ").pack
_BINARY_FIN: Final = 0x82
# Above this many bytes waiting in the socket's buffer, writes take the
# awaited path, whose drain holds a session's queue for a slow reader.
_WRITE_NOW_LIMIT: Final = 64 * 1024


class _WebSocketTransport:
    __slots__ = ("_transport", "_ws")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None) -> None:
        self._ws = ws
        # uvloop's transports do not subclass asyncio's, but have the same methods.
        self._transport = cast("asyncio.WriteTransport | None", transport)

    def write_now(self, data: bytes) -> bool:
        """Write ``data`` as one binary frame now, if the socket takes it without waiting.

        The frame is what aiohttp's ``send_bytes`` writes (uncompressed, as
        this server never negotiates compression), without a coroutine and a
        task per write: the broker flushes each connection's frames of a
        loop iteration through here (``Broker.write_soon``). False (nothing
        written) when the connection is closing or its buffer is over
        :data:`_WRITE_NOW_LIMIT`; the caller then uses :meth:`send`.
        """
        transport = self._transport
        if (
            transport is None
            or self._ws.closed
            or transport.is_closing()
            or transport.get_write_buffer_size() > _WRITE_NOW_LIMIT
        ):
            return False
        size = len(data)
        if size < 126:
            header = _FRAME_LEN1(_BINARY_FIN, size)
        elif size < 65536:
            header = _FRAME_LEN2(_BINARY_FIN, 126, size)
        else:
            header = _FRAME_LEN3(_BINARY_FIN, 127, size)
        transport.write(header + data)
        return True

    async def send(self, data: bytes) -> None:
        await self._ws.send_bytes(data)

    async def close(self) -> None:
        # drain=False: a stalled peer must not hold the close.
        await self._ws.close(drain=False)


def _render_error(status: int, code: str, message: str) -> web.Response:
    """Router and parser errors (404, 405, 413, 431...) in the same JSON shape."""
    return iot_data_error(status, code, message, str(uuid.uuid4()))


ADMIN_HEADER: Final = "X-Emulator-Secret"


class Emulator:
    """A running emulator. Build it with :func:`start_emulator` or :class:`EmulatorThread`."""

    def __init__(self, config: EmulatorConfig, credentials: CredentialStore) -> None:
        self.config = config
        self.credentials = credentials
        self.broker = Broker(config.broker_settings())
        self.ws_port = 0
        self.wss_port: int | None = None
        self.certificates: CertificateFiles | None = None
        self._runner: web.AppRunner | None = None
        self._live: set[MqttSession] = set()
        self._temp_dir: Path | None = None
        self._stopped = False
        self._sites: list[web.SockSite] = []
        self._ssl_context: Any = None
        self._outage: asyncio.Task[None] | None = None
        # Written to ``iotnotify local``'s state file (mode 0600), never logged.
        self.admin_secret = config.admin_secret or secrets.token_urlsafe(24)
        self.restarts = 0
        self.loop_monitor = LoopMonitor()

    # --- addresses ---------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}/mqtt"

    @property
    def wss_url(self) -> str | None:
        return None if self.wss_port is None else f"wss://{self.host}:{self.wss_port}/mqtt"

    @property
    def data_url(self) -> str:
        """HTTP base URL for iot-data (``boto3.client('iot-data', endpoint_url=...)``)."""
        return f"http://{self.host}:{self.ws_port}"

    @property
    def data_url_tls(self) -> str | None:
        return None if self.wss_port is None else f"https://{self.host}:{self.wss_port}"

    @property
    def ca_file(self) -> Path | None:
        return None if self.certificates is None else self.certificates.ca_file

    def install_rules(self, engine: RulesEngine) -> None:
        """Run ``engine``'s topic rules on every message; call on the emulator's loop."""
        loop = asyncio.get_running_loop()
        broker = self.broker

        def publish(topic: str, payload: bytes, qos: int) -> None:
            # Republish actions run on worker threads; the broker lives on its loop.
            loop.call_soon_threadsafe(lambda: broker.route(topic, payload, qos, False))

        engine.attach(publish)
        broker.rules = engine

    def stats(self) -> dict[str, Any]:
        data = self.broker.stats.as_dict()
        # Which process serves it (iotnotify local runs it in a child): benches read its CPU.
        data["pid"] = os.getpid()
        data["subscriptions_current"] = self.broker.subscription_count
        data["retained_messages"] = len(self.broker.retained)
        data["recent_refusals"] = list(self.broker.refusals)
        if self.broker.rules is not None:
            data["rules"] = self.broker.rules.stats.as_dict()
        data["loop"] = self.loop_monitor.snapshot()
        return data

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        config = self.config
        # No middleware: the runner renders errors (handle_errors), and
        # GET /mqtt, whose handler lives as long as its connection, is
        # called directly (no router, middleware or app frame above it).
        app = web.Application(client_max_size=4 * MAX_PAYLOAD_BYTES)
        app.router.add_get("/mqtt", self._handle_mqtt)
        app.router.add_post(_TOPICS_PREFIX + "{topic:.+}", self._handle_publish)
        app.router.add_get("/_emulator/stats", self._handle_stats)
        DataApi(self.broker, self.credentials, config).register(app)
        if config.fault_injection:
            app.router.add_post("/_emulator/restart", self._handle_restart)
        runner = GuardedRunner(
            app,
            limits=config.http_limits,
            render_error=_render_error,
            handle_errors=True,
            direct={("GET", "/mqtt"): self._handle_mqtt},
            access_log=None,
            handle_signals=False,
            shutdown_timeout=2.0,
        )
        await runner.setup()
        self._runner = runner
        try:
            plain = socket.create_server((config.host, config.ws_port))
            self.ws_port = plain.getsockname()[1]
            await self._listen(plain)
            if config.wss_port is not None:
                cert_dir = config.cert_dir
                if cert_dir is None:
                    self._temp_dir = Path(tempfile.mkdtemp(prefix="iotnotify-emulator-"))
                    cert_dir = self._temp_dir
                hosts = (config.host, *config.extra_hosts)
                self.certificates = generate_certificates(cert_dir, hosts=hosts)
                secure = socket.create_server((config.host, config.wss_port))
                self.wss_port = secure.getsockname()[1]
                self._ssl_context = server_ssl_context(self.certificates)
                await self._listen(secure, self._ssl_context)
        except BaseException:
            await self.stop()
            raise
        log.info(
            "emulator listening %s",
            json.dumps({"ws": self.ws_url, "wss": self.wss_url, "ca": str(self.ca_file)}),
        )

    async def _listen(self, sock: socket.socket, ssl_context: Any = None) -> None:
        assert isinstance(self._runner, GuardedRunner)
        site = GuardedSite(self._runner, sock, ssl_context=ssl_context)
        await site.start()
        self._sites.append(site)

    async def _close_sessions(self) -> None:
        """Disconnect every MQTT client (registered or still connecting)."""
        await self.broker.close_all()
        for session in list(self._live):
            await session.close(None)

    async def outage(self, down_seconds: float) -> None:
        """Drop every connection, refuse new ones for ``down_seconds``, then listen
        again on the same ports (with the same certificate): a broker restart
        as clients see it. Retained messages survive, as they do on AWS."""
        sites, self._sites = self._sites, []
        for site in sites:
            await site.stop()
        await self._close_sessions()
        # Pooled HTTP keep-alive connections (boto3 iot-data) must fail too.
        if self._runner is not None and self._runner.server is not None:
            await self._runner.server.shutdown(1.0)
        await asyncio.sleep(down_seconds)
        if self._stopped:
            return
        await self._listen(socket.create_server((self.config.host, self.ws_port)))
        if self.wss_port is not None:
            secure = socket.create_server((self.config.host, self.wss_port))
            await self._listen(secure, self._ssl_context)
        self.restarts += 1
        log.info("emulator listening again after a %.1f s outage", down_seconds)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.loop_monitor.stop()
        if self._outage is not None:
            self._outage.cancel()
        await self._close_sessions()
        self.broker.deadlines.clear()  # cancelled entries may still wait for their time
        if self._runner is not None:
            await self._runner.cleanup()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)

    # --- handlers ----------------------------------------------------------------

    def _has_secret(self, request: web.Request) -> bool:
        presented = request.headers.get(ADMIN_HEADER, "")
        return presented.isascii() and hmac.compare_digest(
            presented.encode("ascii"), self.admin_secret.encode("ascii")
        )

    async def _handle_restart(self, request: web.Request) -> web.Response:
        if not self._has_secret(request):
            return _render_error(
                403, "ForbiddenException", f"restart needs the {ADMIN_HEADER} header"
            )
        try:
            down = float(request.query.get("downSeconds", "1"))
        except ValueError:
            down = -1.0
        if not 0 <= down <= 300:
            return web.json_response(
                {"message": "downSeconds must be a number from 0 to 300"}, status=400
            )
        if self._outage is not None and not self._outage.done():
            return web.json_response({"message": "an outage is already running"}, status=409)
        # Answer first: the outage closes the very connection this request came in on.
        response = web.json_response({"message": "restarting", "downSeconds": down}, status=202)
        await response.prepare(request)
        await response.write_eof()
        self._outage = asyncio.get_running_loop().create_task(self.outage(down))
        return response

    async def _handle_stats(self, request: web.Request) -> web.Response:
        # Asking is what runs the loop monitor (for the next 10 minutes): an
        # emulator nobody measures does not wake 200 times a second for it.
        self.loop_monitor.watch(asyncio.get_running_loop())
        data = self.stats()
        if not self._has_secret(request):
            # Refusal records name principals, client ids, topics and
            # addresses: other users' business. Counters are public.
            data["recent_refusals"] = []
            data["detail"] = f"send the {ADMIN_HEADER} header for refusal records"
        return web.json_response(data, dumps=lambda o: json.dumps(o, default=str))

    async def _handle_mqtt(self, request: web.Request) -> web.StreamResponse:
        raw_path, _, raw_query = request.raw_path.partition("?")
        query = parse_query(raw_query)
        await prefetch_signer(self.credentials, query=query)
        try:
            credential = verify_query_signature(
                method=request.method,
                raw_path=raw_path,
                query=query,
                headers=request.headers,
                store=self.credentials,
                service=_WS_SERVICE,
                region=self.config.region,
                max_skew=self.config.signature_max_skew,
            )
        except SignatureError as exc:
            self.broker.stats.handshakes_refused += 1
            self.broker.refuse(f"WebSocket upgrade refused: {exc.reason}", remote=request.remote)
            return web.Response(status=403, text=f"Forbidden: {exc.reason}\n")
        offered = [
            item.strip()
            for item in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if item.strip()
        ]
        if not any(item in SUBPROTOCOLS for item in offered):
            self.broker.stats.handshakes_refused += 1
            self.broker.refuse(
                "WebSocket upgrade without an MQTT subprotocol", remote=request.remote
            )
            return web.Response(
                status=426,
                text="Upgrade Required: subprotocol 'mqtt' expected\n",
                headers={"Upgrade": "websocket"},
            )
        # This frame lives as long as the connection: drop the copy of the
        # presigned query (most of a KB) now that it is verified.
        del raw_path, raw_query, query, offered
        # A client frame without a mask fails the connection (RFC 6455 5.1).
        ws = MaskedOnlyWebSocketResponse(
            protocols=SUBPROTOCOLS,
            autoping=True,
            heartbeat=None,
            compress=False,
            max_msg_size=_MAX_PACKET * 2,
            timeout=2.0,
        )
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="Bad Request: not a WebSocket upgrade\n")
        await ws.prepare(request)
        session = self.broker.open(
            _WebSocketTransport(ws, request.transport), credential, request.remote or ""
        )
        self._live.add(session)
        decoder = StreamDecoder(
            max_packet_size=_MAX_PACKET,
            max_subscribe_filters=self.broker.settings.max_filters_per_subscribe,
        )
        # Cleared after each frame: an idle connection waits in receive() for
        # hours, and would hold its last frame and packet meanwhile.
        message: WSMessage | None = None
        packet: Packet | None = None
        try:
            while True:
                # receive(), not ``async for``: the loop must tell the client's
                # Close frame (CLOSE) from a dropped connection (CLOSED).
                message = await ws.receive()
                if message.type != WSMsgType.BINARY:
                    if message.type == WSMsgType.CLOSE:
                        session.closed_by_client()
                    elif message.type not in (WSMsgType.CLOSING, WSMsgType.CLOSED):
                        # ERROR: aiohttp already closed with 1002 (an unmasked
                        # frame, reserved bits, a fragmented control frame...).
                        session.protocol_error(
                            f"WebSocket protocol error: {message.data}"
                            if message.type == WSMsgType.ERROR
                            else "MQTT over WebSocket must use binary frames"
                        )
                    break
                try:
                    # One at a time: what precedes a malformed packet in the
                    # same frame is still acted on, as on a byte stream.
                    for packet in decoder.packets(message.data):
                        await session.handle(packet)
                        if session.closed:
                            break
                except MqttProtocolError as exc:
                    session.protocol_error(str(exc), exc.reason_code)
                    break
                if session.closed:
                    break
                message = packet = None
        finally:
            self._live.discard(session)
            await session.connection_lost()
        return ws

    async def _handle_publish(self, request: web.Request) -> web.Response:
        trace_id = str(uuid.uuid4())
        raw_path, _, raw_query = request.raw_path.partition("?")
        topic_name = unquote_label(raw_path[len(_TOPICS_PREFIX) :])
        body = await request.read()
        if len(body) > MAX_PAYLOAD_BYTES:
            return iot_data_error(
                413,
                "RequestEntityTooLargeException",
                f"Payload of {len(body)} bytes exceeds {MAX_PAYLOAD_BYTES}",
                trace_id,
            )
        query = parse_query(raw_query)
        await prefetch_signer(self.credentials, headers=request.headers)
        try:
            credential = verify_header_signature(
                method=request.method,
                raw_path=raw_path,
                query=query,
                headers=request.headers,
                body=body,
                store=self.credentials,
                service=_DATA_SERVICE,
                region=self.config.region,
                max_skew=self.config.header_signature_max_skew,
            )
        except SignatureError as exc:
            self.broker.refuse(f"HTTP publish refused: {exc.reason}", remote=request.remote)
            return iot_data_error(401, "UnauthorizedException", exc.reason, trace_id)
        try:
            params = query_params(query, PUBLISH_QUERY)
        except NotUtf8 as exc:
            return not_utf8_error(exc.what, trace_id)
        qos_text = params.get("qos", "0")
        retain_text = params.get("retain", "false").lower()
        if qos_text not in ("0", "1"):
            return iot_data_error(
                400, "InvalidRequestException", f"Invalid qos {qos_text!r}", trace_id
            )
        if retain_text not in ("true", "false"):
            return iot_data_error(
                400, "InvalidRequestException", f"Invalid retain {retain_text!r}", trace_id
            )
        if topic_name is None:
            # Not U+FFFD in its place: the bad-topic 400 below (unquote_label).
            return not_utf8_error("topic", trace_id)
        try:
            topic = Topic(topic_name)
        except InvalidTopic as exc:
            return iot_data_error(400, "InvalidRequestException", str(exc), trace_id)
        retain = retain_text == "true"
        try:
            # The MQTT 5 fields of iot-data Publish, for v5 subscribers.
            properties = properties_from_http(request.headers, params)
        except HttpPropertiesError as exc:
            return iot_data_error(400, "InvalidRequestException", str(exc), trace_id)
        if topic.is_reserved:
            self.broker.refuse(
                "HTTP publish to a reserved $ topic",
                action="iot:Publish",
                resource=self.broker.arn("topic", topic_name),
                principal=credential.principal_id,
            )
            return iot_data_error(403, "ForbiddenException", "Reserved topic", trace_id)
        actions = ("iot:Publish", "iot:RetainPublish") if retain else ("iot:Publish",)
        for action in actions:
            decision = self.broker.authorize(
                credential, action, "topic", topic_name, source_ip=request.remote
            )
            if not decision.allowed:
                return iot_data_error(
                    403, "ForbiddenException", f"{action}: {decision.reason}", trace_id
                )
        self.broker.stats.publishes_http += 1
        self.broker.route(topic_name, body, int(qos_text), retain, properties=properties)
        if self.broker.rules is not None:
            self.broker.rules(topic_name, body, None, credential.principal_id)
        # The same JSON as json_response gives, without a json.dumps per publish
        # (a trace id is a UUID: nothing to escape).
        return web.Response(
            body=b'{"message": "OK", "traceId": "' + trace_id.encode("ascii") + b'"}',
            content_type="application/json",
        )


async def create_emulator(
    config: EmulatorConfig | None = None, *, credentials: CredentialStore
) -> Emulator:
    """Start an emulator on the running loop; the caller must ``await emu.stop()``."""
    emulator = Emulator(config or EmulatorConfig(), credentials)
    await emulator.start()
    return emulator


@contextlib.asynccontextmanager
async def start_emulator(
    config: EmulatorConfig | None = None, *, credentials: CredentialStore
) -> AsyncIterator[Emulator]:
    """``async with start_emulator(config, credentials=store) as emu: ...``"""
    emulator = await create_emulator(config, credentials=credentials)
    try:
        yield emulator
    finally:
        await emulator.stop()


class EmulatorThread:
    """The emulator on its own event loop in a daemon thread, for sync code and tests.

    ``start()`` returns once the ports are bound; attributes mirror
    :class:`Emulator`.
    """

    def __init__(
        self, config: EmulatorConfig | None = None, *, credentials: CredentialStore
    ) -> None:
        self.config = config or EmulatorConfig()
        self._credentials = credentials
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._emulator: Emulator | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> EmulatorThread:
        self._thread = threading.Thread(target=self._run, name="iotnotify-emulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise RuntimeError("emulator failed to start") from self._error
        return self

    def _run(self) -> None:
        loop = new_event_loop()  # uvloop when installed (runtime.py says why)
        self._loop = loop
        try:
            self._emulator = loop.run_until_complete(
                create_emulator(self.config, credentials=self._credentials)
            )
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        loop, emulator, thread = self._loop, self._emulator, self._thread
        if loop is None or emulator is None or thread is None or not thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(emulator.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def emulator(self) -> Emulator:
        if self._emulator is None:
            raise RuntimeError("EmulatorThread is not started")
        return self._emulator

    @property
    def broker(self) -> Broker:
        return self.emulator.broker

    @property
    def ws_url(self) -> str:
        return self.emulator.ws_url

    @property
    def wss_url(self) -> str | None:
        return self.emulator.wss_url

    @property
    def data_url(self) -> str:
        return self.emulator.data_url

    @property
    def admin_secret(self) -> str:
        """The value of :data:`ADMIN_HEADER` the admin endpoints require."""
        return self.emulator.admin_secret

    @property
    def data_url_tls(self) -> str | None:
        return self.emulator.data_url_tls

    @property
    def ca_file(self) -> Path | None:
        return self.emulator.ca_file

    @property
    def ws_port(self) -> int:
        return self.emulator.ws_port

    @property
    def wss_port(self) -> int | None:
        return self.emulator.wss_port

    def install_rules(self, engine: RulesEngine) -> None:
        """Run ``engine``'s topic rules on every message this emulator accepts."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("EmulatorThread is not started")

        async def install() -> None:
            self.emulator.install_rules(engine)

        asyncio.run_coroutine_threadsafe(install(), loop).result(timeout=10)

    def stats(self) -> dict[str, Any]:
        """A consistent snapshot taken on the emulator's loop."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("EmulatorThread is not started")

        async def snapshot() -> dict[str, Any]:
            return self.emulator.stats()

        return asyncio.run_coroutine_threadsafe(snapshot(), loop).result(timeout=10)
