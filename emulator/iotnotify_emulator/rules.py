"""Topic rules: the emulator's rules engine (AWS IoT "Rules for AWS IoT").

Every message the broker accepts (MQTT or iot-data HTTP publish, and the
lifecycle events it emits) is offered to :class:`RulesEngine`; each enabled
rule whose ``FROM`` filter matches evaluates its SQL (:mod:`rules_sql`) and,
when ``WHERE`` holds, runs its actions. Supported actions:

* :class:`LambdaAction`: the function's handler called in-process with the
  rule's output as the event, as AWS invokes it asynchronously;
* :class:`RepublishAction`: publish the output to a topic, which may use
  substitution templates such as ``${topic(3)}``;
* :class:`SqsAction`: send the output to a queue (used as an error action);
* :class:`CallableAction`: any callable (tests, custom wiring).

Failures never reach the broker: the hook runs SQL in a ``try`` and actions
on a worker pool, so a failing rule cannot block or break delivery. A rule
whose SQL cannot be evaluated on a message, or one of whose actions raises,
is counted (:class:`RuleStats`) and its *error action* receives AWS's error
message ``{"ruleName", "topic", "cloudwatchTraceId", "clientId",
"base64OriginalPayload", "failures": [{"failedAction", "failedResource",
"errorMessage"}]}`` (developer guide, "Error handling (error action)").

One difference from AWS, on purpose: AWS invokes Lambda asynchronously, so
an exception *inside* the function is handled by Lambda's own async retry
and on-failure destination, not by the rule's error action. Locally the
function runs in-process, so its exception is reported to the rule's error
action; infra/ gives the moderator an on-failure destination equal to the
rule's DLQ, so both paths end in the same queue.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Protocol

from iotnotify.contract import Topic
from iotnotify.errors import InvalidTopic
from iotnotify_emulator.rules_sql import (
    UNDEFINED,
    MessageContext,
    RuleEvaluationError,
    RuleSqlError,
    SqlStatement,
    parse_expression,
    parse_sql,
)

__all__ = [
    "CallableAction",
    "LambdaAction",
    "RepublishAction",
    "Rule",
    "RuleAction",
    "RuleHook",
    "RuleSqlError",
    "RuleStats",
    "RulesEngine",
    "SqsAction",
]

log = logging.getLogger("iotnotify_emulator.rules")

# The broker calls this for every accepted message: (topic, payload, client id
# or None for HTTP publishes and broker events, principal id or None).
RuleHook = Callable[[str, bytes, str | None, str | None], None]
# Publishes on the broker's loop: (topic, payload, qos).
Publish = Callable[[str, bytes, int], None]

_RULE_NAME_RE: Final = re.compile(r"[a-zA-Z0-9_]{1,128}")  # CreateTopicRule's ruleName
_TEMPLATE_RE: Final = re.compile(r"\$\{([^}]*)\}")


def _encode(output: dict[str, Any] | bytes) -> bytes:
    if isinstance(output, bytes):
        return output
    return json.dumps(output, separators=(",", ":"), default=str).encode()


class RuleAction(Protocol):
    """One action: ``kind`` and ``resource`` name it in error messages."""

    @property
    def kind(self) -> str: ...

    @property
    def resource(self) -> str: ...

    def run(self, output: dict[str, Any] | bytes, ctx: MessageContext) -> None:
        """Perform the action; raise to report a failure."""
        ...


@dataclass(frozen=True, slots=True)
class LambdaAction:
    """Invoke a Lambda handler ``handler(event, context)`` with the rule's output."""

    function_name: str
    handler: Callable[[Any, Any], Any]
    kind: str = "LambdaAction"

    @property
    def resource(self) -> str:
        return self.function_name

    def run(self, output: dict[str, Any] | bytes, ctx: MessageContext) -> None:
        if isinstance(output, bytes):
            raise RuleEvaluationError("the Lambda action needs a JSON payload")
        self.handler(output, None)


@dataclass(slots=True)
class RepublishAction:
    """Publish the output to ``topic`` (``${...}`` templates allowed) with ``qos``."""

    topic: str
    qos: int = 0
    publish: Publish | None = None  # set by RulesEngine.attach
    kind: str = "RepublishAction"
    _parts: list[Any] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.qos not in (0, 1):
            raise RuleSqlError("republish qos must be 0 or 1")
        parts: list[Any] = []
        position = 0
        for match in _TEMPLATE_RE.finditer(self.topic):
            parts.append(self.topic[position : match.start()])
            parts.append(parse_expression(match.group(1)))
            position = match.end()
        parts.append(self.topic[position:])
        self._parts = parts

    @property
    def resource(self) -> str:
        return self.topic

    def target(self, output: dict[str, Any] | bytes, ctx: MessageContext) -> str:
        document = output if isinstance(output, dict) else {}
        text = ""
        for part in self._parts:
            if isinstance(part, str):
                text += part
                continue
            value = part(document, ctx)
            text += "" if value is UNDEFINED or value is None else str(value)
        try:
            topic = Topic(text)
        except InvalidTopic as exc:
            raise RuleEvaluationError(f"republish topic {text!r}: {exc}") from exc
        return topic.value

    def run(self, output: dict[str, Any] | bytes, ctx: MessageContext) -> None:
        if self.publish is None:
            raise RuntimeError("republish action is not attached to a broker")
        self.publish(self.target(output, ctx), _encode(output), self.qos)


@dataclass(frozen=True, slots=True)
class SqsAction:
    """Send the output to an SQS queue (``sqs`` is a boto3 SQS client)."""

    queue_url: str
    sqs: Any
    kind: str = "SqsAction"

    @property
    def resource(self) -> str:
        return self.queue_url

    def run(self, output: dict[str, Any] | bytes, ctx: MessageContext) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=_encode(output).decode())


@dataclass(frozen=True, slots=True)
class CallableAction:
    """Call ``func(output, ctx)``."""

    name: str
    func: Callable[[dict[str, Any] | bytes, MessageContext], None]
    kind: str = "CallableAction"

    @property
    def resource(self) -> str:
        return self.name

    def run(self, output: dict[str, Any] | bytes, ctx: MessageContext) -> None:
        self.func(output, ctx)


@dataclass(frozen=True, slots=True)
class Rule:
    """A topic rule: ``name`` as CreateTopicRule allows, parsed ``sql``, actions."""

    name: str
    statement: SqlStatement
    actions: tuple[RuleAction, ...]
    error_action: RuleAction | None = None
    enabled: bool = True

    @classmethod
    def create(
        cls,
        name: str,
        sql: str,
        actions: Sequence[RuleAction],
        *,
        error_action: RuleAction | None = None,
        enabled: bool = True,
    ) -> Rule:
        """Parse ``sql``; :class:`RuleSqlError` for an invalid name or statement."""
        if not _RULE_NAME_RE.fullmatch(name):
            raise RuleSqlError(f"invalid rule name {name!r}: expected 1-128 of [a-zA-Z0-9_]")
        if not actions:
            raise RuleSqlError(f"rule {name!r} has no action")
        return cls(name, parse_sql(sql), tuple(actions), error_action, enabled)


@dataclass(slots=True)
class RuleStats:
    """Counters of the rules engine (served under ``rules`` in ``/_emulator/stats``)."""

    matched: int = 0
    actions_succeeded: int = 0
    failures: int = 0
    sql_failures: int = 0
    action_failures: int = 0
    failures_by_rule: dict[str, int] = field(default_factory=dict)
    error_actions_succeeded: int = 0
    error_actions_failed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RulesEngine:
    """Runs topic rules for a broker; call :meth:`attach` once the broker's loop runs."""

    def __init__(self, rules: Sequence[Rule] = (), *, max_workers: int = 4) -> None:
        self.stats = RuleStats()
        self._rules: dict[str, Rule] = {}
        # What the hook iterates for every message: rebuilt on add/remove, not per message.
        self._current: tuple[Rule, ...] = ()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rule")
        self._pending: set[Future[None]] = set()
        self._publish: Publish | None = None
        for rule in rules:
            self.add(rule)

    # --- configuration ----------------------------------------------------------

    def add(self, rule: Rule) -> None:
        with self._lock:
            if rule.name in self._rules:
                raise RuleSqlError(f"rule {rule.name!r} already exists")
            self._rules[rule.name] = rule
            self._current = tuple(self._rules.values())
        self._wire(rule)

    def remove(self, name: str) -> None:
        with self._lock:
            self._rules.pop(name, None)
            self._current = tuple(self._rules.values())

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._current

    def attach(self, publish: Publish) -> None:
        """Give republish actions a way to publish (thread-safe, onto the broker's loop)."""
        self._publish = publish
        for rule in self.rules:
            self._wire(rule)

    def _wire(self, rule: Rule) -> None:
        for action in (*rule.actions, rule.error_action):
            if isinstance(action, RepublishAction) and self._publish is not None:
                action.publish = self._publish

    # --- the hook ---------------------------------------------------------------

    def __call__(
        self, topic: str, payload: bytes, client_id: str | None, principal: str | None
    ) -> None:
        """Offer one accepted message to every rule (runs on the broker's loop).

        Evaluates SQL inline (microseconds) and queues actions; never raises.
        """
        try:
            ctx: MessageContext | None = None  # built only for a message some rule selects
            for rule in self._current:
                if not rule.enabled or not rule.statement.matches(topic):
                    continue
                if ctx is None:
                    ctx = MessageContext(topic=topic, client_id=client_id, principal=principal)
                self._evaluate(rule, payload, ctx)
        except Exception:  # the broker must keep serving whatever a rule does
            log.exception("rules engine failed on a message to %s", topic)

    def ingest(
        self,
        name: str,
        topic: str,
        payload: bytes,
        client_id: str | None,
        principal: str | None,
    ) -> bool:
        """Basic Ingest: run the rule ``name`` on a message published to
        ``$aws/rules/{name}/{topic}``, ``topic`` being what follows the prefix.

        AWS IoT developer guide, "Reducing messaging costs with Basic Ingest":
        the prefix is not visible to ``topic(n)``, and the ``FROM`` clause is
        optional for such rules, so the named rule runs whatever its ``FROM``
        filter says; ``WHERE`` still applies. False when no enabled rule has
        that name (AWS logs ``RuleNotFound`` and drops the message). Never raises.
        """
        with self._lock:
            rule = self._rules.get(name)
        if rule is None or not rule.enabled:
            return False
        try:
            ctx = MessageContext(topic=topic, client_id=client_id, principal=principal)
            self._evaluate(rule, payload, ctx)
        except Exception:  # the broker must keep serving whatever a rule does
            log.exception("rules engine failed on a Basic Ingest message for %s", name)
        return True

    def _evaluate(self, rule: Rule, payload: bytes, ctx: MessageContext) -> None:
        try:
            output = rule.statement.evaluate(payload, ctx)
        except Exception as exc:
            self._failed(rule, payload, ctx, "SQL", rule.statement.sql, exc, sql=True)
            return
        if output is None:
            return
        self.stats.matched += 1
        for action in rule.actions:
            self._submit(self._run_action, rule, action, output, payload, ctx)

    def _run_action(
        self,
        rule: Rule,
        action: RuleAction,
        output: dict[str, Any] | bytes,
        payload: bytes,
        ctx: MessageContext,
    ) -> None:
        try:
            action.run(output, ctx)
        except Exception as exc:
            self._failed(rule, payload, ctx, action.kind, action.resource, exc, sql=False)
            return
        with self._lock:
            self.stats.actions_succeeded += 1

    def _failed(
        self,
        rule: Rule,
        payload: bytes,
        ctx: MessageContext,
        failed_action: str,
        resource: str,
        exc: BaseException,
        *,
        sql: bool,
    ) -> None:
        with self._lock:
            stats = self.stats
            stats.failures += 1
            if sql:
                stats.sql_failures += 1
            else:
                stats.action_failures += 1
            stats.failures_by_rule[rule.name] = stats.failures_by_rule.get(rule.name, 0) + 1
        log.warning("rule %s failed (%s %s): %s", rule.name, failed_action, resource, exc)
        if rule.error_action is None:
            return
        message = {
            "ruleName": rule.name,
            "topic": ctx.topic,
            "cloudwatchTraceId": str(uuid.uuid4()),
            "clientId": ctx.client_id or "n/a",
            "base64OriginalPayload": base64.b64encode(payload).decode("ascii"),
            "failures": [
                {
                    "failedAction": failed_action,
                    "failedResource": resource,
                    "errorMessage": f"{type(exc).__name__}: {exc}",
                }
            ],
        }
        self._submit(self._run_error_action, rule.error_action, message, ctx)

    def _run_error_action(
        self, action: RuleAction, message: dict[str, Any], ctx: MessageContext
    ) -> None:
        try:
            action.run(message, ctx)
        except Exception:
            log.exception("error action %s %s failed", action.kind, action.resource)
            with self._lock:
                self.stats.error_actions_failed += 1
            return
        with self._lock:
            self.stats.error_actions_succeeded += 1

    def _submit(self, func: Callable[..., None], *args: Any) -> None:
        try:
            future = self._executor.submit(func, *args)
        except RuntimeError:  # shut down: the engine is stopping, drop the work
            return
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    # --- lifecycle ----------------------------------------------------------------

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until queued actions (and the error actions they cause) ran."""
        for _ in range(3):  # an action's failure queues its error action
            with self._lock:
                pending = set(self._pending)
            if not pending:
                return True
            _finished, not_done = wait(pending, timeout=timeout)
            if not_done:
                return False
        with self._lock:
            return not self._pending

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
