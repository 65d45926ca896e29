"""SigV4 verification for the WebSocket upgrade (query) and iot-data publish (header).

The canonical request and the HMAC chain are botocore's
(:class:`botocore.auth.SigV4Auth`), so the emulator computes exactly what
botocore clients compute; they are written out here (:func:`canonical_request`,
compared with botocore's in tests/unit/emulator/test_emulator_sigv4.py)
because running each request through ``AWSRequest`` and ``SigV4Auth`` was
a fifth of the server's CPU per iot-data publish, and the signing key is
derived once per (secret, day, region, service) instead of per request (it
depends on nothing else; a rotated or revoked key is a different secret or no
credential at all, so the cache never answers for it). Two things are
adapted, because real IoT clients rely on them (see DESIGN.md, "What real
clients send"):

* the canonical headers are rebuilt from ``X-Amz-SignedHeaders`` exactly as
  received: awscrt signs ``connection;host`` (botocore's signer would drop
  ``connection``) and sends ``Host`` without the port;
* ``X-Amz-Security-Token`` is not part of the canonical query of a presigned
  IoT URL (it is appended after signing), so a URL whose signature covers
  the token does not verify, as on AWS.

A header-signed request always signs the SHA-256 of its body. The literal
``UNSIGNED-PAYLOAD`` in ``X-Amz-Content-SHA256`` is S3's option (S3 API
reference, "Signature Calculations for the Authorization Header"); botocore
uses it only for operations whose model says ``unsigned-body`` (its
``SigV4Auth.payload``), and iot-data's ``Publish`` has no such trait
(botocore ``data/iot-data/2015-05-28/service-2.json``). Other services
compute the canonical request from the body they received, so a request
signed over ``UNSIGNED-PAYLOAD`` does not verify there (aws-sdk-go
``aws/signer/v4/v4.go``: unsigned payloads for S3 only; aws-sdk-js-v3 issue
308: API Gateway's ``execute-api`` answers such a request with a signature
mismatch). Accepting it would let anyone holding a captured request swap its
body within the five-minute window.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, cast
from urllib.parse import quote, urlsplit

from botocore.auth import EMPTY_SHA256_HASH
from botocore.utils import normalize_url_path
from multidict import CIMultiDict

from iotnotify_emulator.credentials import Credential, CredentialStore, PrefetchingStore

__all__ = [
    "HEADER_SIGNATURE_MAX_SKEW",
    "SignatureError",
    "canonical_request",
    "prefetch_signer",
    "verify_header_signature",
    "verify_query_signature",
]

# Header-signed requests (iot-data): AWS refuses one more than five minutes
# from its clock (IAM user guide, "AWS Signature Version 4 for API requests",
# replay protection). Presigned WebSocket URLs keep their own, wider window.
HEADER_SIGNATURE_MAX_SKEW: Final = timedelta(minutes=5)

_ALGORITHM: Final = "AWS4-HMAC-SHA256"
_TIMESTAMP_FORMAT: Final = "%Y%m%dT%H%M%SZ"
# Presigned URLs may live at most 7 days (SigV4 query parameters reference).
_MAX_EXPIRES: Final = 7 * 24 * 3600
_AUTH_HEADER_RE: Final = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-fA-F]+)\s*$"
)


class SignatureError(Exception):
    """A request that fails authentication; ``reason`` is for the refusal log."""

    def __init__(self, reason: str, *, expired: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.expired = expired


@dataclass(frozen=True, slots=True)
class _Parts:
    access_key_id: str
    scope_date: str
    region: str
    service: str
    amz_date: str
    signed_headers: tuple[str, ...]
    signature: str


def _case_insensitive(headers: Mapping[str, str]) -> CIMultiDict[str]:
    """HTTP header names are case-insensitive (RFC 9110, 5.1); so is this lookup.

    Callers pass aiohttp's CIMultiDict, a plain ``dict`` with the names as
    sent, or one with the names lower-cased (API Gateway events): all must
    verify alike. Repeated headers keep every value.
    """
    return CIMultiDict(headers)


def _split_credential(value: str) -> tuple[str, str, str, str]:
    parts = value.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
        raise SignatureError("malformed credential scope")
    return parts[0], parts[1], parts[2], parts[3]


@functools.lru_cache(maxsize=256)
def _signed_at(amz_date: str) -> datetime | None:
    # Requests signed in the same second share the text; strptime is slow.
    try:
        return datetime.strptime(amz_date, _TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def _check_time(amz_date: str, now: datetime, max_skew: timedelta, expires: int | None) -> None:
    signed_at = _signed_at(amz_date)
    if signed_at is None:
        raise SignatureError(f"malformed X-Amz-Date {amz_date!r}")
    if abs(now - signed_at) > max_skew:
        raise SignatureError(
            f"signature date {amz_date} is more than {int(max_skew.total_seconds())} s "
            "from the server time"
        )
    if expires is not None and now > signed_at + timedelta(seconds=expires):
        raise SignatureError(f"presigned URL expired at {signed_at + timedelta(seconds=expires)}")


def _verify(
    parts: _Parts,
    *,
    method: str,
    raw_path: str,
    params: Sequence[tuple[str, str]],
    headers: CIMultiDict[str],
    payload_hash: str,
    token: str | None,
    store: CredentialStore,
    service: str,
    region: str,
    now: datetime,
) -> Credential:
    if parts.service != service:
        raise SignatureError(f"credential scope names service {parts.service!r}, not {service!r}")
    if parts.region != region:
        raise SignatureError(f"credential scope names region {parts.region!r}, not {region!r}")
    if parts.scope_date != parts.amz_date[:8]:
        raise SignatureError("credential scope date does not match X-Amz-Date")
    credential = store.lookup(parts.access_key_id)
    if credential is None:
        raise SignatureError(f"unknown access key {parts.access_key_id}")
    if credential.session_token != token:
        what = "missing" if token is None else "does not match the access key"
        raise SignatureError(f"security token {what}")
    if credential.expired(now):
        raise SignatureError(f"credentials of {parts.access_key_id} expired", expired=True)
    values: dict[str, str] = {}
    for name in parts.signed_headers:
        received = headers.getall(name, [])
        if not received:
            raise SignatureError(f"signed header {name!r} is missing from the request")
        # SigV4 joins a repeated header's values with commas.
        values[name] = ",".join(received)
    canonical = canonical_request(
        method=method,
        raw_path=raw_path,
        params=params,
        signed_headers=parts.signed_headers,
        values=values,
        payload_hash=payload_hash,
    )
    scope = f"{parts.amz_date[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        (
            _ALGORITHM,
            parts.amz_date,
            scope,
            hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        )
    )
    key = _signing_key(credential.secret_access_key, parts.amz_date[:8], region, service)
    expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parts.signature.lower()):
        raise SignatureError("signature does not match")
    return credential


def canonical_request(
    *,
    method: str,
    raw_path: str,
    params: Sequence[tuple[str, str]],
    signed_headers: Sequence[str],
    values: Mapping[str, str],
    payload_hash: str,
) -> str:
    """The SigV4 canonical request exactly as botocore's ``SigV4Auth`` builds it
    for ``AWSRequest(url="http://emulator" + raw_path, params=params)`` whose
    headers to sign are ``signed_headers`` (lower-case, in the order the client
    listed them) with ``values`` (each name's received values, comma-joined).

    Written out rather than run through ``SigV4Auth`` + ``AWSRequest``: that
    machinery was a fifth of an iot-data publish's server CPU, and the steps
    are few (tests/unit/emulator/test_emulator_sigv4.py compares the two).
    """
    url_query = ""
    if _PLAIN_PATH.fullmatch(raw_path) and "/." not in raw_path and "//" not in raw_path:
        # urlsplit, dot-segment and empty-segment removal and quote would
        # change nothing but the percent signs: the common case
        # (/topics/a%2Fb) without them.
        path = raw_path.replace("%", "%25")
    else:
        parts = urlsplit(f"http://emulator{raw_path}")
        path = quote(normalize_url_path(parts.path), safe="/~")
        url_query = parts.query
    if params:
        pairs = sorted((_quote_part(key), _quote_part(str(value))) for key, value in params)
    else:  # botocore then reads the query left in the URL, as it is
        pairs = sorted(pair.partition("=")[::2] for pair in url_query.split("&") if url_query)
    query = "&".join(f"{key}={value}" for key, value in pairs)
    # botocore keeps a name listed twice as two equal values of one header.
    counts: dict[str, int] = {}
    for name in signed_headers:
        counts[name] = counts.get(name, 0) + 1
    lines = []
    for name in sorted(counts):
        value = " ".join(values[name].split())  # SigV4's Trimall
        lines.append(f"{name}:{','.join([value] * counts[name])}")
    names = ";".join(sorted(name.strip() for name in counts))
    return "\n".join((method.upper(), path, query, "\n".join(lines) + "\n", names, payload_hash))


# A path quote(..., safe="/~") leaves alone except for '%' (encoded again).
_PLAIN_PATH: Final = re.compile(r"/[A-Za-z0-9_.~/%-]*")
_UNRESERVED: Final = re.compile(r"[A-Za-z0-9_.~-]*")


def _quote_part(text: str) -> str:
    # surrogateescape: bytes a query held that were not UTF-8 come back as
    # they were signed (data_api.parse_query keeps them as lone surrogates).
    if _UNRESERVED.fullmatch(text):
        return text
    return quote(text, safe="-_.~", errors="surrogateescape")


@functools.lru_cache(maxsize=4096)
def _signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    """SigV4's signing key (four chained HMACs), the same for a key all day:
    derived once per (secret, day, region, service), not once per request."""
    key = f"AWS4{secret}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


async def prefetch_signer(
    store: CredentialStore,
    *,
    query: Sequence[tuple[str, str]] = (),
    headers: Mapping[str, str] | None = None,
) -> None:
    """Before a ``verify_*`` call: let a store that asks another process
    (:class:`~iotnotify_emulator.credentials.PrefetchingStore`) fetch the key
    the request claims, awaited, so the event loop serves others meanwhile;
    nothing for any other store. The key comes from ``headers``'
    Authorization (header-signed) or else ``query``'s X-Amz-Credential
    (presigned), read without any check: the verification does those.
    """
    if getattr(store, "prefetch", None) is None:  # the common case: no cost
        return
    scope: str | None
    if headers is not None:
        match = _AUTH_HEADER_RE.match(_case_insensitive(headers).get("Authorization", ""))
        scope = match.group("credential") if match else None
    else:
        scope = next((value for key, value in query if key == "X-Amz-Credential"), None)
    if scope is None:
        return
    try:
        access_key_id = _split_credential(scope)[0]
    except SignatureError:
        return  # the verification refuses it
    await cast("PrefetchingStore", store).prefetch(access_key_id)


def verify_query_signature(
    *,
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    store: CredentialStore,
    service: str,
    region: str,
    max_skew: timedelta = timedelta(minutes=15),
    now: datetime | None = None,
) -> Credential:
    """Verify a presigned URL (the IoT WebSocket upgrade); returns the credential.

    ``query`` is the decoded query as received, in order; ``headers`` may be
    any mapping (names are matched case-insensitively).
    """
    values: dict[str, str] = {}
    for key, value in query:
        if key.startswith("X-Amz-"):
            if key in values:
                raise SignatureError(f"repeated query parameter {key}")
            values[key] = value
    missing = [
        name
        for name in (
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Date",
            "X-Amz-SignedHeaders",
            "X-Amz-Signature",
        )
        if name not in values
    ]
    if missing:
        raise SignatureError(f"missing query parameters {', '.join(missing)}")
    if values["X-Amz-Algorithm"] != _ALGORITHM:
        raise SignatureError(f"unsupported algorithm {values['X-Amz-Algorithm']!r}")
    expires: int | None = None
    if "X-Amz-Expires" in values:
        # ASCII digits only: int() also reads "+60", " 60" and Arabic-Indic digits.
        if not values["X-Amz-Expires"].isascii() or not values["X-Amz-Expires"].isdigit():
            raise SignatureError("X-Amz-Expires is not an integer")
        expires = int(values["X-Amz-Expires"])
        if not 0 < expires <= _MAX_EXPIRES:
            raise SignatureError(f"X-Amz-Expires {expires} out of range")
    moment = now or datetime.now(UTC)
    _check_time(values["X-Amz-Date"], moment, max_skew, expires)
    access_key_id, scope_date, region_name, service_name = _split_credential(
        values["X-Amz-Credential"]
    )
    parts = _Parts(
        access_key_id=access_key_id,
        scope_date=scope_date,
        region=region_name,
        service=service_name,
        amz_date=values["X-Amz-Date"],
        signed_headers=tuple(values["X-Amz-SignedHeaders"].lower().split(";")),
        signature=values["X-Amz-Signature"],
    )
    # A signature that does not cover Host could be replayed against any
    # host; AWS requires it in every SigV4 request (SigV4 reference, "Create a
    # canonical request": host is always signed), as the header path does.
    if "host" not in parts.signed_headers:
        raise SignatureError("the Host header must be signed (X-Amz-SignedHeaders omits host)")
    params = [
        (key, value)
        for key, value in query
        if key not in ("X-Amz-Signature", "X-Amz-Security-Token")
    ]
    return _verify(
        parts,
        method=method,
        raw_path=raw_path,
        params=params,
        headers=_case_insensitive(headers),
        payload_hash=EMPTY_SHA256_HASH,
        token=values.get("X-Amz-Security-Token"),
        store=store,
        service=service,
        region=region,
        now=moment,
    )


def verify_header_signature(
    *,
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    store: CredentialStore,
    service: str,
    region: str,
    max_skew: timedelta = HEADER_SIGNATURE_MAX_SKEW,
    now: datetime | None = None,
) -> Credential:
    """Verify an ``Authorization: AWS4-HMAC-SHA256 ...`` request; the signer's credential.

    For iot-data publish, API Gateway's IAM routes (``execute-api``) and the
    local STS. The signature covers the SHA-256 of ``body``; an
    ``X-Amz-Content-SHA256`` header, if sent, must be that hash (not S3's
    ``UNSIGNED-PAYLOAD``: module docstring). Raises :class:`SignatureError`.
    ``headers`` may be any mapping: names are matched case-insensitively. A
    request whose ``X-Amz-Date`` is more than ``max_skew`` (5 minutes, as AWS:
    IAM user guide, "AWS Signature Version 4 for API requests": "a request must
    reach AWS within five minutes of the time stamp in the request") from now
    is refused, so a captured request cannot be replayed for long.
    """
    received = _case_insensitive(headers)
    authorization = received.get("Authorization")
    if not authorization:
        raise SignatureError("missing Authorization header")
    match = _AUTH_HEADER_RE.match(authorization)
    if match is None:
        raise SignatureError("malformed Authorization header")
    amz_date = received.get("X-Amz-Date")
    if not amz_date:
        raise SignatureError("missing X-Amz-Date header")
    moment = now or datetime.now(UTC)
    _check_time(amz_date, moment, max_skew, None)
    actual_hash = hashlib.sha256(body).hexdigest()
    declared = received.get("X-Amz-Content-SHA256")
    if declared is not None and declared != actual_hash:
        # UNSIGNED-PAYLOAD included: S3's option only (module docstring).
        raise SignatureError("X-Amz-Content-SHA256 is not the SHA-256 of the body")
    access_key_id, scope_date, region_name, service_name = _split_credential(
        match.group("credential")
    )
    parts = _Parts(
        access_key_id=access_key_id,
        scope_date=scope_date,
        region=region_name,
        service=service_name,
        amz_date=amz_date,
        signed_headers=tuple(match.group("signed").lower().split(";")),
        signature=match.group("signature"),
    )
    if "host" not in parts.signed_headers:
        raise SignatureError("the Host header must be signed")
    return _verify(
        parts,
        method=method,
        raw_path=raw_path,
        params=list(query),
        headers=received,
        payload_hash=actual_hash,
        token=received.get("X-Amz-Security-Token"),
        store=store,
        service=service,
        region=region,
        now=moment,
    )
