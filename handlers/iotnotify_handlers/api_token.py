"""``GET /token``: credentials and a presigned URL for the signed-in user."""

from __future__ import annotations

from typing import Any

from iotnotify_handlers import clients
from iotnotify_handlers.http import Request, api_handler
from iotnotify_handlers.settings import settings
from iotnotify_handlers.token_vending import TokenVendor

__all__ = ["handler"]


@api_handler
def handler(request: Request) -> tuple[int, Any]:
    user_id = request.user_id()  # validated before any policy is built or STS called
    vendor = TokenVendor(settings=settings(), sts=clients.sts(), endpoint=clients.iot_endpoint())
    return 200, vendor.vend(user_id)
