"""What trusting the system's CA certificates costs a client process, loaded two ways.

A fresh interpreter per case (importing only ``ssl`` and ``socket``) builds
one client context, completes one TLS handshake against a local server whose
certificate chains to a test CA, and reports its RSS (``VmRSS``), what the
context and the handshake added to it (``ctx+TLS``: RSS after minus RSS
after ``import ssl``), the CPU time it took to build the context, and how
many CA certificates its store holds before and after the handshake. The
test CA is added to the system's certificates in the system-trust cases, so
they all trust the same set:

* ``bundle``: the system bundle file (``ssl.get_default_verify_paths().cafile``)
  plus the test CA, one file, through ``load_verify_locations(cafile=...)``:
  what ``load_default_certs()`` / paho's ``tls_set()`` /
  ``ssl.create_default_context()`` do on Debian (every certificate parsed);
* ``capath``: a temporary hashed directory with a link per system CA
  (the ``<hash>.<n>`` names of ``/etc/ssl/certs``) plus the test CA's
  (``openssl x509 -hash``), through ``load_verify_locations(capath=...)``,
  as ``iotnotify.tls`` does: OpenSSL reads a CA only when a chain needs it;
* ``load_default_certs()``: ``ssl.create_default_context()`` with no
  arguments, the SDK's system trust before ``iotnotify.tls`` (the bundle file
  parsed, plus OpenSSL's default directory, here pointed at the temporary
  one with ``SSL_CERT_DIR`` so the test CA is found);
* ``test CA only``: the floor (``--ca-file`` with the local stack's CA).

    .venv/bin/python bench/tls_trust.py [--runs 3]
"""

from __future__ import annotations

import argparse
import datetime
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_CHILD = r"""
import os, socket, ssl, sys, time
kind, where, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
before = rss()
t0 = time.process_time_ns()
ctx = ssl.create_default_context(**({kind: where} if kind != "default" else {}))
built_ns = time.process_time_ns() - t0
loaded = ctx.cert_store_stats()["x509_ca"]
with socket.create_connection(("127.0.0.1", port)) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as conn:
        conn.sendall(b"x")
print(before, rss(), built_ns, loaded, ctx.cert_store_stats()["x509_ca"])
"""


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pki(tmp: Path) -> tuple[Path, Path, Path]:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("iotnotify bench CA"))
        .issuer_name(_name("iotnotify bench CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, cert_pem, key_pem


def _subject_hash(pem: Path) -> str:
    return subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(pem)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    paths = ssl.get_default_verify_paths()
    if not paths.cafile or not paths.capath:
        raise SystemExit(f"no system CA bundle and hashed directory here: {paths}")

    with tempfile.TemporaryDirectory(prefix="tls-trust-") as tmp_name:
        tmp = Path(tmp_name)
        ca_pem, cert_pem, key_pem = _pki(tmp)
        bundle = tmp / "bundle.pem"
        bundle.write_text(Path(paths.cafile).read_text() + ca_pem.read_text())
        capath = tmp / "certs"
        capath.mkdir()
        system_links = 0
        for entry in os.scandir(paths.capath):
            stem, _, n = entry.name.partition(".")
            if len(stem) == 8 and n.isdigit():
                (capath / entry.name).symlink_to(os.path.realpath(entry.path))
                system_links += 1
        own = _subject_hash(ca_pem)
        n = 0
        while (capath / f"{own}.{n}").exists():
            n += 1
        (capath / f"{own}.{n}").symlink_to(ca_pem)

        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(str(cert_pem), str(key_pem))
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                try:
                    with server_ctx.wrap_socket(conn, server_side=True) as tls_conn:
                        tls_conn.recv(1)
                except (OSError, ssl.SSLError):
                    conn.close()

        threading.Thread(target=serve, daemon=True).start()
        cases = [
            ("load_default_certs()", "default", "-"),
            ("bundle (whole file)", "cafile", str(bundle)),
            ("capath (hashed dir)", "capath", str(capath)),
            ("test CA only", "cafile", str(ca_pem)),
        ]
        print(
            f"one context + one handshake in a fresh python ({sys.version.split()[0]}, "
            f"{ssl.OPENSSL_VERSION}); {system_links} system CAs + the test CA; "
            f"median of {args.runs} runs"
        )
        print(
            f"{'trust':<21} {'RSS MiB':>8} {'ctx+TLS MiB':>12} {'build ms CPU':>13} "
            f"{'CAs parsed at build':>20} {'after handshake':>16}"
        )
        try:
            for label, kind, where in cases:
                rows = []
                for _ in range(args.runs):
                    out = subprocess.run(
                        [sys.executable, "-c", _CHILD, kind, where, str(port)],
                        # load_default_certs() reads the system bundle file and
                        # OpenSSL's default directory; SSL_CERT_DIR points that
                        # directory at ours so the test CA is found there.
                        env={**os.environ, "SSL_CERT_DIR": str(capath)},
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout.split()
                    rows.append([float(x) for x in out])
                before, after, built_ns, loaded, loaded_after = (
                    statistics.median(col) for col in zip(*rows, strict=True)
                )
                print(
                    f"{label:<21} {after:8.1f} {after - before:12.1f} {built_ns / 1e6:13.1f} "
                    f"{loaded:20.0f} {loaded_after:16.0f}"
                )
        finally:
            listener.close()


if __name__ == "__main__":
    main()
