"""The SDK's shared client TLS context (iotnotify.tls): one per CA setting, the
system trust store from OpenSSL's hashed CA directory where there is one."""

from __future__ import annotations

import datetime
import socket
import ssl
import subprocess
import threading
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from iotnotify import tls
from iotnotify.api_client import ApiClient
from iotnotify.auth import CognitoAuth, StaticIdToken
from iotnotify.chat import RoomsApi
from iotnotify.errors import IotNotifyError
from iotnotify.subscriber import Subscriber, _Connection


@dataclass
class _Pki:
    ca_pem: Path
    cert_pem: Path
    key_pem: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _make_pki(directory: Path, label: str) -> _Pki:
    """A CA and a server certificate for ``localhost`` that chains to it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"iotnotify test CA {label}"))
        .issuer_name(_name(f"iotnotify test CA {label}"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pki = _Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    pki.ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pki


def _hashed_dir(directory: Path, ca_pem: Path) -> Path:
    """A CA directory as ``c_rehash`` leaves it: ``<subject hash>.0`` -> the CA."""
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(ca_pem)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{subject_hash}.0").symlink_to(ca_pem)
    return directory


@pytest.fixture(autouse=True)
def _fresh_contexts(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each test builds its own contexts; the module's cache would hide that.
    monkeypatch.setattr(tls, "_contexts", {})
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


@pytest.fixture
def pki(tmp_path: Path) -> _Pki:
    return _make_pki(tmp_path / "server-pki", "trusted")


@pytest.fixture
def tls_server(pki: _Pki) -> Iterator[int]:
    """A TLS server on 127.0.0.1 that completes handshakes with ``pki``'s certificate."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(pki.cert_pem), str(pki.key_pem))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls_conn:
                    tls_conn.recv(1)
            except (OSError, ssl.SSLError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _handshake(context: ssl.SSLContext, port: int) -> None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        conn.sendall(b"x")


_REAL_PATHS = ssl.get_default_verify_paths()


def _verify_paths(*, capath: str | None) -> ssl.DefaultVerifyPaths:
    real = _REAL_PATHS
    return ssl.DefaultVerifyPaths(
        cafile=None,
        capath=capath,
        openssl_cafile_env=real.openssl_cafile_env,
        openssl_cafile=real.openssl_cafile,
        openssl_capath_env=real.openssl_capath_env,
        openssl_capath=real.openssl_capath,
    )


def test_sdk_objects_share_one_context_per_ca_setting(
    monkeypatch: pytest.MonkeyPatch, pki: _Pki, tmp_path: Path
) -> None:
    # Given the HTTPS clients of the SDK and a way to see the context each request uses
    seen: list[ssl.SSLContext | None] = []

    def urlopen(_request: Any, *, timeout: float, context: ssl.SSLContext | None) -> Any:
        seen.append(context)
        raise urllib.error.URLError("recorded")

    api_calls: list[ssl.SSLContext | None] = []

    def open_without_redirects(
        request: Any, *, timeout: float, context: ssl.SSLContext | None
    ) -> Any:
        api_calls.append(context)
        return urlopen(request, timeout=timeout, context=context)

    monkeypatch.setattr("urllib.request.urlopen", urlopen)  # CognitoAuth
    # The API clients open through the redirect-refusing opener
    monkeypatch.setattr("iotnotify.api_client.open_without_redirects", open_without_redirects)
    monkeypatch.setattr("iotnotify.chat.open_without_redirects", open_without_redirects)
    other_ca = _make_pki(tmp_path / "other", "other").ca_pem
    url = "https://api.example.test/prod"
    tokens = StaticIdToken("t")
    makers = [
        lambda ca: ApiClient(api_url=url, id_tokens=tokens, ca_file=ca),
        lambda ca: CognitoAuth(client_id="c", region="eu-west-1", endpoint_url=url, ca_file=ca),
        lambda ca: RoomsApi(api_url=url, id_tokens=tokens, ca_file=ca),
    ]
    calls = {
        ApiClient: lambda obj: obj.token(),
        CognitoAuth: lambda obj: obj.sign_in("u", "p"),
        RoomsApi: lambda obj: obj.list_page(),
    }

    # When two of each, per CA setting, make a request (twice)
    for ca in (str(pki.ca_pem), str(other_ca)):
        for make in makers:
            for _ in range(2):
                obj = make(ca)
                with pytest.raises(IotNotifyError):  # the recorded URLError, translated
                    calls[type(obj)](obj)

    # Then every request with one CA setting used one context, and the two settings two
    assert len(api_calls) == 2 * 2 * 2  # ApiClient and RoomsApi, per CA setting, twice
    assert all(ctx is not None for ctx in seen)
    per_setting = len(seen) // 2
    assert len({id(ctx) for ctx in seen[:per_setting]}) == 1
    assert len({id(ctx) for ctx in seen[per_setting:]}) == 1
    assert seen[0] is not seen[-1]
    assert seen[0] is tls.client_context(str(pki.ca_pem))

    # And the MQTT clients of two subscribers use that same context
    subscribers = [
        Subscriber(tokens=ApiClient(api_url=url, id_tokens=tokens), ca_file=str(pki.ca_pem))
        for _ in range(2)
    ]
    conn = _Connection(
        client_id="u.x", keepalive=60, own_topic=None, started=0.0, last_in=0.0, last_out=0.0
    )
    mqtt_contexts = [
        sub._new_client(conn, path="/mqtt", tls=True)._ssl_context for sub in subscribers
    ]
    assert mqtt_contexts[0] is mqtt_contexts[1] is seen[0]


def test_plain_http_loads_no_trust_store() -> None:
    assert tls.https_context("http://127.0.0.1:8700/") is None
    assert tls._contexts == {}


def test_system_trust_comes_from_the_hashed_directory_and_verifies_a_handshake(
    monkeypatch: pytest.MonkeyPatch, pki: _Pki, tmp_path: Path, tls_server: int
) -> None:
    # Given a system whose OpenSSL CA directory (hashed) is the only place the CA is
    capath = _hashed_dir(tmp_path / "certs", pki.ca_pem)
    monkeypatch.setattr(ssl, "get_default_verify_paths", lambda: _verify_paths(capath=str(capath)))

    # When the SDK builds its system-trust context
    context = tls.client_context(None)

    # Then it reads the directory lazily: no CA parsed before a handshake needs one
    assert tls.system_trust_source() == ("capath", str(capath))
    assert context.cert_store_stats()["x509_ca"] == 0
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    # And a handshake to a server whose certificate chains to that CA succeeds
    _handshake(context, tls_server)
    assert context.cert_store_stats()["x509_ca"] == 1


def test_system_trust_refuses_a_server_whose_ca_is_not_in_the_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tls_server: int
) -> None:
    # Given a hashed CA directory that holds some other CA only
    other = _make_pki(tmp_path / "other", "other")
    capath = _hashed_dir(tmp_path / "certs", other.ca_pem)
    monkeypatch.setattr(ssl, "get_default_verify_paths", lambda: _verify_paths(capath=str(capath)))

    # When the SDK's context meets the server, Then verification fails
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tls.client_context(None), tls_server)


@pytest.mark.parametrize("kind", ["no capath", "empty directory"])
def test_system_trust_falls_back_to_the_default_store_without_a_hashed_directory(
    monkeypatch: pytest.MonkeyPatch, pki: _Pki, tmp_path: Path, tls_server: int, kind: str
) -> None:
    # Given no hashed directory where Python looks, and OpenSSL's own default
    # locations (SSL_CERT_DIR, which load_default_certs() honours) holding the CA
    empty = tmp_path / "empty"
    empty.mkdir()
    capath = None if kind == "no capath" else str(empty)
    monkeypatch.setattr(ssl, "get_default_verify_paths", lambda: _verify_paths(capath=capath))
    monkeypatch.setenv("SSL_CERT_DIR", str(_hashed_dir(tmp_path / "default", pki.ca_pem)))

    # When the SDK builds its system-trust context
    assert tls.system_trust_source() == ("default", None)
    context = tls.client_context(None)

    # Then it is the default store (load_default_certs), which verifies the server
    _handshake(context, tls_server)


def test_a_bundle_named_in_ssl_cert_file_is_trusted_as_openssl_would(
    monkeypatch: pytest.MonkeyPatch, pki: _Pki, tmp_path: Path, tls_server: int
) -> None:
    # Given a hashed directory without the CA, and SSL_CERT_FILE naming a bundle with it
    other = _make_pki(tmp_path / "other", "other")
    capath = _hashed_dir(tmp_path / "certs", other.ca_pem)
    monkeypatch.setattr(ssl, "get_default_verify_paths", lambda: _verify_paths(capath=str(capath)))
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_pem))

    # When/Then the user's bundle wins, as with ssl.create_default_context()
    assert tls.system_trust_source() == ("default", None)
    _handshake(tls.client_context(None), tls_server)


def test_an_explicit_ca_file_is_trusted_alone(
    monkeypatch: pytest.MonkeyPatch, pki: _Pki, tmp_path: Path, tls_server: int
) -> None:
    # Given the CA in a hashed system directory too
    capath = _hashed_dir(tmp_path / "certs", pki.ca_pem)
    monkeypatch.setattr(ssl, "get_default_verify_paths", lambda: _verify_paths(capath=str(capath)))
    other = _make_pki(tmp_path / "other", "other")

    # When the caller names its own CA file, Then that file is the whole trust
    _handshake(tls.client_context(str(pki.ca_pem)), tls_server)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tls.client_context(str(other.ca_pem)), tls_server)


@pytest.mark.parametrize("content", [None, b"garbage\n", b""])
def test_a_ca_file_that_cannot_be_used_is_one_sdk_error_for_every_https_client(
    tmp_path: Path, content: bytes | None
) -> None:
    # `listen --api-url https://... --ca-file /missing.pem` ended in a
    # FileNotFoundError traceback from ssl.create_default_context.
    from iotnotify.api_client import ApiClient
    from iotnotify.auth import CognitoAuth, StaticIdToken
    from iotnotify.chat import RoomsApi
    from iotnotify.errors import IotNotifyError

    ca_file = tmp_path / "ca.pem"
    if content is not None:
        ca_file.write_bytes(content)
    makers = [
        lambda: ApiClient(
            api_url="https://api.example", id_tokens=StaticIdToken("t"), ca_file=str(ca_file)
        ),
        lambda: CognitoAuth(
            client_id="c",
            region="us-east-1",
            endpoint_url="https://idp.example/",
            ca_file=str(ca_file),
        ),
        lambda: RoomsApi(
            api_url="https://api.example", id_tokens=StaticIdToken("t"), ca_file=str(ca_file)
        ),
    ]
    for make in makers:
        with pytest.raises(IotNotifyError, match="CA file"):
            make()
