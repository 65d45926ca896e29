"""``POST /notify`` (IAM) and ``POST /notify/key`` (API key): backends send notifications.

Both routes reach this one function. On ``/notify`` API Gateway has already
verified a SigV4 signature and names the caller in ``identity.userArn``; on
``/notify/key`` API Gateway only requires the header, so the ``x-api-key`` header is
compared here with the SSM SecureString.

A ``game`` target must be a registered game (``POST /games`` or the
publisher's ``register_game``): 404 otherwise, as ``GET /token?games=``
answers, so a mistyped id is not a 200 that reaches nobody.
"""

from __future__ import annotations

from typing import Any

from iotnotify_handlers import clients
from iotnotify_handlers.backend_auth import authorize_backend
from iotnotify_handlers.http import Request, api_handler
from iotnotify_handlers.notify_requests import NotifyRequest, send
from iotnotify_handlers.registered_games import registered_game

__all__ = ["API_KEY_RESOURCE", "handler"]

API_KEY_RESOURCE = "/notify/key"


@api_handler
def handler(request: Request) -> tuple[int, Any]:
    authorize_backend(request)  # IAM on /notify, the API key on /notify/key
    notify = NotifyRequest.parse(request.json())
    if notify.game is not None:
        registered_game(notify.game, hint=": register it first (POST /games)")
    return 200, send(notify, clients.publisher())
