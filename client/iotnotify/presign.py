"""Presigned ``wss://.../mqtt`` URLs the way AWS IoT Core verifies them.

IoT's rule differs from plain SigV4 query auth: the session token is appended
*after* signing and is not part of the canonical query. botocore's
``SigV4QueryAuth`` with session credentials would put the token inside the
signature (IoT rejects that), so we sign with token-less credentials and then
append ``X-Amz-Security-Token``. botocore does the signing itself, including
the ``host`` header as the client will send it (``host:port`` unless the port
is the scheme's default).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

__all__ = ["IOT_WEBSOCKET_SERVICE", "presign_mqtt_url"]

IOT_WEBSOCKET_SERVICE: Final = "iotdevicegateway"


def presign_mqtt_url(
    *,
    endpoint: str,
    region: str,
    access_key_id: str,
    secret_access_key: str,
    session_token: str | None = None,
    scheme: str = "wss",
    expires_seconds: int = 3600,
) -> str:
    """A URL a client opens as-is: ``{scheme}://{endpoint}/mqtt?X-Amz-...``."""
    request = AWSRequest(method="GET", url=f"{scheme}://{endpoint}/mqtt")
    signer = SigV4QueryAuth(
        Credentials(access_key_id, secret_access_key),  # no token: IoT excludes it
        IOT_WEBSOCKET_SERVICE,
        region,
        expires=expires_seconds,
    )
    signer.add_auth(request)
    url = str(request.url)
    if session_token:
        url += "&X-Amz-Security-Token=" + quote(session_token, safe="")
    return url
