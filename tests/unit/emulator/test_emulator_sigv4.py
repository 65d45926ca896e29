"""SigV4 verification against requests signed by botocore itself."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote, urlsplit

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials
from multidict import CIMultiDict

from iotnotify_emulator.credentials import InMemoryCredentialStore
from iotnotify_emulator.sigv4 import (
    SignatureError,
    canonical_request,
    verify_header_signature,
    verify_query_signature,
)
from iotnotify_emulator.testing import ALLOW_ALL, presign_url

REGION = "us-east-1"


def _query(url: str) -> tuple[str, list[tuple[str, str]]]:
    parts = urlsplit(url)
    pairs = [tuple(map(unquote, p.split("=", 1))) for p in parts.query.split("&")]
    return parts.path, [(k, v) for k, v in pairs]


@pytest.fixture
def store() -> InMemoryCredentialStore:
    return InMemoryCredentialStore()


def _verify_url(url: str, store: InMemoryCredentialStore, **kwargs: object) -> object:
    path, query = _query(url)
    headers = CIMultiDict({"Host": urlsplit(url).netloc})
    return verify_query_signature(
        method="GET",
        raw_path=path,
        query=query,
        headers=headers,
        store=store,
        service="iotdevicegateway",
        region=REGION,
        **kwargs,  # type: ignore[arg-type]
    )


def test_presigned_url_verifies(store: InMemoryCredentialStore) -> None:
    credential = store.issue([ALLOW_ALL])
    url = presign_url("ws://127.0.0.1:8080/mqtt", credential, region=REGION)
    assert _verify_url(url, store) == credential


def test_expired_presigned_url_is_refused(store: InMemoryCredentialStore) -> None:
    credential = store.issue([ALLOW_ALL])
    url = presign_url("ws://127.0.0.1:8080/mqtt", credential, region=REGION, expires=60)
    later = datetime.now(UTC) + timedelta(seconds=120)
    with pytest.raises(SignatureError, match="expired"):
        _verify_url(url, store, now=later)


def test_clock_skew_beyond_fifteen_minutes_is_refused(store: InMemoryCredentialStore) -> None:
    credential = store.issue([ALLOW_ALL])
    url = presign_url("ws://127.0.0.1:8080/mqtt", credential, region=REGION, expires=86400)
    with pytest.raises(SignatureError, match="from the server time"):
        _verify_url(url, store, now=datetime.now(UTC) + timedelta(minutes=16))


def test_wrong_host_service_or_region_is_refused(store: InMemoryCredentialStore) -> None:
    credential = store.issue([ALLOW_ALL])
    url = presign_url("ws://127.0.0.1:8080/mqtt", credential, region=REGION)
    path, query = _query(url)
    with pytest.raises(SignatureError, match="does not match"):
        verify_query_signature(
            method="GET",
            raw_path=path,
            query=query,
            headers=CIMultiDict({"Host": "127.0.0.1"}),  # signed with the port
            store=store,
            service="iotdevicegateway",
            region=REGION,
        )
    other_service = presign_url("ws://h/mqtt", credential, region=REGION, service="iotdata")
    with pytest.raises(SignatureError, match="service"):
        _verify_url(other_service, store)
    other_region = presign_url("ws://h/mqtt", credential, region="eu-west-1")
    with pytest.raises(SignatureError, match="region"):
        _verify_url(other_region, store)


def test_missing_parameters_are_refused(store: InMemoryCredentialStore) -> None:
    with pytest.raises(SignatureError, match="missing"):
        verify_query_signature(
            method="GET",
            raw_path="/mqtt",
            query=[("X-Amz-Algorithm", "AWS4-HMAC-SHA256")],
            headers=CIMultiDict(),
            store=store,
            service="iotdevicegateway",
            region=REGION,
        )


def _signed_publish(
    store: InMemoryCredentialStore, body: bytes, *, sign_payload: bool = True
) -> tuple[AWSRequest, object]:
    """A publish signed by botocore; ``sign_payload=False`` signs over https
    with payload signing off, as S3 may be signed (``UNSIGNED-PAYLOAD``)."""
    credential = store.issue([ALLOW_ALL])
    scheme = "http" if sign_payload else "https"
    request = AWSRequest(
        method="POST",
        url=f"{scheme}://127.0.0.1:9000/topics/app%2Fdev%2Fx?qos=1",
        data=body,
        headers={"Content-Type": "application/octet-stream"},
    )
    request.context["payload_signing_enabled"] = sign_payload
    SigV4Auth(
        Credentials(
            credential.access_key_id, credential.secret_access_key, credential.session_token
        ),
        "iotdata",
        REGION,
    ).add_auth(request)
    return request, credential


def _verify_request(
    request: AWSRequest, store: InMemoryCredentialStore, body: bytes, now: datetime | None = None
) -> object:
    parts = urlsplit(request.url)
    headers = CIMultiDict(dict(request.headers.items()))
    headers["Host"] = parts.netloc
    return verify_header_signature(
        method="POST",
        raw_path=parts.path,
        query=[("qos", "1")],
        headers=headers,
        body=body,
        store=store,
        service="iotdata",
        region=REGION,
        now=now,
    )


def test_header_signature_verifies_and_binds_the_body(store: InMemoryCredentialStore) -> None:
    request, credential = _signed_publish(store, b"payload")
    assert _verify_request(request, store, b"payload") == credential
    with pytest.raises(SignatureError):
        _verify_request(request, store, b"tampered")


@pytest.mark.parametrize("body", [b"payload", b"swapped after signing"])
def test_a_header_signed_request_over_unsigned_payload_is_refused(
    store: InMemoryCredentialStore, body: bytes
) -> None:
    # Given a publish signed as S3 may be signed: X-Amz-Content-SHA256 is the
    # literal UNSIGNED-PAYLOAD, so the signature does not cover the body
    request, _ = _signed_publish(store, b"payload", sign_payload=False)
    assert request.headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"

    # When the emulator verifies it, with its body or another one
    # Then it is refused: iot-data signs the body's hash, only S3 takes UNSIGNED-PAYLOAD
    with pytest.raises(SignatureError, match="not the SHA-256 of the body"):
        _verify_request(request, store, body)


@pytest.mark.parametrize(("minutes", "accepted"), [(-6, False), (-4, True), (4, True), (6, False)])
def test_a_header_signed_request_is_refused_more_than_five_minutes_from_the_clock(
    store: InMemoryCredentialStore, minutes: int, accepted: bool
) -> None:
    # AWS's replay window for header-signed requests is five minutes (IAM user guide).
    request, credential = _signed_publish(store, b"payload")
    now = datetime.now(UTC) + timedelta(minutes=minutes)

    def verify() -> object:
        return _verify_request(request, store, b"payload", now=now)

    if accepted:
        assert verify() == credential
    else:
        with pytest.raises(SignatureError, match="300 s from the server time"):
            verify()


def test_header_signature_without_authorization_is_refused(
    store: InMemoryCredentialStore,
) -> None:
    with pytest.raises(SignatureError, match="Authorization"):
        verify_header_signature(
            method="POST",
            raw_path="/topics/x",
            query=[],
            headers=CIMultiDict(),
            body=b"",
            store=store,
            service="iotdata",
            region=REGION,
        )


@pytest.mark.parametrize("case", [str.lower, str.title, str])
def test_header_signature_verifies_whatever_the_header_names_case(
    store: InMemoryCredentialStore, case: object
) -> None:
    # Given a request signed by botocore, handed over as a *plain dict* whose
    # names are lower-cased (API Gateway events), title-cased or as sent
    request, credential = _signed_publish(store, b"payload")
    parts = urlsplit(request.url)
    sent = {**dict(request.headers.items()), "Host": parts.netloc}
    headers = {case(name): value for name, value in sent.items()}  # type: ignore[operator]
    # When it is verified, Then the names match case-insensitively, as HTTP says
    assert (
        verify_header_signature(
            method="POST",
            raw_path=parts.path,
            query=[("qos", "1")],
            headers=headers,
            body=b"payload",
            store=store,
            service="iotdata",
            region=REGION,
        )
        == credential
    )


class _SignsWithoutHost(SigV4QueryAuth):
    """A presigner whose X-Amz-SignedHeaders names only a header of its choosing."""

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        signed = HTTPHeaders()
        signed["x-amz-meta"] = "anything"
        return signed


def test_presigned_url_whose_signed_headers_omit_host_is_refused(
    store: InMemoryCredentialStore,
) -> None:
    # Given a URL that is validly signed but does not bind the Host header
    credential = store.issue([ALLOW_ALL], with_token=False)
    request = AWSRequest(method="GET", url="http://127.0.0.1:8080/mqtt")
    _SignsWithoutHost(
        Credentials(credential.access_key_id, credential.secret_access_key),
        "iotdevicegateway",
        REGION,
        expires=3600,
    ).add_auth(request)
    path, query = _query(str(request.url))
    assert dict(query)["X-Amz-SignedHeaders"] == "x-amz-meta"
    # When it is presented (with the header it did sign), Then it is refused
    with pytest.raises(SignatureError, match="omits host"):
        verify_query_signature(
            method="GET",
            raw_path=path,
            query=query,
            headers=CIMultiDict({"Host": "127.0.0.1:8080", "x-amz-meta": "anything"}),
            store=store,
            service="iotdevicegateway",
            region=REGION,
        )


@pytest.mark.parametrize("expires", ["١٢٠", "+60", " 60", "6_0", "60.0"])
def test_x_amz_expires_must_be_ascii_digits(store: InMemoryCredentialStore, expires: str) -> None:
    credential = store.issue([ALLOW_ALL])
    path, query = _query(presign_url("ws://127.0.0.1:8080/mqtt", credential, region=REGION))
    query = [(k, expires if k == "X-Amz-Expires" else v) for k, v in query]
    with pytest.raises(SignatureError, match="not an integer"):
        verify_query_signature(
            method="GET",
            raw_path=path,
            query=query,
            headers=CIMultiDict({"Host": "127.0.0.1:8080"}),
            store=store,
            service="iotdevicegateway",
            region=REGION,
        )


class _BotocoreReference(SigV4Auth):
    """botocore's own signer fed with given headers and payload hash (the old verifier)."""

    def __init__(self, signed: HTTPHeaders, payload_hash: str) -> None:
        super().__init__(Credentials("AKID", "secret"), "iotdata", REGION)
        self._signed = signed
        self._payload_hash = payload_hash

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        return self._signed

    def payload(self, request: AWSRequest) -> str:
        return self._payload_hash


@pytest.mark.parametrize(
    ("raw_path", "params", "signed_headers", "values"),
    [
        ("/topics/app%2Fdev%2Fx", [("qos", "1")], ("host", "x-amz-date"), {}),
        ("/mqtt", [], ("connection", "host"), {"connection": "Upgrade"}),
        ("/a/./b/../c%20d/", [("b", "2"), ("a", "x y"), ("a", "1"), ("é", "ü/+")], ("host",), {}),
        ("", [("X-Amz-Date", "20260101T000000Z"), ("k", "")], ("host", "host"), {}),
        ("/t", [], ("x-custom", "host"), {"x-custom": "  two   spaces ,b "}),
        ("/topics/a%2F.%2F..%2Fb", [("qos", "0")], ("host",), {}),
        ("/x/.hidden/..", [], ("host",), {}),
        ("/a/b/.", [], ("host",), {}),
        ("/a//b/%7E~", [("a~", "b c")], ("host",), {}),
        ("/a?b", [], ("host",), {}),
        ("/a#frag/../c", [], ("host",), {}),
        ("//double", [], ("host",), {}),
        ("/%", [("%41", "%")], ("host",), {}),
    ],
)
def test_the_canonical_request_is_botocores(
    raw_path: str,
    params: list[tuple[str, str]],
    signed_headers: tuple[str, ...],
    values: dict[str, str],
) -> None:
    # Given a request's path, query, signed header names (some listed twice)
    # and received values (host as sent)
    values = {"host": "127.0.0.1:8080", "x-amz-date": "20261129T120000Z", **values}
    payload_hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    # When the emulator's canonical request is built
    mine = canonical_request(
        method="post",
        raw_path=raw_path,
        params=params,
        signed_headers=signed_headers,
        values=values,
        payload_hash=payload_hash,
    )

    # Then it is exactly what botocore's SigV4Auth builds for the same request
    signed = HTTPHeaders()
    for name in signed_headers:
        signed[name] = values[name]
    request = AWSRequest(method="post", url=f"http://emulator{raw_path}", params=list(params))  # type: ignore[arg-type]
    assert mine == _BotocoreReference(signed, payload_hash).canonical_request(request)


def test_a_rotated_secret_never_verifies_with_the_old_ones_signing_key(
    store: InMemoryCredentialStore,
) -> None:
    # Given a request that verified (its signing key now derived and kept)
    request, credential = _signed_publish(store, b"payload")
    assert _verify_request(request, store, b"payload") == credential

    # When the access key's secret is rotated in the store
    store.add(replace(credential, secret_access_key="an entirely new secret"))  # type: ignore[type-var]

    # Then the same request (signed with the old secret) is refused
    with pytest.raises(SignatureError, match="does not match"):
        _verify_request(request, store, b"payload")
