"""Where the emulator learns who signed a request, and what they may do.

The emulator verifies SigV4 itself, so for an access key id it needs the
secret, the session token it must be presented with, the expiry and the
policies to evaluate. :class:`CredentialStore` is that seam: tests use
:class:`InMemoryCredentialStore`; ``iotnotify local`` uses the moto-backed
store in :mod:`iotnotify_emulator.moto_credentials`, which reads the
credentials moto's STS handed out to the token-vending code.
"""

from __future__ import annotations

import secrets
import string
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from iotnotify_emulator.iam import Policy

__all__ = [
    "Credential",
    "CredentialStore",
    "InMemoryCredentialStore",
    "PrefetchingStore",
    "policies_from",
]


@dataclass(frozen=True, slots=True)
class Credential:
    """One access key as the emulator sees it.

    ``session_policies`` is non-empty only for role sessions created with a
    ``Policy`` (STS AssumeRole); the effective permission is then identity
    AND session policy. ``principal_id`` is what AWS puts in lifecycle
    events' ``principalIdentifier`` (``AROA...:session`` for a role session).
    """

    access_key_id: str
    secret_access_key: str
    principal_id: str
    identity_policies: tuple[Policy, ...]
    session_policies: tuple[Policy, ...] = ()
    session_token: str | None = None
    expiration: datetime | None = None
    principal_arn: str | None = None

    def expired(self, now: datetime | None = None) -> bool:
        if self.expiration is None:
            return False
        moment = now or datetime.now(UTC)
        expiration = self.expiration
        if expiration.tzinfo is None:
            expiration = expiration.replace(tzinfo=UTC)
        return moment >= expiration


@runtime_checkable
class CredentialStore(Protocol):
    """Looks up an access key id; None when the key is unknown."""

    def lookup(self, access_key_id: str) -> Credential | None: ...


class PrefetchingStore(Protocol):
    """A store whose lookups may wait on I/O (another process): the server awaits
    :meth:`prefetch` (through :func:`iotnotify_emulator.sigv4.prefetch_signer`)
    before it verifies a signature, so the event loop serves others meanwhile
    and the :meth:`CredentialStore.lookup` that follows is answered at once."""

    async def prefetch(self, access_key_id: str) -> None: ...


def policies_from(
    documents: Iterable[Mapping[str, Any] | str | Policy], *, prefix: str
) -> tuple[Policy, ...]:
    """Parse documents (or pass parsed policies through), naming them ``prefix#n``."""
    return tuple(
        doc if isinstance(doc, Policy) else Policy.parse(doc, name=f"{prefix}#{index}")
        for index, doc in enumerate(documents)
    )


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass
class InMemoryCredentialStore:
    """A thread-safe dict of credentials, with a helper that mints new ones."""

    _items: dict[str, Credential] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def lookup(self, access_key_id: str) -> Credential | None:
        with self._lock:
            return self._items.get(access_key_id)

    def add(self, credential: Credential) -> Credential:
        with self._lock:
            self._items[credential.access_key_id] = credential
        return credential

    def remove(self, access_key_id: str) -> None:
        with self._lock:
            self._items.pop(access_key_id, None)

    def issue(
        self,
        identity_policies: Iterable[Mapping[str, Any] | str | Policy],
        session_policies: Iterable[Mapping[str, Any] | str | Policy] = (),
        *,
        principal_id: str | None = None,
        with_token: bool = True,
        expires_in: timedelta | None = timedelta(hours=1),
    ) -> Credential:
        """Mint a key pair (and a session token unless ``with_token`` is False)."""
        upper = string.ascii_uppercase + string.digits
        prefix = "ASIA" if with_token else "AKIA"
        access_key_id = prefix + _random(upper, 16)
        credential = Credential(
            access_key_id=access_key_id,
            secret_access_key=_random(string.ascii_letters + string.digits + "/+", 40),
            principal_id=principal_id or ("AROA" + _random(upper, 17) + ":session"),
            identity_policies=policies_from(identity_policies, prefix="identity"),
            session_policies=policies_from(session_policies, prefix="session"),
            session_token=_random(string.ascii_letters + string.digits, 64) if with_token else None,
            expiration=datetime.now(UTC) + expires_in if expires_in is not None else None,
        )
        return self.add(credential)
