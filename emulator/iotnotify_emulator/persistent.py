"""Persistent sessions whose client is away, kept until they expire.

AWS IoT developer guide, "MQTT" -> "Using MQTT persistent sessions": a
CONNECT with ``cleanSession=0`` creates or resumes a session; while the
client is away the broker keeps its subscriptions, its unacknowledged QoS 1
messages and new QoS 1 messages matching QoS 1 subscriptions; on
reconnection ``sessionPresent`` is 1, subscriptions are reinstated and the
stored messages are sent. The session expires one hour (the default quota)
after the disconnect; a CONNECT with ``cleanSession=1`` ends it.

The emulator keeps the closed :class:`~iotnotify_emulator.broker.MqttSession`
object itself: it stays in the subscription trie, so routing needs no second
path, and ``MqttSession.deliver_publish`` stores what arrives for it. The
store below only owns the expiry timers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["OfflineSessions"]


class _Session(Protocol):
    @property
    def client_id(self) -> str: ...


S = TypeVar("S", bound=_Session)


class OfflineSessions(Generic[S]):
    """Client id -> the offline session and the timer that ends it."""

    def __init__(self, on_expire: Callable[[S], None]) -> None:
        self._on_expire = on_expire
        self._kept: dict[str, tuple[S, asyncio.TimerHandle]] = {}

    def __len__(self) -> int:
        return len(self._kept)

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._kept

    def keep(self, session: S, expiry: float) -> None:
        """Keep ``session`` for ``expiry`` seconds (replacing, and ending, an older one)."""
        self.discard(session.client_id)
        handle = asyncio.get_running_loop().call_later(expiry, self._expire, session)
        self._kept[session.client_id] = (session, handle)

    def take(self, client_id: str) -> S | None:
        """The kept session of ``client_id``, now resumed (no longer expiring)."""
        entry = self._kept.pop(client_id, None)
        if entry is None:
            return None
        entry[1].cancel()
        return entry[0]

    def discard(self, client_id: str) -> None:
        """End the kept session of ``client_id`` now, if any."""
        session = self.take(client_id)
        if session is not None:
            self._on_expire(session)

    def _expire(self, session: S) -> None:
        entry = self._kept.get(session.client_id)
        if entry is not None and entry[0] is session:
            del self._kept[session.client_id]
            self._on_expire(session)
