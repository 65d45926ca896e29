"""``POST /notify`` (IAM) and ``POST /notify/key`` (API key): backends send notifications.

Both routes reach this one function. On ``/notify`` API Gateway has already
verified a SigV4 signature and names the caller in ``identity.userArn``; on
``/notify/key`` API Gateway checks nothing, so the ``x-api-key`` header is
compared here with the SSM SecureString.
"""

from __future__ import annotations

from typing import Any

from iotnotify_handlers import clients
from iotnotify_handlers.errors import Unauthorized
from iotnotify_handlers.http import Request, api_handler
from iotnotify_handlers.notify_requests import ApiKeyVerifier, NotifyRequest, send
from iotnotify_handlers.settings import settings

__all__ = ["API_KEY_RESOURCE", "handler"]

API_KEY_RESOURCE = "/notify/key"


@api_handler
def handler(request: Request) -> tuple[int, Any]:
    if request.resource != API_KEY_RESOURCE:
        # The IAM route: never serve it without the identity API Gateway
        # attaches after checking the signature (a misconfigured route
        # without IAM auth then fails closed).
        if request.iam_user_arn is None:
            raise Unauthorized("sign the request with SigV4 (IAM) or use POST /notify/key")
    else:
        s = settings()
        ApiKeyVerifier(
            clients.ssm_provider(),
            parameter=s.notify_api_key_parameter,
            max_age_seconds=s.api_key_cache_seconds,
        ).verify(request.headers.get("x-api-key", ""))
    notify = NotifyRequest.parse(request.json())
    return 200, send(notify, clients.publisher())
