"""A tiny fake of the iotnotify service for SDK tests: MQTT over WebSocket plus the API.

One aiohttp app on a free 127.0.0.1 port, run on its own event loop thread
so synchronous tests can drive it: ``GET /token`` (a new "credential" per
call, counted), ``GET /notifications?since=&limit=`` over an in-memory
inbox, and ``GET /mqtt``, a just-enough MQTT 3.1.1 broker (CONNECT,
SUBSCRIBE, PINGREQ, DISCONNECT; QoS 0 PUBLISH out). Knobs let a test stop
answering pings, drop every connection, or refuse new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import itertools
import json
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from iotnotify.contract import Notification, TopicScheme
from iotnotify.subscriber import StateChange

APP, STAGE, USER = "iotnotify", "test", "alice"
SCHEME = TopicScheme(APP, STAGE)
OWN_TOPIC = SCHEME.user_notifications(USER).value
BROADCAST_TOPIC = SCHEME.broadcast().value


def _remaining_length(size: int) -> bytes:
    out = bytearray()
    while True:
        byte, size = size % 128, size // 128
        out.append(byte | (0x80 if size else 0))
        if not size:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes) -> bytes:
    raw = topic.encode()
    return _packet(0x30, struct.pack("!H", len(raw)) + raw + payload)


def _split(buffer: bytearray) -> Iterator[tuple[int, bytes]]:
    """Complete MQTT packets at the front of ``buffer`` (consumed)."""
    while len(buffer) >= 2:
        multiplier, size, index = 1, 0, 1
        while True:
            if index >= len(buffer):
                return
            byte = buffer[index]
            size += (byte & 0x7F) * multiplier
            multiplier *= 128
            index += 1
            if not byte & 0x80:
                break
        if len(buffer) < index + size:
            return
        first, body = buffer[0], bytes(buffer[index : index + size])
        del buffer[: index + size]
        yield first, body


@dataclass
class Session:
    ws: web.WebSocketResponse
    client_id: str = ""
    keepalive: int = 0
    credential: str = ""
    topics: set[str] = field(default_factory=set)


class FakeService:
    """Start with ``with FakeService() as svc:``; everything stops on exit."""

    def __init__(self, *, keepalive: int | None = 600, topics: tuple[str, ...] | None = None):
        self.keepalive = keepalive
        self.topics = topics or (OWN_TOPIC, BROADCAST_TOPIC)
        self.answer_pings = True
        self.refuse_connections = False
        self.connack_code = 0
        self.suback_code = 0
        # Topics this service does not authorise, and how it says so: "suback"
        # (0x80, MQTT 5 style) or "close" (AWS IoT on MQTT 3.1.1).
        self.refuse_topics: set[str] = set()
        self.refusal = "close"
        self.subscribe_requests: list[str] = []
        self.inbox: list[Notification] = []
        self.token_calls = 0
        self.inbox_calls = 0
        self.sign_ins = 0  # InitiateAuth calls answered
        self.fail_inbox = 0  # answer fail_inbox_status to this many inbox requests
        self.fail_inbox_status = 500
        # Answer the WebSocket upgrade with this HTTP status instead of 101 (403:
        # what AWS IoT answers a signature or credentials it does not accept).
        self.refuse_upgrade: int | None = None
        self.upgrade_refusals = 0
        self.fail_tokens = False  # answer 503 to GET /token (the token API is down)
        self.token_failures = 0
        # The service's clock minus ours (seconds): its HTTP Date header says so.
        self.clock_offset = 0.0
        self.id_tokens_seen: list[str] = []
        self.sessions: list[Session] = []
        self.connect_log: list[Session] = []
        self.connected = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> FakeService:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _call(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/mqtt", self._mqtt)
        app.router.add_get("/token", self._token)
        app.router.add_get("/notifications", self._notifications)
        app.router.add_post("/cognito/", self._cognito)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        for session in list(self.sessions):
            await session.ws.close()
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cognito_url(self) -> str:
        """A user pool's JSON API (InitiateAuth only): the password "wrong" is refused."""
        return f"http://127.0.0.1:{self.port}/cognito/"

    # --- test controls -----------------------------------------------------------

    def token_response(self) -> dict[str, Any]:
        self.token_calls += 1
        credential = f"ASIAFAKE{self.token_calls:08d}"
        response: dict[str, Any] = {
            "endpoint": f"127.0.0.1:{self.port}",
            "region": "us-east-1",
            "url": f"ws://127.0.0.1:{self.port}/mqtt?X-Amz-Credential={credential}",
            "clientIdPrefix": f"{USER}.",
            "topics": list(self.topics),
            "credentials": {
                "accessKeyId": credential,
                "secretAccessKey": "x",
                "sessionToken": "y",
                "expiration": "2099-01-01T00:00:00Z",
            },
        }
        if self.keepalive is not None:
            response["keepalive"] = self.keepalive
        return response

    def send(self, note: Notification, *, topic: str = OWN_TOPIC, live: bool = True) -> None:
        """Like the publisher: inbox first (own topic only), then live."""
        if topic == OWN_TOPIC:
            self.inbox.append(note)
        if live:
            self._call(self._publish(topic, note.to_json()))

    def send_raw(self, payload: bytes, *, topic: str = OWN_TOPIC) -> None:
        """Publish ``payload`` as it is, live only: what a sender that is not
        the publisher (or a buggy one) could put on a topic."""
        self._call(self._publish(topic, payload))

    def drop_all(self) -> None:
        self._call(self._drop_all())

    def wait_connections(self, count: int, timeout: float = 10.0) -> Session:
        """Block until ``count`` CONNECTs were accepted in total; the newest session."""
        with self.connected:
            ok = self.connected.wait_for(lambda: len(self.connect_log) >= count, timeout)
        assert ok, f"expected {count} connections, saw {len(self.connect_log)}"
        return self.connect_log[-1]

    def wait_token_failures(self, count: int, timeout: float = 10.0) -> None:
        with self.connected:
            ok = self.connected.wait_for(lambda: self.token_failures >= count, timeout)
        assert ok, f"expected {count} refused token requests, saw {self.token_failures}"

    def wait_subscribed(self, count: int = 1, timeout: float = 10.0) -> None:
        with self.connected:
            ok = self.connected.wait_for(
                lambda: sum(1 for s in self.connect_log if s.topics) >= count, timeout
            )
        assert ok, "the client did not subscribe"

    async def _publish(self, topic: str, payload: bytes) -> None:
        frame = publish_packet(topic, payload)
        for session in list(self.sessions):
            if topic in session.topics:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await session.ws.send_bytes(frame)

    async def _drop_all(self) -> None:
        for session in list(self.sessions):
            await session.ws.close()

    # --- HTTP --------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        self.id_tokens_seen.append(auth)
        if auth == "expired":
            return web.json_response({"error": "unauthorized", "message": "expired"}, status=401)
        if auth == "nobody":
            return web.json_response({"error": "forbidden", "message": "no"}, status=403)
        if self.fail_tokens:
            with self.connected:
                self.token_failures += 1
                self.connected.notify_all()
            return web.json_response({"error": "unavailable", "message": "down"}, status=503)
        date = email.utils.formatdate(time.time() + self.clock_offset, usegmt=True)
        return web.json_response(self.token_response(), headers={"Date": date})

    async def _cognito(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.sign_ins += 1
        if body.get("AuthParameters", {}).get("PASSWORD") == "wrong":
            return web.json_response(
                {"__type": "NotAuthorizedException", "message": "Incorrect username or password."},
                status=400,
            )
        tokens = {"IdToken": "good", "AccessToken": "a", "RefreshToken": "r", "ExpiresIn": 3600}
        return web.json_response({"AuthenticationResult": tokens})

    def server_id(self) -> str:
        """A new notification id made by the service's clock (a publisher beside it)."""
        from ulid import ULID

        return str(ULID.from_timestamp(time.time() + self.clock_offset))

    async def _notifications(self, request: web.Request) -> web.Response:
        self.inbox_calls += 1
        if self.fail_inbox > 0:
            self.fail_inbox -= 1
            status = self.fail_inbox_status
            return web.json_response({"error": "refused", "message": "boom"}, status=status)
        since = request.query.get("since") or ""
        limit = int(request.query.get("limit", "50"))
        newer = sorted((n for n in self.inbox if n.id > since), key=lambda n: n.id)
        page = newer[:limit]
        more = len(newer) > limit
        return web.json_response(
            {
                "notifications": [n.to_dict() for n in page],
                "next": page[-1].id if more and page else None,
            }
        )

    # --- MQTT --------------------------------------------------------------------

    async def _mqtt(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_connections:
            return web.Response(status=503, text="down")
        if self.refuse_upgrade is not None:
            with self.connected:
                self.upgrade_refusals += 1
                self.connected.notify_all()
            return web.Response(status=self.refuse_upgrade, text="Forbidden")
        ws = web.WebSocketResponse(protocols=("mqtt",), autoping=True)
        await ws.prepare(request)
        session = Session(ws=ws, credential=request.query.get("X-Amz-Credential", ""))
        self.sessions.append(session)
        buffer = bytearray()
        packet_ids = itertools.count(1)
        try:
            async for message in ws:
                if message.type != WSMsgType.BINARY:
                    break
                buffer.extend(message.data)
                for first, body in _split(buffer):
                    kind = first >> 4
                    if kind == 1:  # CONNECT
                        name_len = struct.unpack("!H", body[:2])[0]
                        offset = 2 + name_len + 2
                        session.keepalive = struct.unpack("!H", body[offset : offset + 2])[0]
                        id_len = struct.unpack("!H", body[offset + 2 : offset + 4])[0]
                        session.client_id = body[offset + 4 : offset + 4 + id_len].decode()
                        await ws.send_bytes(_packet(0x20, bytes([0, self.connack_code])))
                        if self.connack_code:
                            await ws.close()
                            break
                        with self.connected:
                            self.connect_log.append(session)
                            self.connected.notify_all()
                    elif kind == 8:  # SUBSCRIBE
                        pid = body[:2]
                        offset, codes, closed = 2, bytearray(), False
                        while offset < len(body):
                            size = struct.unpack("!H", body[offset : offset + 2])[0]
                            topic = body[offset + 2 : offset + 2 + size].decode()
                            offset += 2 + size + 1
                            self.subscribe_requests.append(topic)
                            if topic in self.refuse_topics and self.refusal == "close":
                                closed = True
                                break
                            code = 0x80 if topic in self.refuse_topics else self.suback_code
                            codes.append(code)
                            if not code:
                                session.topics.add(topic)
                        if closed:
                            await ws.close()
                            break
                        next(packet_ids)
                        await ws.send_bytes(_packet(0x90, pid + bytes(codes)))
                        with self.connected:
                            self.connected.notify_all()
                    elif kind == 12:  # PINGREQ
                        if self.answer_pings:
                            await ws.send_bytes(_packet(0xD0, b""))
                    elif kind == 14:  # DISCONNECT
                        await ws.close()
        finally:
            self.sessions.remove(session)
        return ws


class Collector:
    """Records notifications and state changes; waits on a condition, never sleeps."""

    def __init__(self) -> None:
        self.notes: list[Notification] = []
        self.states: list[tuple[float, StateChange]] = []
        self._cond = threading.Condition()

    def on_message(self, note: Notification) -> None:
        with self._cond:
            self.notes.append(note)
            self._cond.notify_all()

    def on_state(self, change: StateChange) -> None:
        with self._cond:
            self.states.append((time.monotonic(), change))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        with self._cond:
            assert self._cond.wait_for(predicate, timeout), "timed out waiting"

    def wait_notes(self, count: int, timeout: float = 10.0) -> list[Notification]:
        self.wait_for(lambda: len(self.notes) >= count, timeout)
        return list(self.notes)

    def ids(self) -> list[str]:
        with self._cond:
            return [n.id for n in self.notes]
