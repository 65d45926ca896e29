"""Helpers for tests and benchmarks: presign an IoT WebSocket URL, and a raw MQTT client.

``presign_url`` signs the way AWS IoT expects (DESIGN.md): botocore's
:class:`~botocore.auth.SigV4QueryAuth` with token-less credentials for
service ``iotdevicegateway``, then ``X-Amz-Security-Token`` appended. With
``sign_token=True`` it produces the URL AWS rejects (token inside the
signature), for negative tests.

:class:`RawMqttClient` speaks MQTT 3.1.1 (:mod:`iotnotify_emulator.mqtt`) or
MQTT 5 (:mod:`iotnotify_emulator.mqtt5`, ``protocol_level=5``) over an
aiohttp WebSocket; tests use it where a packet-level view matters
(SUBACK codes, being disconnected, going silent to trip the keepalive).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlsplit

import aiohttp
import boto3
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from iotnotify.contract import TopicScheme
from iotnotify.policies import (
    publisher_policy,
    subscriber_ceiling_policy,
    subscriber_session_policy,
)
from iotnotify_emulator import mqtt5
from iotnotify_emulator.credentials import Credential, InMemoryCredentialStore
from iotnotify_emulator.mqtt import (
    Connack,
    Connect,
    Disconnect,
    MqttProtocolError,
    Packet,
    Pingreq,
    Puback,
    Publish,
    StreamDecoder,
    Suback,
    Subscribe,
    Will,
    encode,
)
from iotnotify_emulator.mqtt5 import Properties

__all__ = [
    "ALLOW_ALL",
    "ConnectionRefused",
    "Harness",
    "RawMqttClient",
    "presign_url",
    "ssl_context_for",
]

# An identity policy for watchers in tests (lifecycle events, sloppy grants).
ALLOW_ALL: Final = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
}


def presign_url(
    url: str,
    credential: Credential,
    *,
    region: str,
    service: str = "iotdevicegateway",
    expires: int = 3600,
    host: str | None = None,
    sign_token: bool = False,
) -> str:
    """A presigned ``ws(s)://host:port/mqtt?...`` URL.

    ``host`` is the Host header value the client will send (default: the
    URL's ``host:port``, which is what paho-mqtt and mqtt.js send).
    """
    parts = urlsplit(url)
    token = credential.session_token
    credentials = Credentials(
        credential.access_key_id,
        credential.secret_access_key,
        token if sign_token else None,
    )
    http_scheme = "https" if parts.scheme == "wss" else "http"
    request = AWSRequest(
        method="GET",
        url=f"{http_scheme}://{parts.netloc}{parts.path}",
        headers={"host": host or parts.netloc},
    )
    SigV4QueryAuth(credentials, service, region, expires=expires).add_auth(request)
    signed = urlsplit(str(request.url))
    query = signed.query
    if token is not None and not sign_token:
        query += "&X-Amz-Security-Token=" + quote(token, safe="")
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{query}"


def ssl_context_for(ca_file: Path | str | None) -> ssl.SSLContext | None:
    if ca_file is None:
        return None
    return ssl.create_default_context(cafile=str(ca_file))


class ConnectionRefused(Exception):
    """The WebSocket upgrade failed (``status``), CONNACK was not 0 (``return_code``,
    the whole CONNACK in ``connack``), or the server closed the connection
    without a CONNACK (``hung_up``: AWS IoT Core's answer to an unauthorised
    MQTT 3.1.1 CONNECT)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        return_code: int | None = None,
        connack: Connack | None = None,
        hung_up: bool = False,
    ):
        super().__init__(message)
        self.status = status
        self.return_code = return_code
        self.connack = connack
        self.hung_up = hung_up


@dataclass
class RawMqttClient:
    """A minimal MQTT 3.1.1 or 5 client over WebSocket, for tests.

    ``protocol_level`` 5 encodes and decodes MQTT 5; ``connack`` is the
    server's CONNACK once connected.
    """

    ws: aiohttp.ClientWebSocketResponse
    session: aiohttp.ClientSession
    _owns_session: bool = False
    _decoder: StreamDecoder = field(default_factory=StreamDecoder)
    _pending: list[Packet] = field(default_factory=list)
    _next_id: int = 0
    protocol_level: int = 4
    connack: Connack | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        protocols: Sequence[str] = ("mqtt",),
        ca_file: Path | str | None = None,
        session: aiohttp.ClientSession | None = None,
        protocol_level: int = 4,
    ) -> RawMqttClient:
        """Open the WebSocket only (no CONNECT yet)."""
        owns = session is None
        http = session or aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(
                url,
                protocols=tuple(protocols),
                ssl=ssl_context_for(ca_file) or True,
                autoping=True,
                max_msg_size=0,
            )
        except aiohttp.WSServerHandshakeError as exc:
            if owns:
                await http.close()
            raise ConnectionRefused(f"upgrade refused: {exc.status}", status=exc.status) from exc
        except BaseException:
            if owns:
                await http.close()
            raise
        return cls(
            ws=ws,
            session=http,
            _owns_session=owns,
            _decoder=StreamDecoder(protocol_level=5 if protocol_level == 5 else 4),
            protocol_level=protocol_level,
        )

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        client_id: str,
        keepalive: int = 60,
        will: Will | None = None,
        username: str | None = None,
        protocols: Sequence[str] = ("mqtt",),
        ca_file: Path | str | None = None,
        session: aiohttp.ClientSession | None = None,
        within: float = 10.0,
        protocol_level: int = 4,
        properties: Properties | None = None,
        clean_session: bool = True,
    ) -> RawMqttClient:
        """Open and CONNECT; raises :class:`ConnectionRefused` unless CONNACK is 0
        (also when the server closes the connection instead of answering)."""
        client = await cls.open(
            url,
            protocols=protocols,
            ca_file=ca_file,
            session=session,
            protocol_level=protocol_level,
        )
        try:
            await client.send(
                Connect(
                    client_id=client_id,
                    keepalive=keepalive,
                    will=will,
                    username=username,
                    protocol_level=protocol_level,
                    properties=properties,
                    clean_session=clean_session,
                )
            )
            try:
                reply = await client.receive(within=within)
            except EOFError as exc:
                raise ConnectionRefused(
                    "the server closed the connection without CONNACK", hung_up=True
                ) from exc
            if not isinstance(reply, Connack):
                raise ConnectionRefused(f"expected CONNACK, got {reply!r}")
            if reply.return_code != 0:
                raise ConnectionRefused(
                    f"CONNACK {reply.return_code}", return_code=reply.return_code, connack=reply
                )
            client.connack = reply
        except BaseException:
            await client.close()
            raise
        return client

    def packet_id(self) -> int:
        self._next_id = self._next_id % 0xFFFF + 1
        return self._next_id

    async def send(self, packet: Packet) -> None:
        wire = mqtt5.encode(packet) if self.protocol_level == 5 else encode(packet)
        await self.ws.send_bytes(wire)

    async def send_raw(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def receive(self, within: float = 5.0) -> Packet:
        """The next packet; ``EOFError`` when the server closed the connection."""
        async with asyncio.timeout(within):
            while not self._pending:
                message = await self.ws.receive()
                if message.type == aiohttp.WSMsgType.BINARY:
                    self._pending.extend(self._decoder.feed(message.data))
                elif message.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.ERROR,
                ):
                    raise EOFError("connection closed by the server")
                else:
                    raise MqttProtocolError(f"unexpected WebSocket message {message.type}")
            return self._pending.pop(0)

    async def subscribe(
        self, *filters: tuple[str, int] | str, options: tuple[int, ...] = ()
    ) -> Suback:
        """SUBSCRIBE and wait for its SUBACK; ``options``: MQTT 5 option bits per filter."""
        topics = tuple((f, 0) if isinstance(f, str) else f for f in filters)
        packet_id = self.packet_id()
        await self.send(Subscribe(packet_id=packet_id, topics=topics, options=options))
        reply = await self.receive()
        if not isinstance(reply, Suback) or reply.packet_id != packet_id:
            raise AssertionError(f"expected SUBACK {packet_id}, got {reply!r}")
        return reply

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> Puback | None:
        packet_id = self.packet_id() if qos else None
        await self.send(
            Publish(
                topic=topic,
                payload=payload,
                qos=qos,
                retain=retain,
                packet_id=packet_id,
                properties=properties,
            )
        )
        if qos != 1:
            return None
        # Deliveries of this very message may overtake the PUBACK; keep them.
        others: list[Packet] = []
        try:
            while True:
                reply = await self.receive()
                if isinstance(reply, Puback) and reply.packet_id == packet_id:
                    return reply
                others.append(reply)
        finally:
            self._pending[:0] = others

    async def next_publish(self, within: float = 5.0) -> Publish:
        packet = await self.receive(within=within)
        if not isinstance(packet, Publish):
            raise AssertionError(f"expected PUBLISH, got {packet!r}")
        if packet.qos == 1 and packet.packet_id is not None:
            await self.send(Puback(packet.packet_id))
        return packet

    async def ping(self) -> None:
        await self.send(Pingreq())

    async def wait_closed(self, within: float = 5.0) -> list[Packet]:
        """Read until the server closes; returns what arrived before the close."""
        seen: list[Packet] = []
        async with asyncio.timeout(within):
            while True:
                try:
                    seen.append(await self.receive(within=within))
                except EOFError:
                    return seen

    async def drop(self) -> None:
        """End the TCP connection with neither a WebSocket Close frame nor an
        MQTT DISCONNECT (a network failure, as the server sees it), then
        release the client."""
        sock = self.ws.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        await self.close()

    async def disconnect(self) -> None:
        if not self.ws.closed:
            await self.send(Disconnect())
        await self.close()

    async def close(self) -> None:
        if not self.ws.closed:
            await self.ws.close()
        if self._owns_session:
            await self.session.close()


if TYPE_CHECKING:
    from iotnotify_emulator.server import Emulator, EmulatorThread


@dataclass
class Harness:
    """An emulator plus an in-memory store, minting credentials shaped like the product's.

    ``subscriber(user)`` is a role session: the subscriber ceiling policy as
    identity policy AND the per-user session policy, exactly what the
    token-vending Lambda obtains from STS.
    """

    emulator: Emulator | EmulatorThread
    store: InMemoryCredentialStore
    scheme: TopicScheme = field(default_factory=lambda: TopicScheme("app", "test"))
    clients: list[RawMqttClient] = field(default_factory=list)

    @property
    def region(self) -> str:
        return self.emulator.config.region

    @property
    def account(self) -> str:
        return self.emulator.config.account_id

    def topic_of(self, user_id: str) -> str:
        return str(self.scheme.user_notifications(user_id))

    def subscriber(self, user_id: str) -> Credential:
        region, account = self.region, self.account
        return self.store.issue(
            [subscriber_ceiling_policy(self.scheme, region=region, account=account)],
            [subscriber_session_policy(self.scheme, user_id, region=region, account=account)],
            principal_id=f"AROATEST:{user_id}",
        )

    def publisher(self) -> Credential:
        """An IAM user's long-term key with the publisher policy (no session token)."""
        return self.store.issue(
            [publisher_policy(self.scheme, region=self.region, account=self.account)],
            principal_id="AIDAPUBLISHER",
            with_token=False,
            expires_in=None,
        )

    def url(self, credential: Credential, *, tls: bool = False, sign_token: bool = False) -> str:
        base = self.emulator.wss_url if tls else self.emulator.ws_url
        if base is None:
            raise RuntimeError("TLS is disabled in this emulator")
        return presign_url(base, credential, region=self.region, sign_token=sign_token)

    async def connect(self, credential: Credential, client_id: str, **kwargs: Any) -> RawMqttClient:
        """Connect a raw client; :meth:`aclose` closes every client still open."""
        client = await RawMqttClient.connect(self.url(credential), client_id=client_id, **kwargs)
        self.clients.append(client)
        return client

    async def aclose(self) -> None:
        for client in self.clients:
            await client.close()
        self.clients.clear()

    def iot_data(self, credential: Credential, *, tls: bool = False) -> Any:
        """A boto3 ``iot-data`` client pointed at the emulator (http, or https on the wss port)."""
        endpoint = self.emulator.data_url_tls if tls else self.emulator.data_url
        return boto3.client(
            "iot-data",
            region_name=self.region,
            endpoint_url=endpoint,
            aws_access_key_id=credential.access_key_id,
            aws_secret_access_key=credential.secret_access_key,
            aws_session_token=credential.session_token,
            verify=str(self.emulator.ca_file) if tls else None,
            config=Config(retries={"max_attempts": 1}),
        )
