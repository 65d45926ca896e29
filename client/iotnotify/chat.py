"""Chat rooms from Python: the rooms API and a live room connection.

:class:`RoomsApi` wraps the HTTP routes (``GET/POST /chats``, ``POST
/chats/{room}/members``, ``GET /chats/{room}/messages``, ``GET
/token?rooms=``). :class:`RoomConnection` joins one room the way every
client does: a token naming the room, an MQTT connection on its presigned
URL, a subscription to the room topic; :meth:`RoomConnection.send`
publishes ``{"text", "cid"}`` to the room's input topic, which the
moderation rule reads (the room topic itself refuses client publishes);
``cid`` is a fresh id per line, sent again with a resend of that line, so
the moderator keeps one copy. Received messages
are :class:`iotnotify.contract.ChatMessage` envelopes whose ``sender`` the
moderator took from the publishing client's id.

Errors are :class:`iotnotify.errors.IotNotifyError` subclasses: ``Forbidden``
(403, e.g. a private room), ``AuthError`` (401), ``ConnectionLost`` (network,
5xx) and plain ``IotNotifyError`` for other statuses (400, 404, 409).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from iotnotify.api_client import (
    error_message,
    http_error,
    open_without_redirects,
    read_answer,
)
from iotnotify.auth import IdTokenSource
from iotnotify.contract import (
    CHAT_REJECTED_TYPE,
    ChatMessage,
    Notification,
    client_id_for,
    new_chat_cid,
    own_notifications_topic,
    validate_chat_cid,
    validate_name,
)
from iotnotify.errors import (
    AuthError,
    ConnectionLost,
    ContractError,
    InvalidEnvelope,
    InvalidJson,
    IotNotifyError,
)
from iotnotify.tls import client_context, https_context

__all__ = ["RoomConnection", "RoomToken", "RoomsApi"]

_TIMEOUT: Final = 15.0


@dataclass(frozen=True, slots=True)
class RoomToken:
    """The parts of a ``GET /token?rooms=ROOM`` response a room connection uses."""

    room: str
    url: str
    client_id_prefix: str
    topic: str
    input_topic: str
    # The user's own notifications topic, where the moderator says why a
    # line was not sent (``chat.rejected``); None when the token names none.
    own_topic: str | None = None

    @classmethod
    def from_response(cls, room: str, raw: dict[str, Any]) -> RoomToken:
        try:
            channel = raw["channels"][room]
            prefix = str(raw["clientIdPrefix"])
            topics = raw.get("topics") or []
            return cls(
                room=room,
                url=str(raw["url"]),
                client_id_prefix=prefix,
                topic=str(channel["topic"]),
                input_topic=str(channel["inputTopic"]),
                own_topic=own_notifications_topic(
                    [str(topic) for topic in topics], prefix.removesuffix(".")
                )
                if isinstance(topics, list)
                else None,
            )
        except (KeyError, TypeError) as exc:
            raise AuthError(f"the token response names no room {room!r}: {exc!r}") from exc

    @property
    def user_id(self) -> str:
        return self.client_id_prefix.removesuffix(".")


class RoomsApi:
    """The rooms routes of the HTTP API, signed in through ``id_tokens``."""

    def __init__(
        self,
        *,
        api_url: str,
        id_tokens: IdTokenSource,
        ca_file: str | None = None,
        timeout: float = _TIMEOUT,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._id_tokens = id_tokens
        # The shared context (iotnotify.tls), built here so that a bad ca_file
        # fails at construction; None for plain http://.
        self._ssl = https_context(self.api_url, ca_file)
        self._timeout = timeout

    def list_page(self, *, limit: int = 100, next_token: str | None = None) -> dict[str, Any]:
        """One page: ``{"rooms": [...], "next": token|None}``."""
        query = {"limit": str(limit)}
        if next_token:
            query["next"] = next_token
        return self._call("GET", "/chats?" + urllib.parse.urlencode(query))

    def rooms(self) -> Iterator[dict[str, Any]]:
        """Every room the caller may see, following ``next``."""
        next_token: str | None = None
        while True:
            page = self.list_page(next_token=next_token)
            yield from page.get("rooms", [])
            next_token = page.get("next")
            if not next_token:
                return

    def create(self, room: str, *, private: bool = False) -> dict[str, Any]:
        return self._call("POST", "/chats", {"room": _room(room), "private": private})

    def add_member(self, room: str, user_id: str) -> dict[str, Any]:
        return self._call("POST", f"/chats/{_room(room)}/members", {"user": user_id})

    def history(
        self, room: str, *, limit: int = 50, before: str | None = None
    ) -> tuple[list[ChatMessage], str | None]:
        """Up to ``limit`` messages before ``before``, oldest first, and the next ``before``."""
        query = {"limit": str(limit)}
        if before:
            query["before"] = before
        raw = self._call("GET", f"/chats/{_room(room)}/messages?" + urllib.parse.urlencode(query))
        try:
            messages = [ChatMessage.from_dict(item) for item in raw["messages"]]
        except (KeyError, TypeError) as exc:
            raise InvalidEnvelope(f"unexpected history answer: {exc!r}") from exc
        older = raw.get("next")
        return messages, str(older) if older else None

    def token(self, room: str) -> RoomToken:
        raw = self._call("GET", "/token?" + urllib.parse.urlencode({"rooms": _room(room)}))
        return RoomToken.from_response(room, raw)

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        route = f"{method} {path.split('?')[0]}"
        for attempt in (1, 2):  # one retry with a renewed ID token after a 401
            request = urllib.request.Request(  # noqa: S310 - the scheme comes from configuration
                self.api_url + path,
                data=data,
                method=method,
                headers={
                    "Authorization": self._id_tokens.id_token(force_refresh=attempt == 2),
                    "Accept": "application/json",
                    "Content-Type": "application/json",
                },
            )
            try:
                with open_without_redirects(
                    request, timeout=self._timeout, context=self._ssl
                ) as answer:
                    raw = json.loads(read_answer(answer, route) or b"{}")
            except urllib.error.HTTPError as exc:
                message = error_message(exc.read())
                if exc.code == 401 and attempt == 1:
                    continue
                raise http_error(exc.code, route, message) from exc
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                raise ConnectionLost(f"{route} failed: {exc}") from exc
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
                # RecursionError: JSON nested deeper than the parser recurses.
                raise ConnectionLost(f"{route} answered non-JSON") from exc
            if not isinstance(raw, dict):
                raise ConnectionLost(f"{route} answered non-object JSON")
            return raw
        raise AssertionError("unreachable")  # pragma: no cover


def _room(room: str) -> str:
    try:
        return validate_name(room, what="room name")
    except ContractError as exc:
        raise IotNotifyError(str(exc)) from exc


class RoomConnection:
    """One MQTT connection to one room: receive its messages, send to its input.

    ``on_message`` runs on paho's network thread for every envelope on the
    room topic. ``on_rejected``, when given, runs there for each
    ``chat.rejected`` notification the moderator sends to the user's own
    topic about this room (a line too long, sent too fast, empty): without
    it such a line just never appears. Use as a context manager, or call
    :meth:`close`.
    """

    def __init__(
        self,
        token: RoomToken,
        *,
        on_message: Callable[[ChatMessage], None],
        on_rejected: Callable[[Notification], None] | None = None,
        device: str | None = None,
        ca_file: str | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.token = token
        self._on_message = on_message
        self._on_rejected = on_rejected
        self._subscribed = threading.Event()
        self._closed = threading.Event()
        self._error: str | None = None
        url = urlsplit(token.url)
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id_for(token.user_id, device),
            protocol=mqtt.MQTTv311,
            transport="websockets",
            reconnect_on_failure=False,
        )
        self._client.ws_set_options(path=f"{url.path}?{url.query}")
        if url.scheme == "wss":
            self._client.tls_set_context(client_context(ca_file))
        self._client.on_connect = self._connected
        self._client.on_subscribe = lambda *_args: self._subscribed.set()
        self._client.on_message = self._received
        self._client.on_disconnect = self._disconnected
        try:
            self._client.connect(
                url.hostname or "localhost", url.port or (443 if url.scheme == "wss" else 80)
            )
        except OSError as exc:
            raise ConnectionLost(f"cannot reach {url.hostname}: {exc}") from exc
        self._client.loop_start()
        if not self._subscribed.wait(connect_timeout):
            self.close()
            raise ConnectionLost(self._error or f"could not join room {token.room!r}")

    @property
    def closed(self) -> bool:
        """Whether the connection ended (the server closed it, or :meth:`close`)."""
        return self._closed.is_set()

    def wait_closed(self, timeout: float | None = None) -> bool:
        return self._closed.wait(timeout)

    def _connected(self, client: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        if getattr(reason, "is_failure", False):
            self._error = f"connection refused: {reason}"
            return
        own = self.token.own_topic
        if self._on_rejected is not None and own is not None:
            client.subscribe([(self.token.topic, 0), (own, 0)])
        else:
            client.subscribe(self.token.topic, qos=0)

    def _received(self, _c: Any, _u: Any, msg: Any) -> None:
        if msg.topic == self.token.own_topic and self._on_rejected is not None:
            self._rejection(msg.payload)
            return
        if msg.topic != self.token.topic:
            return
        try:
            raw = json.loads(msg.payload)
            message = ChatMessage.from_dict(raw) if isinstance(raw, dict) else None
        except (UnicodeDecodeError, json.JSONDecodeError, InvalidEnvelope):
            message = None
        if message is not None:
            self._on_message(message)

    def _rejection(self, payload: bytes) -> None:
        try:
            note = Notification.from_json(payload)
        except ContractError:
            return  # the user's other notifications are not this room's business
        if note.type == CHAT_REJECTED_TYPE and note.data.get("room") == self.token.room:
            assert self._on_rejected is not None
            self._on_rejected(note)

    def _disconnected(self, *_args: Any) -> None:
        self._closed.set()

    def send(self, text: str, *, cid: str | None = None) -> str:
        """Publish ``{"text", "cid"}`` to the room's input topic (QoS 1); the
        moderator decides what reaches the room. Returns the line's ``cid``:
        a fresh one (:func:`iotnotify.contract.new_chat_cid`) unless ``cid`` is
        given. To send a line again because its first send may or may not
        have arrived (``ConnectionLost``, a connection that dropped before the
        broker's PUBACK), pass the ``cid`` the first send returned: the
        moderator drops a second copy of a (room, sender, cid) seen in the
        last 10 minutes, so the room shows the line once. The envelope that
        reaches the room carries the same ``cid``.

        Raises ``ConnectionLost`` when closed,
        :class:`~iotnotify.errors.InvalidEnvelope` for a ``cid`` outside the
        contract (:func:`iotnotify.contract.validate_chat_cid`) and
        :class:`~iotnotify.errors.InvalidJson` for text that is not valid
        Unicode (lone surrogates: what Python makes of bytes that are not
        UTF-8), which no payload can carry."""
        cid = new_chat_cid() if cid is None else validate_chat_cid(cid)
        if self.closed:
            raise ConnectionLost(f"not connected to room {self.token.room!r}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidJson(
                "the line is not valid UTF-8 (it holds bytes or lone surrogates "
                f"at {exc.start}..{exc.end}); nothing was sent"
            ) from exc
        payload = json.dumps({"text": text, "cid": cid}, ensure_ascii=False)
        info = self._client.publish(self.token.input_topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionLost(f"could not send to room {self.token.room!r} (rc {info.rc})")
        return cid

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._closed.set()

    def __enter__(self) -> RoomConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
