"""``GET /notifications?since=&limit=``: what the signed-in user missed.

A page holds at most ``limit`` notifications and at most
``iotnotify.inbox.MAX_PAGE_BYTES`` of envelopes, so its response stays under
Lambda's 6 MB limit whatever the notifications' sizes; ``next`` is set
whenever more may follow, whichever cap ended the page. 400 for a bad
``since`` or ``limit``; 503 when the inbox cannot be read (a DynamoDB outage
or throttling: try again).
"""

from __future__ import annotations

import re
from typing import Any, Final

from iotnotify.contract import validate_notification_id
from iotnotify.errors import InvalidEnvelope, PublishError
from iotnotify.inbox import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from iotnotify.presence import PresenceError
from iotnotify_handlers import clients
from iotnotify_handlers.errors import BadRequest, ServiceUnavailable
from iotnotify_handlers.http import Request, api_handler, logger

__all__ = ["handler"]

_DIGITS_RE: Final = re.compile(r"[0-9]{1,6}", re.ASCII)


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    # ASCII digits only: str.isdigit() also accepts "²" and "①" (int() then
    # fails) and int() reads Arabic-Indic "١٢" as 12.
    if not _DIGITS_RE.fullmatch(raw) or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_PAGE_SIZE}")
    return int(raw)


@api_handler
def handler(request: Request) -> tuple[int, Any]:
    # The user comes from the verified token only: no parameter can name another.
    user_id = request.user_id()
    since = request.query.get("since") or None
    if since is not None:
        # The contract's id rule: a catch-up's look-back bound
        # (iotnotify.contract.id_lower_bound, random part all "0") is one.
        try:
            validate_notification_id(since)
        except InvalidEnvelope as exc:
            raise BadRequest("since must be a notification id (a 26-character ULID)") from exc
    presence = clients.presence()
    if presence is not None:
        # Before the inbox read: a skip-offline send that races this
        # reconnect either sees this hint or is in the page (iotnotify.presence).
        try:
            presence.note_catch_up(user_id)
        except PresenceError:
            logger.warning("catch-up hint not recorded; a racing send may wait for the next one")
    limit = _limit(request.query.get("limit"))
    try:
        page = clients.inbox().since(user_id, since, limit=limit)
    except PublishError as exc:  # the inbox's DynamoDB failures (an outage, throttling)
        raise ServiceUnavailable("could not read the inbox, try again") from exc
    return 200, {
        "notifications": [note.to_dict() for note in page.notifications],
        "next": page.next_since,
    }
