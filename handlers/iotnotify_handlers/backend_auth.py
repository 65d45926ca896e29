"""Who may call the backend routes (``POST /notify``, ``POST /games``): one rule.

Each backend route comes in two forms. The plain route (``/notify``,
``/games``) uses API Gateway's IAM auth: API Gateway has verified a SigV4
signature and names the caller in ``identity.userArn``. The ``/key`` form
(``/notify/key``, ``/games/key``) is for servers that cannot sign: API
Gateway only requires the header there, so the ``x-api-key`` header is compared here
with the SSM SecureString ``/{app}/{ssmStage}/notify-api-key`` (constant
time, TTL cache, never in the environment or a log line).
"""

from __future__ import annotations

from iotnotify_handlers import clients
from iotnotify_handlers.errors import Unauthorized
from iotnotify_handlers.http import Request
from iotnotify_handlers.notify_requests import ApiKeyVerifier
from iotnotify_handlers.settings import settings

__all__ = ["API_KEY_SUFFIX", "authorize_backend"]

API_KEY_SUFFIX = "/key"


def authorize_backend(request: Request) -> None:
    """Return if the caller is an IAM-authorised backend or holds the API key.

    Raises :class:`Unauthorized` (401) otherwise; ServiceUnavailable (503)
    when the key cannot be read from SSM.
    """
    if not request.resource.endswith(API_KEY_SUFFIX):
        # The IAM route: never serve it without the identity API Gateway
        # attaches after checking the signature (a misconfigured route
        # without IAM auth then fails closed).
        if request.iam_user_arn is None:
            raise Unauthorized(
                f"sign the request with SigV4 (IAM) or use POST {request.resource}{API_KEY_SUFFIX}"
            )
        return
    if "x-api-key" in request.repeated_headers:
        # One credential per request: `headers` holds the last of them only.
        raise Unauthorized("more than one x-api-key header; send one")
    s = settings()
    ApiKeyVerifier(
        clients.ssm_provider(),
        parameter=s.notify_api_key_parameter,
        max_age_seconds=s.api_key_cache_seconds,
    ).verify(request.headers.get("x-api-key", ""))
