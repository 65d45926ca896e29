"""The moderator Lambda: invoked by the chat topic rule with one message.

Event: the rule's output ``{"payload" (base64), "room", "clientId", "receivedAt"}``
(:func:`iotnotify.topic_rules.chat_moderation_rule`). Returns
``{"status": "published"|"republished"|"duplicate"|"rejected", "reason"?, "id"?}``
(``republished``: a retried or repeated event, whose message was stored once
and is published again under the same id; ``duplicate``: another copy of a
line whose ``cid`` the moderator saw, dropped, ``id`` being the first
copy's). AWS failures raise, so Lambda's asynchronous retry and on-failure
destination (the rule's DLQ) keep the message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from iotnotify_handlers import clients

__all__ = ["handler"]


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    result = clients.moderator().handle(event)
    body: dict[str, Any] = {"status": result.status}
    if result.reason:
        body["reason"] = result.reason
    if result.message is not None:
        body["id"] = result.message.id
    elif result.duplicate_of:
        body["id"] = result.duplicate_of
    return body
