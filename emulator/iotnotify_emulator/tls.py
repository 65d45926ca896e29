"""A local CA and server certificate for the emulator's ``wss://`` endpoint.

Generated at start-up with ``cryptography`` so nothing secret is committed and
nothing depends on the host's trust store: clients trust the published
``ca.pem`` explicitly, as they would Amazon's root CA for the ATS endpoint.
A CA found in the certificate directory is kept (a persistent data
directory), so a restart does not make clients distrust the endpoint.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_FILE_NAME",
    "CERTIFICATE_FILE_NAMES",
    "CertificateFiles",
    "generate_certificates",
    "is_emulator_ca",
    "server_ssl_context",
]


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "iotnotify emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


_CA_CERT: Final = "ca.pem"
_CA_KEY: Final = "ca.key"
_SERVER_CERT: Final = "server.pem"
_SERVER_KEY: Final = "server.key"
#: Every file :func:`generate_certificates` writes in its directory, and no other.
CERTIFICATE_FILE_NAMES: Final = (_CA_CERT, _CA_KEY, _SERVER_CERT, _SERVER_KEY)
#: The CA certificate clients trust (``ca.pem``), one of those.
CA_FILE_NAME: Final = _CA_CERT
_CA_DAYS: Final = 365
_SERVER_DAYS: Final = 30
# A kept CA closer to expiry than this is replaced (clients must trust the new one).
_CA_RENEW_BEFORE: Final = timedelta(days=7)


_CA_COMMON_NAME: Final = "iotnotify emulator local CA"


def is_emulator_ca(pem: bytes) -> bool:
    """Whether ``pem`` is a CA certificate :func:`generate_certificates` made
    (its subject names this emulator); False for anything else, unreadable included."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return False
    return cert.subject == _name(_CA_COMMON_NAME) and cert.issuer == cert.subject


def _new_ca(now: datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(_CA_COMMON_NAME)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ca_key, ca_cert


def _kept_ca(
    ca_file: Path, key_file: Path, now: datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None:
    """The CA already in the directory, if it is complete and not about to expire."""
    try:
        ca_cert = x509.load_pem_x509_certificate(ca_file.read_bytes())
        ca_key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        return None
    if ca_cert.public_key() != ca_key.public_key():
        return None
    if ca_cert.not_valid_after_utc - _CA_RENEW_BEFORE < now:
        return None
    return ca_key, ca_cert


def generate_certificates(directory: Path, *, hosts: tuple[str, ...] = ()) -> CertificateFiles:
    """Write ``ca.pem``, ``ca.key``, ``server.pem`` and ``server.key`` into ``directory``.

    A CA already in ``directory`` (``ca.pem`` with its ``ca.key``, valid for
    more than a week) is kept and only the server certificate is issued
    again, so clients that trust ``ca.pem`` keep trusting a restarted
    emulator (``iotnotify local --data-dir``). Otherwise a new CA is made,
    valid for a year. Keys are written owner-readable only.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC) - timedelta(minutes=5)  # tolerate small clock skew
    ca_file, ca_key_file = directory / _CA_CERT, directory / _CA_KEY
    kept = _kept_ca(ca_file, ca_key_file, now)
    if kept is None:
        ca_key, ca_cert = _new_ca(now)
        _write_key(ca_key_file, ca_key)
        ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    else:
        ca_key, ca_cert = kept
    ca_name = ca_cert.subject
    server_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    for host in hosts:
        try:
            address = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            address = None
        entry: x509.GeneralName = address if address is not None else x509.DNSName(host)
        if entry not in names:
            names.append(entry)
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=_SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = CertificateFiles(
        ca_file=ca_file,
        cert_file=directory / _SERVER_CERT,
        key_file=directory / _SERVER_KEY,
    )
    files.cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(files.key_file, server_key)
    return files


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    path.chmod(0o600)


def server_ssl_context(files: CertificateFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.cert_file, files.key_file)
    return context
