"""``GET /token?rooms=a,b``: credentials and a presigned URL for the signed-in user.

``rooms`` (optional, comma-separated) adds each room's channel to the token:
400 for an invalid name or more than ``MAX_CHANNELS_PER_TOKEN``, 404 for an
unknown room, 403 for a private room the caller is not a member of.
"""

from __future__ import annotations

from typing import Any

from iotnotify.contract import Channel
from iotnotify.errors import ContractError
from iotnotify.policies import MAX_CHANNELS_PER_TOKEN
from iotnotify_handlers import clients
from iotnotify_handlers.errors import BadRequest
from iotnotify_handlers.http import Request, api_handler
from iotnotify_handlers.settings import settings
from iotnotify_handlers.token_vending import TokenVendor

__all__ = ["handler", "requested_rooms"]


def requested_rooms(raw: str | None) -> list[str]:
    """The distinct room names of ``?rooms=``, in order; 400 if invalid or too many."""
    names = list(dict.fromkeys(n.strip() for n in (raw or "").split(",") if n.strip()))
    if len(names) > MAX_CHANNELS_PER_TOKEN:
        raise BadRequest(
            f"a token can carry at most {MAX_CHANNELS_PER_TOKEN} channels (STS limits a "
            f"session policy to 2048 characters); asked for {len(names)}"
        )
    for name in names:
        try:
            Channel("room", name)
        except ContractError as exc:
            raise BadRequest(str(exc)) from exc
    return names


@api_handler
def handler(request: Request) -> tuple[int, Any]:
    user_id = request.user_id()  # validated before any policy is built or STS called
    names = requested_rooms(request.query.get("rooms"))
    channels = []
    if names:
        rooms = clients.chat_rooms()
        channels = [rooms.usable(name, user_id=user_id).channel for name in names]
    vendor = TokenVendor(settings=settings(), sts=clients.sts(), endpoint=clients.iot_endpoint())
    return 200, vendor.vend(user_id, channels=channels)
