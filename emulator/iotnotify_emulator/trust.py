"""Role trust policies: who may ``sts:AssumeRole`` a role.

moto's STS hands out role credentials to any caller, with any (or no)
credentials, whatever the role's trust policy says. AWS evaluates the trust
policy (IAM User Guide, "Policy evaluation logic" and "IAM JSON policy
elements: Principal"); the emulator does it again before it honours a role
session:

* an explicit ``Deny`` naming the caller wins;
* ``{"Service": "lambda.amazonaws.com"}`` matches only a caller acting as
  that service;
* ``{"AWS": "<role ARN>"}`` matches that role's sessions and
  ``{"AWS": "<user ARN>"}`` that user: naming the principal is enough;
* ``{"AWS": "arn:aws:iam::<account>:root"}`` (or the bare account id)
  delegates to the account: the caller must be of that account *and* its
  own identity policies must allow ``sts:AssumeRole`` on the role;
* ``"*"`` matches any authenticated caller;
* a statement with a ``Condition`` never allows (the emulator does not
  evaluate trust conditions such as ``sts:ExternalId``: it fails closed) and
  always denies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["Caller", "TrustDecision", "evaluate_trust"]

_ASSUME: Final = "sts:AssumeRole"
_ROLE_ARN_RE: Final = re.compile(r"arn:(?P<p>[^:]+):iam::(?P<a>\d{12}):role/(?:.*/)?(?P<n>[^/]+)$")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who called AssumeRole, once their signature verified.

    ``service`` is set for an AWS service principal (locally: the key the
    stack uses as Lambda); otherwise ``arns`` are the principal ARNs a trust
    policy may name (a user's ARN; a role session's role ARN and session ARN).
    """

    account: str
    arns: tuple[str, ...] = ()
    service: str | None = None


@dataclass(frozen=True, slots=True)
class TrustDecision:
    allowed: bool
    reason: str
    # True when the trust policy only delegates to the account (root): the
    # caller's identity policies must then allow sts:AssumeRole as well.
    needs_identity_allow: bool = False


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _action_matches(actions: Iterable[Any]) -> bool:
    for action in actions:
        text = str(action).lower()
        if text in ("*", "sts:*", _ASSUME.lower()):
            return True
    return False


def _principal_match(principal: Any, caller: Caller) -> str | None:
    """How ``principal`` matches ``caller``: "named", "account", or None."""
    if principal == "*":
        return "named"
    if not isinstance(principal, Mapping):
        return None
    if caller.service is not None:
        services = [str(s) for s in _as_list(principal.get("Service"))]
        return "named" if caller.service in services else None
    for value in (str(v) for v in _as_list(principal.get("AWS"))):
        if value == "*" or value in caller.arns:
            return "named"
        if value in (caller.account, f"arn:aws:iam::{caller.account}:root"):
            return "account"
    return None


def evaluate_trust(document: Any, caller: Caller) -> TrustDecision:
    """Decide whether ``caller`` may assume a role with trust policy ``document``."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError:
            return TrustDecision(False, "the role's trust policy is not JSON")
    if not isinstance(document, Mapping):
        return TrustDecision(False, "the role has no trust policy")
    allowed: TrustDecision | None = None
    for statement in _as_list(document.get("Statement")):
        if not isinstance(statement, Mapping):
            continue
        if "NotPrincipal" in statement or "NotAction" in statement:
            continue  # not used by this project; never grants here
        if not _action_matches(_as_list(statement.get("Action"))):
            continue
        how = _principal_match(statement.get("Principal"), caller)
        effect = statement.get("Effect")
        if effect == "Deny" and (how is not None or "Condition" in statement):
            return TrustDecision(False, "explicit deny in the role's trust policy")
        if effect != "Allow" or how is None or "Condition" in statement:
            continue
        if how == "named":
            allowed = TrustDecision(True, "the trust policy names the caller")
        elif allowed is None:
            allowed = TrustDecision(
                True, "the trust policy trusts the caller's account", needs_identity_allow=True
            )
    return allowed or TrustDecision(False, "the role's trust policy does not trust the caller")


def role_arn_of_session(role_arn: str) -> str:
    """The role ARN as a trust policy names it (paths dropped from matching)."""
    match = _ROLE_ARN_RE.fullmatch(role_arn)
    if match is None:
        return role_arn
    return f"arn:{match['p']}:iam::{match['a']}:role/{match['n']}"
