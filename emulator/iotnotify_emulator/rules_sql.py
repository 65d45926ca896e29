"""The subset of AWS IoT SQL (version 2016-03-23) that topic rules here use.

Why a hand-written parser: the language is small but is not ANSI SQL
(``topic(n)`` and ``clientid()`` read the message's context, ``a.b`` walks
JSON, *Undefined* is a value distinct from NULL and drops a key from the
output, ``FROM`` takes an MQTT topic filter in quotes), so a general SQL
library (sqlglot, sqlparse) would parse a different language and still leave
the semantics to write. No maintained Python package implements IoT SQL. A
small recursive-descent parser over this grammar is easier to check against
AWS's documentation than an adapted general one:

.. code-block:: text

    statement  := SELECT items FROM 'topic filter' [WHERE expr]
    items      := item ("," item)*
    item       := "*" | expr [AS name ("." name)*]
    expr       := and (OR and)*
    and        := not (AND not)*
    not        := NOT not | comparison
    comparison := sum [("=" | "<>" | "!=" | "<" | "<=" | ">" | ">=") sum]
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/" | "%") unary)*
    unary      := "-" unary | primary
    primary    := number | 'string' | "string" | TRUE | FALSE | NULL
                | function "(" [arg ("," arg)*] ")" | name ("." name)* | "(" expr ")"
    arg        := expr | "*"            (only encode() takes "*")

Functions: ``topic()``/``topic(n)``, ``clientid()``, ``principal()``,
``timestamp()``, ``newuuid()``, ``encode(value, 'base64')`` (``value`` may be
``*``: the raw payload, JSON or not). Keywords are case-insensitive.

Semantics follow the AWS IoT developer guide ("AWS IoT SQL reference":
SELECT clause, WHERE clause, Data types, Operators, Functions, JSON
extensions):

* ``SELECT *`` is the whole JSON payload; other items add keys; a field that
  does not exist is *Undefined* and its key is left out; ``a.b`` reads a
  nested field and is output under ``b``; ``AS x.y`` nests the output.
* WHERE is evaluated first; the rule fires only if it is ``true``.
* AND/OR/NOT take Booleans (or the strings "true"/"false"); anything else
  gives Undefined. ``>``/``<``/``>=``/``<=`` compare numbers (strings that
  parse as numbers are converted); otherwise Undefined. ``=``/``<>`` compare
  values of the same type (numbers with numbers); mixed types give Undefined.
* A non-JSON payload: ``SELECT *`` passes its raw bytes on; referring to a
  field of it is an evaluation error (the rule's error action runs).

Not supported (a :class:`RuleSqlError` when a rule is created): CASE, nested
SELECTs, ``get()``, ``[]`` indexing, ``SELECT VALUE``, any other function.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from iotnotify.contract import TopicFilter
from iotnotify.errors import InvalidTopic

__all__ = [
    "UNDEFINED",
    "MessageContext",
    "RuleEvaluationError",
    "RuleSqlError",
    "SqlStatement",
    "parse_expression",
    "parse_sql",
]


class RuleSqlError(ValueError):
    """The SQL text is outside the supported subset or malformed (CreateTopicRule's 400)."""


class RuleEvaluationError(Exception):
    """Evaluating a rule on one message failed; the rule's error action runs."""


class _Undefined:
    """AWS IoT SQL's *Undefined*: not a value, and not NULL either."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Final = _Undefined()


@dataclass(frozen=True, slots=True)
class MessageContext:
    """What a rule sees of one message besides its payload.

    ``client_id`` is None for messages that did not arrive over MQTT (HTTP
    publishes): ``clientid()`` then returns ``"n/a"`` as on AWS.
    ``timestamp_ms`` defaults to now, in epoch milliseconds.
    """

    topic: str
    client_id: str | None = None
    principal: str | None = None
    timestamp_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    # The message's raw bytes, for ``encode(*, ...)``; set by SqlStatement.evaluate.
    payload: bytes = b""


_TOKEN_RE: Final = re.compile(
    r"""
    \s*(?:
      (?P<number>\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?
    | '(?P<squote>(?:[^']|'')*)'
    | "(?P<dquote>(?:[^"\\]|\\.)*)"
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op><>|!=|<=|>=|[=<>*,().+\-/%])
    )""",
    re.VERBOSE,
)
_KEYWORDS: Final = {"SELECT", "FROM", "WHERE", "AS", "AND", "OR", "NOT", "TRUE", "FALSE", "NULL"}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # number, string, name, keyword, op, end
    text: str
    value: Any = None


def _tokenize(sql: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    stripped = sql.rstrip()
    while position < len(stripped):
        match = _TOKEN_RE.match(stripped, position)
        if match is None or match.end() == position:
            raise RuleSqlError(f"unexpected character at {position}: {stripped[position:][:20]!r}")
        position = match.end()
        if match.group("number") is not None:
            text = match.group(0).strip()
            number: Any = Decimal(text)
            if number == number.to_integral_value() and "." not in text and "e" not in text.lower():
                number = int(text)
            tokens.append(_Token("number", text, number))
        elif match.group("squote") is not None:
            tokens.append(
                _Token("string", match.group(0), match.group("squote").replace("''", "'"))
            )
        elif match.group("dquote") is not None:
            tokens.append(
                _Token("string", match.group(0), json.loads(f'"{match.group("dquote")}"'))
            )
        elif match.group("name") is not None:
            name = match.group("name")
            if name.upper() in _KEYWORDS:
                tokens.append(_Token("keyword", name.upper()))
            else:
                tokens.append(_Token("name", name))
        else:
            tokens.append(_Token("op", match.group("op")))
    tokens.append(_Token("end", ""))
    return tokens


# --- expression tree ----------------------------------------------------------------

Evaluator = Callable[[Any, MessageContext], Any]


@dataclass(frozen=True, slots=True)
class _Item:
    expr: Evaluator | None  # None: "*"
    output: tuple[str, ...]  # the output key path ("a" or AS "x.y")
    needs_payload: bool


def _as_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return UNDEFINED


def _as_number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _equal(left: Any, right: Any) -> Any:
    if left is UNDEFINED or right is UNDEFINED:
        return UNDEFINED
    if _is_number(left) and _is_number(right):
        return Decimal(str(left)) == Decimal(str(right))
    if type(left) is not type(right):
        return UNDEFINED
    return bool(left == right)


def _compare(op: str) -> Callable[[Any, Any], Any]:
    def compare(left: Any, right: Any) -> Any:
        a, b = _as_number(left), _as_number(right)
        if a is None or b is None:
            return UNDEFINED
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]

    return compare


def _not_equal(left: Any, right: Any) -> Any:
    result = _equal(left, right)
    return UNDEFINED if result is UNDEFINED else not result


_COMPARISONS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "=": _equal,
    "<>": _not_equal,
    "!=": _not_equal,
    "<": _compare("<"),
    "<=": _compare("<="),
    ">": _compare(">"),
    ">=": _compare(">="),
}


def _arithmetic(op: str, left: Any, right: Any) -> Any:
    if isinstance(left, str) and isinstance(right, str) and op == "+":
        return UNDEFINED  # concatenation is the || operator on AWS, not supported here
    a, b = _as_number(left), _as_number(right)
    if a is None or b is None:
        return UNDEFINED
    try:
        result = {
            "+": lambda: a + b,
            "-": lambda: a - b,
            "*": lambda: a * b,
            "/": lambda: a / b,
            "%": lambda: a % b,
        }[op]()
    except (InvalidOperation, ZeroDivisionError):
        return UNDEFINED
    return _to_json_number(result)


def _to_json_number(value: Decimal) -> int | float:
    # SQL V2 (2016-03-23) processes whole numbers as Int (Data types page).
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def _topic_function(args: list[Evaluator]) -> Evaluator:
    if len(args) > 1:
        raise RuleSqlError("topic() takes at most one argument")

    def topic(payload: Any, ctx: MessageContext) -> Any:
        if not args:
            return ctx.topic
        index = args[0](payload, ctx)
        if not isinstance(index, int) or isinstance(index, bool) or index < 1:
            return UNDEFINED
        levels = ctx.topic.split("/")
        return levels[index - 1] if index <= len(levels) else UNDEFINED

    return topic


def _whole_payload(payload: Any, ctx: MessageContext) -> bytes:
    """``*`` as a function argument: the message's bytes, JSON or not."""
    return ctx.payload


def _encode_function(args: list[Evaluator]) -> Evaluator:
    """``encode(value, 'base64')`` (developer guide, "Functions": encode): ``*``
    encodes the whole payload whether or not it is JSON ("Working with binary
    payloads": the way to hand a non-JSON payload to a Lambda action); any
    other value is converted to a string first. Only ``'base64'`` exists."""
    if len(args) != 2:
        raise RuleSqlError("encode() takes a value and an encoding scheme")
    value_of, scheme_of = args

    def encode(payload: Any, ctx: MessageContext) -> Any:
        if scheme_of(payload, ctx) != "base64":
            return UNDEFINED
        value = value_of(payload, ctx)
        if value is UNDEFINED:
            return UNDEFINED
        if isinstance(value, bytes):
            data = value
        elif isinstance(value, str):
            data = value.encode()
        else:
            data = json.dumps(value, separators=(",", ":")).encode()
        return base64.b64encode(data).decode("ascii")

    return encode


def _no_args(
    name: str, func: Callable[[MessageContext], Any]
) -> Callable[[list[Evaluator]], Evaluator]:
    def build(args: list[Evaluator]) -> Evaluator:
        if args:
            raise RuleSqlError(f"{name}() takes no arguments")
        return lambda payload, ctx: func(ctx)

    return build


# AWS IoT SQL functions (developer guide, "Functions"): clientid() is "n/a"
# for messages not sent over MQTT; principal() is the IAM principal's id.
_FUNCTIONS: Final[dict[str, Callable[[list[Evaluator]], Evaluator]]] = {
    "topic": _topic_function,
    "clientid": _no_args("clientid", lambda ctx: ctx.client_id or "n/a"),
    "principal": _no_args("principal", lambda ctx: ctx.principal or UNDEFINED),
    "timestamp": _no_args("timestamp", lambda ctx: ctx.timestamp_ms),
    "newuuid": _no_args("newuuid", lambda ctx: str(uuid.uuid4())),
    "encode": _encode_function,
}


class _NotJson(Exception):
    """A field was read from a payload that is not a JSON object."""


def _field(path: tuple[str, ...]) -> Evaluator:
    def read(payload: Any, ctx: MessageContext) -> Any:
        if not isinstance(payload, dict):
            raise _NotJson(".".join(path))
        value: Any = payload
        for name in path:
            if not isinstance(value, dict) or name not in value:
                return UNDEFINED
            value = value[name]
        return value

    return read


class _Parser:
    def __init__(self, sql: str) -> None:
        self.tokens = _tokenize(sql)
        self.position = 0
        self.reads_payload = False
        self.reads_raw_payload = False

    def peek(self) -> _Token:
        return self.tokens[self.position]

    def take(self) -> _Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def accept(self, kind: str, text: str | None = None) -> _Token | None:
        token = self.peek()
        if token.kind == kind and (text is None or token.text == text):
            self.position += 1
            return token
        return None

    def expect(self, kind: str, text: str | None = None) -> _Token:
        token = self.accept(kind, text)
        if token is None:
            got = self.peek().text or "end of statement"
            raise RuleSqlError(f"expected {text or kind}, found {got!r}")
        return token

    # statement ---------------------------------------------------------------

    def statement(self, sql: str) -> SqlStatement:
        self.expect("keyword", "SELECT")
        items = [self.item()]
        while self.accept("op", ","):
            items.append(self.item())
        self.expect("keyword", "FROM")
        source = self.expect("string")
        try:
            topic_filter = TopicFilter(str(source.value))
        except InvalidTopic as exc:
            raise RuleSqlError(f"FROM: {exc}") from exc
        where: Evaluator | None = None
        if self.accept("keyword", "WHERE"):
            where = self.expr()
        if self.peek().kind != "end":
            raise RuleSqlError(f"unexpected {self.peek().text!r} after the statement")
        return SqlStatement(
            sql=sql,
            items=tuple(items),
            topic_filter=topic_filter,
            where=where,
            reads_raw_payload=self.reads_raw_payload,
        )

    def item(self) -> _Item:
        if self.accept("op", "*"):
            return _Item(expr=None, output=(), needs_payload=True)
        before = self.reads_payload
        self.reads_payload = False
        start_position = self.position
        start = self.peek()
        expr = self.expr()
        needs_payload = self.reads_payload
        self.reads_payload = before or needs_payload
        if self.accept("keyword", "AS"):
            output = [self.expect("name").text]
            while self.accept("op", "."):
                output.append(self.expect("name").text)
            return _Item(expr=expr, output=tuple(output), needs_payload=needs_payload)
        # Without AS a field is output under its last name; anything else needs AS.
        consumed = self.tokens[start_position : self.position]
        names = [t.text for t in consumed if t.kind == "name"]
        if consumed and all(t.kind == "name" or t.text == "." for t in consumed):
            return _Item(expr=expr, output=(names[-1],), needs_payload=needs_payload)
        raise RuleSqlError(f"SELECT item starting at {start.text!r} needs AS <name>")

    # expressions ---------------------------------------------------------------

    def expr(self) -> Evaluator:
        left = self.conjunction()
        while self.accept("keyword", "OR"):
            right = self.conjunction()
            left = _logical(left, right, any_of=True)
        return left

    def conjunction(self) -> Evaluator:
        left = self.negation()
        while self.accept("keyword", "AND"):
            right = self.negation()
            left = _logical(left, right, any_of=False)
        return left

    def negation(self) -> Evaluator:
        if self.accept("keyword", "NOT"):
            inner = self.negation()

            def negate(payload: Any, ctx: MessageContext) -> Any:
                value = _as_bool(inner(payload, ctx))
                return UNDEFINED if value is UNDEFINED else not value

            return negate
        return self.comparison()

    def comparison(self) -> Evaluator:
        left = self.sum()
        token = self.peek()
        if token.kind == "op" and token.text in _COMPARISONS:
            self.take()
            right = self.sum()
            compare = _COMPARISONS[token.text]
            return lambda payload, ctx: compare(left(payload, ctx), right(payload, ctx))
        return left

    def sum(self) -> Evaluator:
        left = self.product()
        while (token := self.peek()).kind == "op" and token.text in "+-":
            self.take()
            left = _binary(token.text, left, self.product())
        return left

    def product(self) -> Evaluator:
        left = self.unary()
        while (token := self.peek()).kind == "op" and token.text in ("*", "/", "%"):
            self.take()
            left = _binary(token.text, left, self.unary())
        return left

    def unary(self) -> Evaluator:
        if self.accept("op", "-"):
            inner = self.unary()
            return lambda payload, ctx: _arithmetic("-", 0, inner(payload, ctx))
        return self.primary()

    def argument(self, function: str) -> Evaluator:
        """A function argument: an expression, or ``*`` (the payload) for encode()."""
        if self.accept("op", "*"):
            if function.lower() != "encode":
                raise RuleSqlError(f"{function}() does not take *")
            self.reads_raw_payload = True
            return _whole_payload
        return self.expr()

    def primary(self) -> Evaluator:
        token = self.take()
        if token.kind in ("number", "string"):
            value = token.value
            return lambda payload, ctx: value
        if token.kind == "keyword" and token.text in ("TRUE", "FALSE", "NULL"):
            constant = {"TRUE": True, "FALSE": False, "NULL": None}[token.text]
            return lambda payload, ctx: constant
        if token.kind == "op" and token.text == "(":
            inner = self.expr()
            self.expect("op", ")")
            return inner
        if token.kind == "name":
            if self.accept("op", "("):
                args: list[Evaluator] = []
                if not self.accept("op", ")"):
                    args.append(self.argument(token.text))
                    while self.accept("op", ","):
                        args.append(self.argument(token.text))
                    self.expect("op", ")")
                builder = _FUNCTIONS.get(token.text.lower())
                if builder is None:
                    raise RuleSqlError(f"function {token.text}() is not supported by the emulator")
                return builder(args)
            path = [token.text]
            while self.accept("op", "."):
                path.append(self.expect("name").text)
            self.reads_payload = True
            return _field(tuple(path))
        raise RuleSqlError(f"unexpected {token.text or 'end of statement'!r}")


def _binary(op: str, left: Evaluator, right: Evaluator) -> Evaluator:
    return lambda payload, ctx: _arithmetic(op, left(payload, ctx), right(payload, ctx))


def _logical(left: Evaluator, right: Evaluator, *, any_of: bool) -> Evaluator:
    def combine(payload: Any, ctx: MessageContext) -> Any:
        a, b = _as_bool(left(payload, ctx)), _as_bool(right(payload, ctx))
        if a is UNDEFINED or b is UNDEFINED:
            return UNDEFINED
        return (a or b) if any_of else (a and b)

    return combine


def _place(output: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    target = output
    for name in path[:-1]:
        nested = target.get(name)
        if not isinstance(nested, dict):
            nested = target[name] = {}
        target = nested
    target[path[-1]] = value


@dataclass(frozen=True, slots=True)
class SqlStatement:
    """A parsed rule query; :meth:`evaluate` runs it on one message."""

    sql: str
    items: tuple[_Item, ...]
    topic_filter: TopicFilter
    where: Evaluator | None
    reads_raw_payload: bool = False

    def matches(self, topic: str) -> bool:
        """Whether the FROM filter selects messages on ``topic``."""
        return self.topic_filter.matches(topic)

    def evaluate(self, payload: bytes, ctx: MessageContext) -> dict[str, Any] | bytes | None:
        """The outgoing payload, or None when WHERE is not true.

        A JSON object comes back as a dict; with a non-JSON payload, ``SELECT *``
        gives the raw bytes. Raises :class:`RuleEvaluationError` when the
        statement reads fields of a payload that is not a JSON object.
        """
        if self.reads_raw_payload:
            ctx = replace(ctx, payload=payload)
        document: Any
        try:
            document = json.loads(payload) if payload else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            document = None
        try:
            if self.where is not None and _as_bool(self.where(document, ctx)) is not True:
                return None
            if not isinstance(document, dict):
                if all(item.expr is None for item in self.items):
                    return (
                        payload  # SELECT * of a non-JSON payload: its raw bytes (JSON extensions)
                    )
                if any(item.needs_payload for item in self.items):
                    raise _NotJson("*")
                document = {}
            output: dict[str, Any] = {}
            for item in self.items:
                if item.expr is None:
                    output.update(document)
                    continue
                value = item.expr(document, ctx)
                if value is not UNDEFINED:
                    _place(output, item.output, value)
            return output
        except _NotJson as exc:
            raise RuleEvaluationError(
                f"the statement reads {exc} but the payload is not a JSON object"
            ) from exc


def parse_sql(sql: str) -> SqlStatement:
    """Parse a rule query; :class:`RuleSqlError` if it is outside the supported subset."""
    if not isinstance(sql, str) or not sql.strip():
        raise RuleSqlError("the rule's SQL is empty")
    parser = _Parser(sql)
    return parser.statement(sql)


def parse_expression(text: str) -> Callable[[dict[str, Any], MessageContext], Any]:
    """Parse one expression (a substitution template's ``${...}``).

    The result reads fields of a JSON object (``{}`` for non-JSON output).
    """
    parser = _Parser(text)
    expr = parser.expr()
    if parser.peek().kind != "end":
        raise RuleSqlError(f"unexpected {parser.peek().text!r} in ${{{text}}}")
    return expr
