"""An IAM policy evaluator for AWS IoT Core resources, written by hand.

Why not reuse one: moto's IAM matcher turns ``*`` into ``.*`` without
escaping the rest of the pattern, so an IoT topic such as ``a/+/b`` or
``$aws/x`` (``+``, ``$``, ``.``, ``?`` are all regex metacharacters) either
fails to match or matches far too much. Policy-as-code libraries either pull
in a whole language runtime or do not implement IAM's string-pattern rules.
The emulator's security story rests on this module, so it is small, strict
and tested with property tests.

What it implements (the IAM evaluation logic for identity policies plus
session policies, without resource policies, permission boundaries or SCPs):

* ``Effect`` Allow/Deny; an explicit Deny in any policy wins.
* ``Action``/``NotAction`` matched case-insensitively, ``*`` and ``?`` wildcards.
* ``Resource``/``NotResource`` matched case-sensitively: ``*`` is any run of
  characters (including ``/``), ``?`` exactly one, everything else literal,
  so MQTT ``+`` and ``#`` in a policy are plain characters. ARNs are matched
  segment by segment (the first five ``:`` separate segments), so a ``*`` in
  the region segment never swallows the account.
* Policy variables (``${iot:ClientId}``, ``${iot:Connection.Thing.ThingName}``
  or any key of ``context``) in policies with ``Version`` 2012-10-17; the
  substituted value is literal (a client id ``a*`` does not become a
  wildcard). ``${*}``, ``${?}`` and ``${$}`` are the literal characters. A
  variable missing from ``context`` makes its pattern match nothing.
* ``Condition`` with the String and Arn operators, ``IpAddress`` /
  ``NotIpAddress`` and ``Null``, the ``IfExists`` suffix and the
  ``ForAllValues:`` / ``ForAnyValue:`` set prefixes (for multi-valued keys
  such as ``iot:ConnectAttributes``). The keys the emulator supplies
  (:data:`MODELED_KEYS`: ``iot:ClientId``, ``iot:ConnectAttributes``,
  ``aws:SourceIp``, ``aws:username``, ``aws:userid``) follow IAM's rules
  when absent from a request: a condition on a missing key is false, true
  for the negated operators (``StringNotEquals``, ``NotIpAddress``, ...)
  and with ``IfExists``; ``ForAllValues:`` over no values is true,
  ``ForAnyValue:`` false (IAM user guide, "IAM JSON policy elements:
  Condition operators" and "Multivalued context keys"). Anything else
  (another operator, a key the emulator does not model) is *not
  evaluable*: an Allow statement with such a condition does not apply and a
  Deny statement with one does, so the emulator fails closed rather than
  granting what AWS might refuse.
* Effective permission: at least one identity Allow, and (when session
  policies are given, as for an ``AssumeRole`` session with ``Policy``) at
  least one session Allow, and no applicable Deny anywhere.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any, Final, Literal

__all__ = [
    "MODELED_KEYS",
    "Condition",
    "Decision",
    "Policy",
    "PolicyError",
    "Statement",
    "action_matches",
    "evaluate",
    "resource_matches",
]

_VERSIONS: Final = frozenset({"2012-10-17", "2008-10-17"})
# Only the 2012-10-17 language has policy variables; older documents treat
# ``${...}`` as literal text (IAM user guide, "IAM policy elements: Variables").
_VARIABLES_VERSION: Final = "2012-10-17"
_STATEMENT_KEYS: Final = frozenset(
    {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}
)
_POLICY_KEYS: Final = frozenset({"Version", "Id", "Statement"})
_VARIABLE_RE: Final = re.compile(r"\$\{([^}]*)\}")
_SPECIAL_VARIABLES: Final = {"*": "*", "?": "?", "$": "$"}
_ACTION_RE: Final = re.compile(r"\*|[A-Za-z0-9*?-]+:[A-Za-z0-9*?]+")
# Condition keys the emulator puts in a request's context whenever AWS would
# (the broker's authorize); for these, "absent" is a fact, not a gap. Keys
# for AWS IoT: developer guide, "Basic AWS IoT Core policy variables"
# (iot:ClientId, aws:SourceIp) and "Connect attributes"
# (iot:ConnectAttributes); aws:username / aws:userid are IAM global keys.
MODELED_KEYS: Final = frozenset(
    {"iot:clientid", "iot:connectattributes", "aws:sourceip", "aws:username", "aws:userid"}
)
# A request context: a key maps to one value, or to several (multivalued keys).
Context = Mapping[str, "str | tuple[str, ...]"]


class PolicyError(ValueError):
    """A policy document that IAM would refuse to store."""


class _Tri(Enum):
    """Condition outcome: the emulator may be unable to evaluate a condition."""

    TRUE = "true"
    FALSE = "false"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``operator: {key: values}`` entry of a ``Condition`` block."""

    operator: str
    key: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Statement:
    """One parsed statement; ``negated_*`` means NotAction / NotResource."""

    sid: str
    effect: Literal["Allow", "Deny"]
    actions: tuple[str, ...]
    negated_actions: bool
    resources: tuple[str, ...]
    negated_resources: bool
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed policy document (identity or session policy)."""

    name: str
    statements: tuple[Statement, ...]
    version: str | None = _VARIABLES_VERSION

    @classmethod
    def parse(cls, document: Mapping[str, Any] | str, *, name: str = "inline") -> Policy:
        """Parse a policy document (a mapping or its JSON text).

        Raises :class:`PolicyError` for anything IAM would reject: unknown
        elements, missing Effect/Action/Resource, both Action and NotAction,
        a Principal (not allowed in identity or session policies), ...
        """
        if isinstance(document, str):
            try:
                document = json.loads(document)
            except json.JSONDecodeError as exc:
                raise PolicyError(f"policy {name!r} is not JSON: {exc}") from exc
        if not isinstance(document, Mapping):
            raise PolicyError(f"policy {name!r} must be a JSON object")
        unknown = set(document) - _POLICY_KEYS
        if unknown:
            raise PolicyError(f"policy {name!r} has unknown elements {sorted(unknown)}")
        version = document.get("Version")
        if version is not None and version not in _VERSIONS:
            raise PolicyError(f"policy {name!r} has unsupported Version {version!r}")
        raw_statements = document.get("Statement")
        if isinstance(raw_statements, Mapping):
            raw_statements = [raw_statements]
        if not isinstance(raw_statements, list) or not raw_statements:
            raise PolicyError(f"policy {name!r} needs a non-empty Statement")
        statements = tuple(
            _parse_statement(raw, index=index, policy=name)
            for index, raw in enumerate(raw_statements)
        )
        return cls(name=name, statements=statements, version=version)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :func:`evaluate`, with a reason fit for a refusal log."""

    allowed: bool
    reason: str
    policy: str | None

    def __bool__(self) -> bool:
        return self.allowed


def _string_list(value: object, *, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise PolicyError(f"{what} must be a string or a non-empty list of strings")


def _pick(raw: Mapping[str, Any], plain: str, negated: str, *, where: str) -> tuple[Any, bool]:
    if plain in raw and negated in raw:
        raise PolicyError(f"{where}: {plain} and {negated} are mutually exclusive")
    if plain in raw:
        return raw[plain], False
    if negated in raw:
        return raw[negated], True
    raise PolicyError(f"{where}: needs {plain} or {negated}")


def _parse_statement(raw: object, *, index: int, policy: str) -> Statement:
    where = f"policy {policy!r} statement {index}"
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where} must be a JSON object")
    if "Principal" in raw or "NotPrincipal" in raw:
        raise PolicyError(f"{where}: Principal is not allowed in identity or session policies")
    unknown = set(raw) - _STATEMENT_KEYS
    if unknown:
        raise PolicyError(f"{where} has unknown elements {sorted(unknown)}")
    sid = raw.get("Sid", f"statement[{index}]")
    if not isinstance(sid, str):
        raise PolicyError(f"{where}: Sid must be a string")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"{where}: Effect must be 'Allow' or 'Deny', not {effect!r}")
    raw_actions, negated_actions = _pick(raw, "Action", "NotAction", where=where)
    actions = _string_list(raw_actions, what=f"{where} Action")
    for action in actions:
        if not _ACTION_RE.fullmatch(action):
            raise PolicyError(f"{where}: action {action!r} is not 'service:Action' or '*'")
    raw_resources, negated_resources = _pick(raw, "Resource", "NotResource", where=where)
    resources = _string_list(raw_resources, what=f"{where} Resource")
    conditions = _parse_conditions(raw.get("Condition"), where=where)
    return Statement(
        sid=sid,
        effect=effect,
        actions=actions,
        negated_actions=negated_actions,
        resources=resources,
        negated_resources=negated_resources,
        conditions=conditions,
    )


def _parse_conditions(raw: object, *, where: str) -> tuple[Condition, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: Condition must be a JSON object")
    conditions: list[Condition] = []
    for operator, block in raw.items():
        if not isinstance(block, Mapping) or not block:
            raise PolicyError(f"{where}: Condition {operator!r} must map keys to values")
        for key, value in block.items():
            items = value if isinstance(value, list) else [value]
            if not items or not all(isinstance(item, str | bool | int | float) for item in items):
                raise PolicyError(f"{where}: Condition {operator}/{key} has invalid values")
            # IAM compares condition values as strings; JSON true becomes "true".
            values = tuple(
                ("true" if item else "false") if isinstance(item, bool) else str(item)
                for item in items
            )
            conditions.append(Condition(operator=str(operator), key=str(key), values=values))
    return tuple(conditions)


# --- pattern matching -------------------------------------------------------


# A pattern after variable substitution: wildcard text plus literal text that
# came from variable values, kept apart so values cannot act as wildcards.
_Piece = tuple[str, bool]  # (text, is_literal)


@lru_cache(maxsize=16384)
def _compile(pieces: tuple[_Piece, ...], ignore_case: bool, arn: bool) -> re.Pattern[str]:
    """A regex for an IAM pattern: ``*`` any run, ``?`` one char, all else literal.

    With ``arn`` the wildcards in the first five colon-separated segments do
    not cross a colon, so ``arn:aws:iot:*:123:topic/x`` cannot reach into
    another account; in the sixth (the resource, where IoT topics may hold
    colons) they match anything.
    """
    parts: list[str] = []
    colons = 0
    for text, literal in pieces:
        if literal:
            parts.append(re.escape(text))
            colons += text.count(":")
            continue
        for char in text:
            bounded = arn and colons < 5
            if char == "*":
                parts.append("[^:]*" if bounded else ".*")
            elif char == "?":
                parts.append("[^:]" if bounded else ".")
            else:
                parts.append(re.escape(char))
                colons += char == ":"
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("".join(parts), flags)


def _pieces_match(pieces: Sequence[_Piece], value: str, *, ignore_case: bool = False) -> bool:
    text = "".join(piece for piece, _ in pieces)
    # IAM: "a wildcard can't span segments" of an ARN (policy elements: Resource).
    arn = text.startswith("arn:")
    if not ignore_case:
        # Every user's session policy brings new patterns, nearly all of them
        # literal (a topic) or a literal prefix and one trailing '*' (its
        # client ids). Compiling those to regexes cost most of a connect's
        # CPU and a cached pattern per user, so they are compared directly;
        # the result is the one the regex would give.
        wild = [
            index
            for index, (piece, literal) in enumerate(pieces)
            if not literal and ("*" in piece or "?" in piece)
        ]
        if not wild:
            return text == value
        last_piece, last_literal = pieces[-1]
        if (
            wild == [len(pieces) - 1]
            and not last_literal
            and last_piece.endswith("*")
            and "*" not in last_piece[:-1]
            and "?" not in last_piece
        ):
            prefix = text[:-1]
            if not value.startswith(prefix):
                return False
            # Within the first five ARN segments a wildcard stops at ':'.
            return not arn or prefix.count(":") >= 5 or ":" not in value[len(prefix) :]
        # Any other pattern whose wildcards all come from the policy text
        # (session policies name arn:aws:iot:*:*:client/u1.*) is matched
        # segment by segment without a regex: a compiled pattern per user
        # held ~1.3 KB in the cache for each connected user.
        if not any(literal and ("*" in piece or "?" in piece) for piece, literal in pieces):
            if not arn:
                return _glob(text, value)
            # Within the first five ARN segments a wildcard stops at ':', so
            # those segments pair up one to one; the sixth matches anything.
            segments = text.split(":", 5)
            actual = value.split(":", 5)
            return len(segments) == len(actual) and all(map(_glob, segments, actual))
    return _compile(tuple(pieces), ignore_case, arn).fullmatch(value) is not None


def _glob(pattern: str, value: str) -> bool:
    """``*`` any run (newlines too), ``?`` one character, all else literal; whole ``value``.

    The usual linear wildcard walk: on a mismatch, retry from the last ``*``
    one character further into ``value``.
    """
    if pattern == "*":  # the region and account segments of session policies
        return True
    if "*" not in pattern and "?" not in pattern:
        return pattern == value
    p = v = 0
    star = -1
    mark = 0
    size, end = len(pattern), len(value)
    while v < end:
        if p < size and pattern[p] == "*":
            star, mark = p, v
            p += 1
        elif p < size and (pattern[p] == "?" or pattern[p] == value[v]):
            p += 1
            v += 1
        elif star >= 0:
            mark += 1
            p, v = star + 1, mark
        else:
            return False
    while p < size and pattern[p] == "*":
        p += 1
    return p == size


def action_matches(pattern: str, action: str) -> bool:
    """Whether an IAM action pattern (``iot:*``, ``iot:Conn?ct``) covers ``action``."""
    return _compile(((pattern, False),), True, False).fullmatch(action) is not None


def resource_matches(pattern: str, resource: str) -> bool:
    """Whether an IAM resource pattern (no variables) covers ``resource``."""
    return _pieces_match([(pattern, False)], resource)


# --- variables and conditions -----------------------------------------------


def _lookup(context: Context, key: str) -> str | tuple[str, ...] | None:
    # Condition keys and policy-variable names are case-insensitive in IAM.
    if key in context:
        return context[key]
    lowered = key.lower()
    for name, value in context.items():
        if name.lower() == lowered:
            return value
    return None


def _substitute(pattern: str, context: Context, *, variables: bool) -> list[_Piece] | None:
    """Split ``pattern`` into wildcard and literal pieces; None if a variable is missing."""
    if not variables or "${" not in pattern:
        return [(pattern, False)]
    pieces: list[_Piece] = []
    position = 0
    for match in _VARIABLE_RE.finditer(pattern):
        if match.start() > position:
            pieces.append((pattern[position : match.start()], False))
        name = match.group(1)
        if name in _SPECIAL_VARIABLES:
            pieces.append((_SPECIAL_VARIABLES[name], True))
        else:
            value = _lookup(context, name)
            if not isinstance(value, str):
                return None  # missing, or multivalued (not a policy variable)
            pieces.append((value, True))
        position = match.end()
    if position < len(pattern):
        pieces.append((pattern[position:], False))
    return pieces or [("", True)]


_STRING_OPERATORS: Final = {
    # operator: (wildcards allowed, ignore case, negated)
    "StringEquals": (False, False, False),
    "StringNotEquals": (False, False, True),
    "StringEqualsIgnoreCase": (False, True, False),
    "StringNotEqualsIgnoreCase": (False, True, True),
    "StringLike": (True, False, False),
    "StringNotLike": (True, False, True),
    "ArnEquals": (True, False, False),
    "ArnLike": (True, False, False),
    "ArnNotEquals": (True, False, True),
    "ArnNotLike": (True, False, True),
}


_NEGATED_OPERATORS: Final = frozenset(
    {name for name, spec in _STRING_OPERATORS.items() if spec[2]} | {"NotIpAddress"}
)


def _value_matches(operator: str, raw: str, actual: str, context: Context, variables: bool) -> bool:
    """One policy value against one request value (before negation); raises
    ValueError when the policy value cannot be evaluated."""
    if operator in ("IpAddress", "NotIpAddress"):
        try:
            return ipaddress.ip_address(actual) in ipaddress.ip_network(raw, strict=False)
        except ValueError:
            return False  # a request value that is not an address matches no range
    wildcards, ignore_case, _ = _STRING_OPERATORS[operator]
    pieces = _substitute(raw, context, variables=variables)
    if pieces is None:
        raise ValueError(raw)
    if wildcards:
        # ArnLike is segment-aware like Resource; StringLike is not.
        if operator.startswith("Arn"):
            return _pieces_match(pieces, actual, ignore_case=ignore_case)
        return _compile(tuple(pieces), ignore_case, False).fullmatch(actual) is not None
    expected = "".join(text for text, _ in pieces)
    return expected.lower() == actual.lower() if ignore_case else expected == actual


def _condition(condition: Condition, context: Context, *, variables: bool) -> _Tri:
    operator, key = condition.operator, condition.key
    qualifier = ""
    for prefix in ("ForAllValues:", "ForAnyValue:"):
        if operator.startswith(prefix):
            qualifier, operator = prefix, operator[len(prefix) :]
    if_exists = operator.endswith("IfExists")
    if if_exists:
        operator = operator[: -len("IfExists")]
    actual = _lookup(context, key)
    modeled = key.lower() in MODELED_KEYS
    if operator == "Null":
        if actual is None and not modeled:
            return _Tri.UNKNOWN
        present = actual is not None and actual != ()
        # "Null": {"key": "true"} holds when the key is absent, "false" when present.
        outcome = any((value.lower() == "true") != present for value in condition.values)
        return _Tri.TRUE if outcome else _Tri.FALSE
    if operator not in _STRING_OPERATORS and operator not in ("IpAddress", "NotIpAddress"):
        return _Tri.UNKNOWN
    if actual is None:
        if not modeled:
            return _Tri.UNKNOWN
        # IAM: a missing key matches nothing; negated operators and IfExists
        # are then true; a set operator over no values: ForAllValues true.
        if if_exists or qualifier == "ForAllValues:" or operator in _NEGATED_OPERATORS:
            return _Tri.FALSE if qualifier == "ForAnyValue:" else _Tri.TRUE
        return _Tri.FALSE
    negated = operator in _NEGATED_OPERATORS
    values = (actual,) if isinstance(actual, str) else actual
    try:
        if qualifier:
            # Each request value is tested on its own; the operator's negation
            # applies per value ("ForAllValues:StringNotEquals": none of them).
            hits = [
                any(
                    _value_matches(operator, raw, value, context, variables)
                    for raw in condition.values
                )
                != negated
                for value in values
            ]
            outcome = all(hits) if qualifier == "ForAllValues:" else any(hits)
        else:
            if not isinstance(actual, str):
                return _Tri.UNKNOWN  # a multivalued key needs a set operator
            hit = any(
                _value_matches(operator, raw, actual, context, variables)
                for raw in condition.values
            )
            outcome = hit != negated
    except ValueError:
        return _Tri.UNKNOWN
    return _Tri.TRUE if outcome else _Tri.FALSE


def _conditions(statement: Statement, context: Context, *, variables: bool) -> _Tri:
    result = _Tri.TRUE
    for condition in statement.conditions:
        outcome = _condition(condition, context, variables=variables)
        if outcome is _Tri.FALSE:
            return _Tri.FALSE
        if outcome is _Tri.UNKNOWN:
            result = _Tri.UNKNOWN
    return result


def _statement_covers(
    statement: Statement,
    action: str,
    resource: str,
    context: Context,
    *,
    variables: bool,
) -> bool:
    """Action and resource match (conditions are checked by the caller)."""
    action_hit = any(action_matches(pattern, action) for pattern in statement.actions)
    if action_hit == statement.negated_actions:
        return False
    resource_hit = False
    for pattern in statement.resources:
        pieces = _substitute(pattern, context, variables=variables)
        if pieces is None:
            if statement.negated_resources:
                # Cannot tell what is excluded, so the statement cannot apply.
                return False
            continue
        if _pieces_match(pieces, resource):
            resource_hit = True
            break
    return resource_hit != statement.negated_resources


def _applicable(
    policies: Iterable[Policy],
    effect: str,
    action: str,
    resource: str,
    context: Context,
) -> tuple[Policy, Statement, _Tri] | None:
    for policy in policies:
        variables = policy.version == _VARIABLES_VERSION
        for statement in policy.statements:
            if statement.effect != effect:
                continue
            if not _statement_covers(statement, action, resource, context, variables=variables):
                continue
            outcome = _conditions(statement, context, variables=variables)
            # Fail closed: an Allow needs its conditions proven, a Deny applies
            # unless its conditions are proven false.
            if outcome is _Tri.TRUE or (effect == "Deny" and outcome is _Tri.UNKNOWN):
                return policy, statement, outcome
    return None


def evaluate(
    action: str,
    resource: str,
    *,
    identity_policies: Sequence[Policy],
    session_policies: Sequence[Policy] = (),
    context: Context | None = None,
) -> Decision:
    """Decide whether ``action`` on ``resource`` is allowed.

    Allowed means: no applicable Deny in any policy, an Allow in at least one
    identity policy and, when ``session_policies`` is non-empty, an Allow in
    at least one session policy too (a session policy only narrows).
    """
    context = context or {}
    everything = (*identity_policies, *session_policies)
    denied = _applicable(everything, "Deny", action, resource, context)
    if denied is not None:
        policy, statement, outcome = denied
        suffix = " (condition not evaluable, failing closed)" if outcome is _Tri.UNKNOWN else ""
        return Decision(
            allowed=False,
            reason=f"explicit deny in {policy.name}/{statement.sid}{suffix}",
            policy=policy.name,
        )
    identity = _applicable(identity_policies, "Allow", action, resource, context)
    if identity is None:
        return Decision(allowed=False, reason="no allow in identity policies", policy=None)
    if session_policies:
        session = _applicable(session_policies, "Allow", action, resource, context)
        if session is None:
            names = ",".join(policy.name for policy in session_policies)
            return Decision(
                allowed=False, reason=f"no allow in session policy {names}", policy=names
            )
        return Decision(
            allowed=True,
            reason=(
                f"allowed by {identity[0].name}/{identity[1].sid} "
                f"and session {session[0].name}/{session[1].sid}"
            ),
            policy=session[0].name,
        )
    return Decision(
        allowed=True,
        reason=f"allowed by {identity[0].name}/{identity[1].sid}",
        policy=identity[0].name,
    )
