"""One client TLS context per trust setting, shared by every HTTPS and ``wss://`` connection.

The SDK's always-on clients (``iotnotify listen``, ``iotnotify tray``) talk
TLS to Cognito, the HTTP API (``GET /token``, ``GET /notifications``, the
rooms routes) and AWS IoT (MQTT over WebSocket). Each of those used to build
its own ``ssl.SSLContext`` (and ``urllib`` without a context builds a fresh
one for *every* request), and each context built from the system trust store
parsed the whole CA bundle (144 certificates on Debian, about 2.4 MiB of
OpenSSL heap per context) into its ``X509_STORE``. Here one context is built
lazily per ``ca_file`` setting and reused; it is thread-safe to share, since
``SSLContext.wrap_socket`` only reads it.

How the system trust store is loaded: where OpenSSL has a hashed CA
directory (``ssl.get_default_verify_paths().capath``; Debian and Ubuntu keep
``/etc/ssl/certs`` with ``c_rehash``/``openssl rehash`` links, and
``SSL_CERT_DIR`` names another one), the context gets it with
``load_verify_locations(capath=...)``. OpenSSL's hashed-directory lookup
loads a CA certificate only when a chain needs it and caches it afterwards,
whereas a CA *file* is parsed in full when it is added:

* ``SSL_CTX_load_verify_locations(3)``: "The CAfile is processed on execution
  of the SSL_CTX_load_verify_locations() function" and "The certificates in
  CApath are only looked up when required, e.g., when building the
  certificate chain or when actually performing the verification of a peer
  certificate" (https://www.openssl.org/docs/man3.0/man3/SSL_CTX_load_verify_locations.html;
  the same text at https://man.openbsd.org/OpenBSD-5.8/SSL_CTX_load_verify_locations.3);
* ``X509_LOOKUP_hash_dir(3)``: the file method "loads all the certificates or
  CRLs present in a file into memory at the time the file is added"; the
  hashed directory method "loads certificates and CRLs on demand, and caches
  them in memory once they are loaded"
  (https://www.openssl.org/docs/man3.0/man3/X509_LOOKUP_hash_dir.html;
  https://man.openbsd.org/OpenBSD-7.3/X509_LOOKUP_hash_dir.3).

Where there is no hashed directory (macOS and Windows Python builds, a
directory with no ``<hash>.<n>`` names) or the user named a bundle file with
``SSL_CERT_FILE``, the context falls back to ``load_default_certs()``, exactly
what ``ssl.create_default_context()`` does. Verification is never weaker
than ``create_default_context()``'s: ``CERT_REQUIRED``, host names checked,
TLS 1.2 at least.

An explicit ``ca_file`` (``--ca-file``, the local stack's generated CA in
its state file) is trusted alone, as before.
"""

from __future__ import annotations

import os
import re
import ssl
import threading

from iotnotify.errors import AuthError

__all__ = ["client_context", "https_context", "system_trust_source"]

# OpenSSL's hashed directory names a certificate ``<8 hex digits>.<n>``
# (X509_LOOKUP_hash_dir(3)); a directory without one is no hashed directory.
_HASH_NAME = re.compile(r"^[0-9a-f]{8}\.[0-9]+$")

_lock = threading.Lock()
_contexts: dict[str | None, ssl.SSLContext] = {}


def _hashed_directory(path: str | None) -> bool:
    if not path:
        return False
    try:
        with os.scandir(path) as entries:
            return any(_HASH_NAME.match(entry.name) for entry in entries)
    except OSError:
        return False


def system_trust_source() -> tuple[str, str | None]:
    """How the system trust store is loaded here: ``("capath", directory)`` for
    OpenSSL's on-demand hashed-directory lookup, or ``("default", None)`` for
    ``load_default_certs()`` (the whole bundle parsed at once, or the OS store
    on Windows). Reads ``ssl.get_default_verify_paths()`` (which honours
    ``SSL_CERT_DIR``) and ``SSL_CERT_FILE``; raises nothing."""
    paths = ssl.get_default_verify_paths()
    if os.environ.get(paths.openssl_cafile_env):
        # The user named a bundle file: trust exactly what it holds, as
        # OpenSSL's default paths would.
        return ("default", None)
    if _hashed_directory(paths.capath):
        return ("capath", paths.capath)
    return ("default", None)


def _build(ca_file: str | None) -> ssl.SSLContext:
    # create_default_context gives Python's own client defaults (CERT_REQUIRED,
    # check_hostname, its cipher and X.509 flags); given a cafile or capath it
    # loads only that, given neither it calls load_default_certs().
    if ca_file:
        context = ssl.create_default_context(cafile=ca_file)
    else:
        source, capath = system_trust_source()
        context = ssl.create_default_context(capath=capath if source == "capath" else None)
    if context.minimum_version < ssl.TLSVersion.TLSv1_2:
        context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The shared client context that trusts ``ca_file`` (a PEM bundle path)
    alone, or the system trust store when it is ``None`` or empty. Built on
    the first call per setting and returned as is afterwards (callers must
    not change it). Raises :class:`~iotnotify.errors.AuthError` naming the
    file for a missing, unreadable or invalid ``ca_file`` (nothing is cached
    then): every client that takes ``ca_file`` (API, Cognito, rooms, MQTT)
    reports it as the SDK error it is, not as ``ssl``'s ``OSError``."""
    key = ca_file or None
    context = _contexts.get(key)
    if context is not None:
        return context
    with _lock:
        context = _contexts.get(key)
        if context is None:
            try:
                context = _build(key)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise AuthError(f"cannot set up TLS with CA file {key!r}: {exc}") from exc
            _contexts[key] = context
    return context


def https_context(url: str, ca_file: str | None = None) -> ssl.SSLContext | None:
    """The shared context for a request to ``url`` (what ``urllib.request.urlopen``
    takes as ``context``): :func:`client_context` for ``https://``, ``None``
    for plain ``http://`` (the local stack), so no trust store is loaded
    for a connection that needs none. Raises as :func:`client_context`."""
    if url[:8].lower() == "https://":
        return client_context(ca_file)
    return None
