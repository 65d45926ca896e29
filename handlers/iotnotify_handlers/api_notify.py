"""``POST /notify``: game servers and other backends send notifications."""

from __future__ import annotations

from typing import Any

from iotnotify_handlers import clients
from iotnotify_handlers.http import Request, api_handler
from iotnotify_handlers.notify_requests import (
    ApiKeyVerifier,
    NotifyRequest,
    bearer_token,
    send,
)
from iotnotify_handlers.settings import settings

__all__ = ["handler"]


@api_handler
def handler(request: Request) -> tuple[int, Any]:
    # API Gateway fills identity.userArn only after verifying a SigV4
    # signature (IAM auth); without it the caller must hold the API key.
    if request.iam_user_arn is None:
        s = settings()
        ApiKeyVerifier(
            clients.ssm_provider(),
            parameter=s.notify_api_key_parameter,
            max_age_seconds=s.api_key_cache_seconds,
        ).verify(bearer_token(request.headers))
    notify = NotifyRequest.parse(request.json())
    return 200, send(notify, clients.publisher())
