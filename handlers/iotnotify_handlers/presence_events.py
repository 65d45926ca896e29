"""The presence Lambda: invoked by the presence topic rule with one lifecycle event.

Event: the rule's output ``{"clientId", "timestamp", "eventType",
"sessionIdentifier"}`` (:func:`iotnotify.topic_rules.presence_rule`).
Returns ``{"status": "applied"|"stale"|"ignored"}``: ``stale`` for a
duplicate or an event older than what its session holds (lifecycle events
may arrive out of order or twice), ``ignored`` for a client id that is not
``{userId}.{suffix}``. DynamoDB failures raise, so Lambda's asynchronous
retry and the on-failure destination keep the event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from iotnotify.presence import PresenceEvent
from iotnotify_handlers import clients

__all__ = ["handler"]


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    parsed = PresenceEvent.parse(event)
    presence = clients.presence()
    if parsed is None or presence is None:
        return {"status": "ignored"}
    return {"status": "applied" if presence.apply(parsed) else "stale"}
