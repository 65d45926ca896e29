"""An independent check of AWS IoT's presigned-URL rule, for tests.

IoT verifies a WebSocket URL's SigV4 signature over the canonical query
*without* ``X-Amz-Security-Token`` (and ``X-Amz-Signature``). This rebuilds
that canonical request with botocore's own primitives at the URL's
timestamp and compares signatures, so the publisher side is checked without
relying on the emulator's verifier.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def verifies_under_iot_rule(url: str, *, secret_access_key: str) -> bool:
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    given = dict(params)
    signature = given.get("X-Amz-Signature", "")
    kept = [(k, v) for k, v in params if k not in ("X-Amz-Signature", "X-Amz-Security-Token")]
    access_key, _date, region, service, _ = given["X-Amz-Credential"].split("/")
    unsigned = urlunsplit(parts._replace(query=urlencode(kept, safe="")))
    auth = SigV4QueryAuth(
        Credentials(access_key, secret_access_key),
        service,
        region,
        expires=int(given.get("X-Amz-Expires", "3600")),
    )
    request = AWSRequest(method="GET", url=unsigned)
    request.context["timestamp"] = given["X-Amz-Date"]
    canonical = auth.canonical_request(request)
    expected = auth.signature(auth.string_to_sign(request, canonical), request)
    return hmac.compare_digest(expected, signature)
