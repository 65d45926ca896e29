"""A :class:`CredentialStore` over moto's in-process STS and IAM backends.

This is the one module that reads moto's internal models (moto 5.x), so a
moto upgrade that moves them breaks here and nowhere else. moto must run in
the same process (``moto.server.ThreadedMotoServer`` or ``mock_aws``):
the emulator looks up

* role sessions from ``sts:AssumeRole``: moto's ``AssumedRole`` keeps the
  access key, secret, session token, expiry and the ``Policy`` passed to
  AssumeRole (moto records it but never enforces it; the emulator does),
  and the role's inline and attached managed policies from moto's IAM;
* IAM users' access keys (publishers), with the user's inline and managed
  policies and those of its groups.

**Trust policies.** moto's AssumeRole answers any caller, with made-up keys
or none, whatever the role's trust policy says. :func:`install_sts_recorder`
wraps moto's AssumeRole handler to remember, per new session, the signed
request that asked for it. A session is honoured only if that request's
SigV4 signature verifies against a credential this store knows (itself
honoured, recursively: role chaining) or against a key registered as an AWS
service principal (``services=``: locally, the stack's own key acts as
Lambda), and the role's trust policy trusts that caller
(:mod:`iotnotify_emulator.trust`). As on AWS, where the trust policy and the
caller are checked by AssumeRole itself, that decision belongs to the moment
the session is issued: every store alive then decides at once (the request's
signature checked against its own ``X-Amz-Date``, the trust policy and the
caller's key as they are then), so a session first used an hour later, or
after its caller's key was deleted or the trust policy tightened, keeps the
decision it got when issued. A store created after a session decides when it
first sees it, still judging the signature at the issue time. Sessions
created before the recorder was installed, or by callers that cannot be
verified, are refused.

**Cost.** Sessions are indexed by access key id (O(1) per WebSocket upgrade
or iot-data publish, instead of moto's linear scan over every session ever
issued), and expired sessions are pruned, from the index and from moto's
own list, at most once per ``prune_interval`` seconds.

Backends are indexed ``[account_id][partition]`` in moto 5 (``"aws"``), not
by region: STS and IAM are global services.

A policy that does not parse is replaced by a deny-all policy (and logged):
dropping it silently could drop a Deny and grant more than AWS would.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

from moto.backends import get_backend

from iotnotify_emulator.credentials import Credential
from iotnotify_emulator.iam import Policy, PolicyError, evaluate
from iotnotify_emulator.sigv4 import SignatureError, verify_header_signature
from iotnotify_emulator.trust import Caller, evaluate_trust, role_arn_of_session

__all__ = ["MotoCredentialStore", "count_iam_changes", "install_sts_recorder"]

log = logging.getLogger("iotnotify_emulator")

_DENY_ALL: Final = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}],
}
# moto's backends are plain dicts mutated by the moto server thread; a lookup
# that races a write retries instead of failing the handshake.
_RETRIES: Final = 3
# AWS allows role chaining; a longer chain here can only be a loop.
_MAX_CHAIN: Final = 5


@dataclass(frozen=True, slots=True)
class _AssumeRequest:
    """The AssumeRole request that created a session, as received."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(slots=True)
class _Session:
    assumed: Any  # moto.sts.models.AssumedRole
    request: _AssumeRequest | None
    # The role's unique id (AROA...) when the session began: a role deleted and
    # created again under the same name has a new one, and the old sessions,
    # whose principal is "{old id}:{session name}", are not its sessions (IAM
    # User Guide, "IAM identifiers", unique identifiers). None: no such role then.
    role_id: str | None = None
    # When AssumeRole answered: its request's signature is judged at this time.
    issued_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class _Registry:
    sessions: dict[str, _Session] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    installed: bool = False
    counters: list[Any] = field(default_factory=list)
    iam_wrapped: bool = False
    # Stores alive now: each decides on a new session when it is issued.
    stores: weakref.WeakSet[MotoCredentialStore] = field(default_factory=weakref.WeakSet)


_REGISTRY: Final = _Registry()


def _request_body(response: Any) -> bytes:
    raw = getattr(response, "raw_body", None)
    if isinstance(raw, bytes) and raw:
        return raw
    if isinstance(raw, str) and raw:
        return raw.encode("utf-8")
    # werkzeug keeps no raw bytes for a parsed form; botocore's query protocol
    # encodes it as urlencode(quote, safe="-_.~") in this order, so this
    # rebuilds what a botocore client signed (anything else fails to verify).
    form: Any = getattr(response, "form_data", None)
    if form is None:
        return b""
    items = list(form.items(multi=True)) if hasattr(form, "getlist") else list(form.items())
    return urlencode(items, quote_via=quote, safe="-_.~").encode("utf-8")


def _capture(response: Any) -> _AssumeRequest | None:
    try:
        headers = [(str(k), str(v)) for k, v in dict(response.headers).items()]
        if not any(name.lower() == "host" for name, _ in headers):
            # mock_aws hands over botocore's headers, which never carry Host:
            # it is signed from the URL.
            headers.append(("Host", urlsplit(str(response.uri)).netloc))
        return _AssumeRequest(
            method=str(response.method),
            url=str(response.uri),
            headers=tuple(headers),
            body=_request_body(response),
        )
    except Exception:  # a request the recorder cannot read is simply unverifiable
        log.warning("could not record an AssumeRole request; its session will be refused")
        return None


def _role_id(assumed: Any) -> str | None:
    """The unique id of the role ``assumed`` names, now; None when there is none."""
    try:
        from moto.iam.models import iam_backends

        backend = iam_backends[str(assumed.account_id)][str(assumed.partition)]
        return str(backend.get_role_by_arn(arn=assumed.role_arn).id)
    except Exception:  # moto's NotFound (AssumeRole of a missing role) or an odd session
        return None


def install_sts_recorder() -> None:
    """Wrap moto's AssumeRole handler so each session remembers its request (idempotent).

    Call before any AssumeRole whose session the emulator should honour.
    """
    with _REGISTRY.lock:
        if _REGISTRY.installed:
            return
        from moto.sts.responses import TokenResponse

        original = TokenResponse.assume_role

        def assume_role(self: Any) -> Any:
            request = _capture(self)
            result = original(self)
            assumed = getattr(result, "result", {}).get("Credentials")
            if assumed is not None:
                session = _Session(assumed, request, _role_id(assumed))
                with _REGISTRY.lock:
                    _REGISTRY.sessions[assumed.access_key_id] = session
                    stores = list(_REGISTRY.stores)
                for store in stores:
                    store.decide_at_issue(assumed.access_key_id)
            return result

        TokenResponse.assume_role = assume_role  # type: ignore[method-assign]
        _REGISTRY.installed = True


# IAM actions that change nothing (moto's IamResponse method names, camel case).
_IAM_READS: Final = ("Get", "List", "Simulate", "Generate")


def count_iam_changes(counter: Any) -> None:
    """Add 1 to ``counter.value`` after every IAM request that may change something.

    ``counter`` is anything with an integer ``value`` (a ``multiprocessing``
    ``RawValue`` shared with the emulator's process, whose credential cache
    is valid only while it does not move). Wraps moto's IAM request handler
    (``moto.iam.responses.IamResponse.call_action``) once per process; every
    action that is not a ``Get``/``List``/``Simulate``/``Generate`` counts
    (a key deactivated or deleted, a policy put or detached, a user removed
    from a group...), bumped before moto answers, so a caller that sees the
    answer also sees the new count.
    """
    with _REGISTRY.lock:
        _REGISTRY.counters.append(counter)
        if _REGISTRY.iam_wrapped:
            return
        from moto.iam.responses import IamResponse

        original = IamResponse.call_action

        def call_action(self: Any) -> Any:
            try:
                return original(self)
            finally:
                action = str(self._get_action() or "")
                if not action.startswith(_IAM_READS):
                    for each in tuple(_REGISTRY.counters):
                        each.value += 1

        IamResponse.call_action = call_action  # type: ignore[method-assign]
        _REGISTRY.iam_wrapped = True


def _parse(document: Any, name: str) -> Policy:
    if isinstance(document, str):
        # An IAM user's policies are read from moto on every request it signs
        # (so a changed or detached policy counts at once); parsing the same
        # text again was ~5% of an iot-data publish's server CPU.
        return _parse_text(document, name)
    return _parse_uncached(document, name)


@functools.lru_cache(maxsize=1024)
def _parse_text(document: str, name: str) -> Policy:
    # Policy is frozen: the same (text, name) always parses to an equal value.
    return _parse_uncached(document, name)


def _parse_uncached(document: Any, name: str) -> Policy:
    try:
        return Policy.parse(document, name=name)
    except PolicyError as exc:
        log.warning("policy %s does not parse (%s); treating it as deny-all", name, exc)
        return Policy.parse(_DENY_ALL, name=f"{name} (unparseable, deny-all)")


def _managed_document(policy: Any) -> Any:
    for version in getattr(policy, "versions", ()):
        if version.version_id == policy.default_version_id:
            return version.document
    return getattr(policy, "document", None) or _DENY_ALL


def _holder_policies(holder: Any, kind: str) -> list[Policy]:
    """Inline then attached managed policies of a role, user or group."""
    parsed: list[Policy] = []
    for name, document in dict(holder.policies).items():
        parsed.append(_parse(document, f"{kind}/{holder.name}/inline/{name}"))
    for arn, managed in dict(holder.managed_policies).items():
        parsed.append(_parse(_managed_document(managed), str(arn)))
    return parsed


def _expired(expiration: datetime, now: datetime) -> bool:
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=UTC)
    return now >= expiration


class MotoCredentialStore:
    """Resolves access keys minted by moto's STS (role sessions) and IAM (users).

    ``services`` maps an access key id to ``(secret, service principal)``:
    requests signed with it act as that AWS service (e.g. the local stack's
    own key as ``lambda.amazonaws.com``, which assumes the functions role).
    """

    def __init__(
        self,
        *,
        partition: str = "aws",
        accounts: Iterable[str] | None = None,
        services: Mapping[str, tuple[str, str]] | None = None,
        region: str = "us-east-1",
        prune_interval: float = 60.0,
    ) -> None:
        install_sts_recorder()
        self._partition = partition
        self._accounts = tuple(accounts) if accounts is not None else None
        self._services = dict(services or {})
        self._region = region
        self._prune_interval = prune_interval
        self._next_prune = time.monotonic() + prune_interval
        # Verified sessions, so a trust check runs once per session: the
        # credential with its account and role ARN. Only the trust decision
        # is kept; the role's policies are read again on every lookup.
        self._honoured: dict[str, tuple[Credential, str, str, str | None]] = {}
        # Sessions refused when they were issued: AssumeRole would have failed
        # on AWS, so no later change (a looser trust policy) makes them valid.
        self._refused: set[str] = set()
        # moto's module-level BackendDict: one object for the process, its
        # contents reset and restored in place.
        self._iam_backends: Any = get_backend("iam")
        self._lock = threading.Lock()
        self._issue_listeners: list[Callable[[str, Credential], None]] = []
        with _REGISTRY.lock:
            _REGISTRY.stores.add(self)

    def add_issue_listener(self, listener: Callable[[str, Credential], None]) -> Callable[[], None]:
        """Have ``listener(access_key_id, credential)`` called for every role
        session this store honours as it is issued (on the thread that
        answered AssumeRole); returns a function that removes it. ``iotnotify
        local`` pushes them to its emulator process this way, so a session's
        first connect needs no lookup across processes."""
        with self._lock:
            self._issue_listeners.append(listener)

        def remove() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._issue_listeners.remove(listener)

        return remove

    def decide_at_issue(self, access_key_id: str) -> None:
        """Decide on a role session as it is issued (called by the AssumeRole recorder).

        Never raises: whatever goes wrong, the session is then decided when
        first used, as for a store created after it.
        """
        try:
            credential = self._lookup(access_key_id, depth=0)
            with self._lock:
                if credential is None:
                    self._refused.add(access_key_id)
                listeners = list(self._issue_listeners)
            if credential is not None:
                for listener in listeners:
                    listener(access_key_id, credential)
        except Exception:
            log.exception("could not decide on role session %s when it was issued", access_key_id)

    # --- lookup ------------------------------------------------------------------

    def lookup(self, access_key_id: str) -> Credential | None:
        self._maybe_prune()
        for attempt in range(_RETRIES):
            try:
                return self._lookup(access_key_id, depth=0)
            except RuntimeError:  # "dictionary changed size during iteration"
                if attempt == _RETRIES - 1:
                    raise
        return None  # pragma: no cover - the loop returns or raises

    def _account_ok(self, account_id: str) -> bool:
        return self._accounts is None or account_id in self._accounts

    def _lookup(self, access_key_id: str, *, depth: int) -> Credential | None:
        with self._lock:
            if access_key_id in self._refused:
                return None
            cached = self._honoured.get(access_key_id)
        if cached is not None:
            return self._with_current_role_policies(access_key_id, *cached)
        with _REGISTRY.lock:
            session = _REGISTRY.sessions.get(access_key_id)
        if session is not None:
            account_id = str(session.assumed.account_id)
            if not self._account_ok(account_id):
                return None
            credential = self._from_session(session, depth)
            if credential is not None:
                with self._lock:
                    self._honoured[access_key_id] = (
                        credential,
                        account_id,
                        str(session.assumed.role_arn),
                        session.role_id,
                    )
            return credential
        iam_backends = self._iam_backends
        for account_id in self._iam_accounts(iam_backends):
            iam = self._iam(account_id)
            user = iam.get_user_from_access_key_id(access_key_id)
            if user is not None:
                return self._from_user(user, access_key_id, iam)
        return None

    def _with_current_role_policies(
        self,
        access_key_id: str,
        credential: Credential,
        account_id: str,
        role_arn: str,
        role_id: str | None,
    ) -> Credential | None:
        """An honoured session with its role's policies as they are now.

        On AWS a role session's permissions are the role's policies at each
        request (a Deny added to the role revokes existing sessions: IAM
        User Guide, "Revoking IAM role temporary security credentials"), and
        a deleted role's sessions can do nothing, nor can they act as a role
        created again under its name (a new unique id); so only the trust
        decision is cached, never the policies. The parsed texts are cached
        (``_parse``), so an unchanged role costs dictionary reads.
        """
        try:
            role = self._iam(account_id).get_role_by_arn(arn=role_arn)
        except Exception:  # moto raises its own NotFound; no role, no session
            role = None
        if role is None or str(role.id) != role_id:
            with self._lock:
                self._honoured.pop(access_key_id, None)
            return None
        policies = tuple(_holder_policies(role, "role"))
        if policies == credential.identity_policies:
            return credential
        return replace(credential, identity_policies=policies)

    def _iam(self, account_id: str) -> Any:
        """moto's IAM backend of an account, read live (moto replaces it on restore)."""
        accounts = self._iam_backends
        # BackendDict.__getitem__ takes a global lock and compares itself with
        # every moto service's BackendDict on each access (moto.core.base_backend),
        # ~5% of a publish's server CPU: an existing account is a plain dict read.
        backends = dict.get(accounts, account_id)
        if backends is None:
            backends = accounts[account_id]
        return backends[self._partition]

    def _iam_accounts(self, backends: Any) -> list[str]:
        return list(self._accounts) if self._accounts is not None else list(backends.keys())

    # --- role sessions -------------------------------------------------------------

    def _caller(
        self, request: _AssumeRequest, depth: int, issued_at: datetime
    ) -> tuple[Caller, Credential | None]:
        """Who signed the AssumeRole request; raises SignatureError if nobody we know.

        The signature's date is judged against ``issued_at`` (when moto
        answered it), not now: its five minutes are AWS's window for the
        request to arrive, and the session lives on for hours after.
        """
        parts = urlsplit(request.url)
        query = [tuple(p.split("=", 1)) for p in parts.query.split("&") if "=" in p]
        outer = self

        class _Keys:
            def lookup(self, key: str) -> Credential | None:
                service = outer._services.get(key)
                if service is not None:
                    return Credential(
                        access_key_id=key,
                        secret_access_key=service[0],
                        principal_id=service[1],
                        identity_policies=(),
                    )
                return outer._lookup(key, depth=depth + 1)

        signer = verify_header_signature(
            method=request.method,
            raw_path=parts.path or "/",
            query=[(k, v) for k, v in query],
            headers=dict(request.headers),
            body=request.body,
            store=_Keys(),
            service="sts",
            region=self._region,
            now=issued_at,
        )
        service = self._services.get(signer.access_key_id)
        if service is not None:
            return Caller(account="", service=service[1]), None
        arns = [signer.principal_arn or ""]
        session = _REGISTRY.sessions.get(signer.access_key_id)
        if session is not None:
            arns.append(role_arn_of_session(str(session.assumed.role_arn)))
        account = (signer.principal_arn or "::::").split(":")[4]
        return Caller(account=account, arns=tuple(a for a in arns if a)), signer

    def _from_session(self, session: _Session, depth: int) -> Credential | None:
        assumed = session.assumed
        if depth > _MAX_CHAIN:
            log.warning("refusing %s: role chain too long", assumed.access_key_id)
            return None
        iam = self._iam(str(assumed.account_id))
        try:
            role = iam.get_role_by_arn(arn=assumed.role_arn)
        except Exception:  # moto raises its own NotFound; no role, no session
            log.warning("refusing a session of %s: no such role", assumed.role_arn)
            return None
        if session.role_id is None or str(role.id) != session.role_id:
            log.warning(
                "refusing a session of %s: the role did not exist as it is now when the "
                "session began (deleted and created again)",
                role.arn,
            )
            return None
        if session.request is None:
            log.warning("refusing a session of %s: its AssumeRole was not recorded", role.arn)
            return None
        try:
            caller, signer = self._caller(session.request, depth, session.issued_at)
        except SignatureError as exc:
            log.warning(
                "refusing a session of %s: AssumeRole by an unknown caller (%s)",
                role.arn,
                exc.reason,
            )
            return None
        decision = evaluate_trust(role.assume_role_policy_document, caller)
        if decision.allowed and decision.needs_identity_allow:
            assert signer is not None  # services are only ever named, never delegated
            identity = evaluate(
                "sts:AssumeRole",
                str(role.arn),
                identity_policies=signer.identity_policies,
                session_policies=signer.session_policies,
            )
            if not identity.allowed:
                decision = type(decision)(False, f"the caller may not assume it: {identity.reason}")
        if not decision.allowed:
            log.warning("refusing a session of %s: %s", role.arn, decision.reason)
            return None
        policies: tuple[Policy, ...] = ()
        if assumed.policy:
            policies = (_parse(assumed.policy, f"session/{assumed.session_name}"),)
        return Credential(
            access_key_id=assumed.access_key_id,
            secret_access_key=assumed.secret_access_key,
            principal_id=f"{session.role_id}:{assumed.session_name}",
            principal_arn=str(assumed.arn),
            identity_policies=tuple(_holder_policies(role, "role")),
            session_policies=policies,
            session_token=assumed.session_token,
            expiration=assumed.expiration,
        )

    # --- users -----------------------------------------------------------------------

    def _from_user(self, user: Any, access_key_id: str, iam: Any) -> Credential | None:
        key = next((k for k in list(user.access_keys) if k.access_key_id == access_key_id), None)
        if key is None or key.status != "Active":
            return None
        policies = _holder_policies(user, "user")
        for group in iam.get_groups_for_user(user.name):
            policies.extend(_holder_policies(group, "group"))
        return Credential(
            access_key_id=access_key_id,
            secret_access_key=key.secret_access_key,
            principal_id=str(user.id),
            principal_arn=str(user.arn),
            identity_policies=tuple(policies),
        )

    # --- pruning -----------------------------------------------------------------------

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + self._prune_interval
        self.prune()

    def prune(self, now: datetime | None = None) -> int:
        """Forget every expired session (here and in moto); returns how many."""
        moment = now or datetime.now(UTC)
        with _REGISTRY.lock:
            expired = [
                key
                for key, session in _REGISTRY.sessions.items()
                if _expired(session.assumed.expiration, moment)
            ]
            gone = [_REGISTRY.sessions.pop(key) for key in expired]
        with self._lock:
            for key in expired:
                self._honoured.pop(key, None)
                self._refused.discard(key)
        sts_backends = get_backend("sts")
        for session in gone:
            try:
                backend = sts_backends[session.assumed.account_id][self._partition]
                # list.remove is atomic under the GIL; the moto thread may append meanwhile.
                backend.assumed_roles.remove(session.assumed)
            except (KeyError, ValueError):
                pass
        return len(gone)

    @staticmethod
    def session_count() -> int:
        """Role sessions currently indexed (for tests and benchmarks)."""
        with _REGISTRY.lock:
            return len(_REGISTRY.sessions)
