"""A :class:`CredentialStore` over moto's in-process STS and IAM backends.

This is the one module that reads moto's internal models (moto 5.x), so a
moto upgrade that moves them breaks here and nowhere else. moto must run in
the same process (``moto.server.ThreadedMotoServer`` or ``mock_aws``):
the emulator looks up

* role sessions from ``sts.assume_role``: moto's ``AssumedRole`` keeps the
  access key, secret, session token, expiry and the ``Policy`` passed to
  AssumeRole (moto records it but never enforces it; the emulator does),
  and the role's inline and attached managed policies from moto's IAM;
* IAM users' access keys (publishers), with the user's inline and managed
  policies and those of its groups.

Backends are indexed ``[account_id][partition]`` in moto 5 (``"aws"``), not
by region: STS and IAM are global services.

A policy that does not parse is replaced by a deny-all policy (and logged):
dropping it silently could drop a Deny and grant more than AWS would.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Final

from moto.backends import get_backend

from iotnotify_emulator.credentials import Credential
from iotnotify_emulator.iam import Policy, PolicyError

__all__ = ["MotoCredentialStore"]

log = logging.getLogger("iotnotify_emulator")

_DENY_ALL: Final = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}],
}
# moto's backends are plain dicts mutated by the moto server thread; a lookup
# that races a write retries instead of failing the handshake.
_RETRIES: Final = 3


def _parse(document: Any, name: str) -> Policy:
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


class MotoCredentialStore:
    """Resolves access keys minted by moto's STS (role sessions) and IAM (users)."""

    def __init__(self, *, partition: str = "aws", accounts: Iterable[str] | None = None) -> None:
        self._partition = partition
        self._accounts = tuple(accounts) if accounts is not None else None

    def lookup(self, access_key_id: str) -> Credential | None:
        for attempt in range(_RETRIES):
            try:
                return self._lookup(access_key_id)
            except RuntimeError:  # "dictionary changed size during iteration"
                if attempt == _RETRIES - 1:
                    raise
        return None  # pragma: no cover - the loop returns or raises

    def _account_ids(self, backends: Any) -> list[str]:
        return list(self._accounts) if self._accounts is not None else list(backends.keys())

    def _lookup(self, access_key_id: str) -> Credential | None:
        sts_backends = get_backend("sts")
        iam_backends = get_backend("iam")
        for account_id in self._account_ids(sts_backends):
            sts = sts_backends[account_id][self._partition]
            assumed = sts.get_assumed_role_from_access_key(access_key_id)
            if assumed is not None:
                return self._from_assumed_role(assumed, iam_backends)
        for account_id in self._account_ids(iam_backends):
            iam = iam_backends[account_id][self._partition]
            user = iam.get_user_from_access_key_id(access_key_id)
            if user is not None:
                return self._from_user(user, access_key_id, iam)
        return None

    def _from_assumed_role(self, assumed: Any, iam_backends: Any) -> Credential:
        iam = iam_backends[assumed.account_id][self._partition]
        identity: list[Policy] = []
        try:
            role = iam.get_role_by_arn(arn=assumed.role_arn)
        except Exception:  # moto raises its own NotFound; the session then has no rights
            log.warning("assumed role %s not found in moto IAM", assumed.role_arn)
        else:
            identity = _holder_policies(role, "role")
        session: tuple[Policy, ...] = ()
        if assumed.policy:
            session = (_parse(assumed.policy, f"session/{assumed.session_name}"),)
        return Credential(
            access_key_id=assumed.access_key_id,
            secret_access_key=assumed.secret_access_key,
            principal_id=str(assumed.user_id),
            principal_arn=str(assumed.arn),
            identity_policies=tuple(identity),
            session_policies=session,
            session_token=assumed.session_token,
            expiration=assumed.expiration,
        )

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
