"""IoT topic rules of a deployment: one definition for the CDK and the offline stack.

``infra/`` turns each :class:`TopicRuleDefinition` into a ``CfnTopicRule``
(SQL version 2016-03-23, a Lambda action, an SQS error action) and
``iotnotify local`` into a rule of the emulator's rules engine with the same
SQL and the handler run in-process, so the rule tested offline is the rule
deployed (``tests/infra/test_local_matches_infra.py`` compares them).

Rule names follow CreateTopicRule: ``[a-zA-Z0-9_]+``, at most 128.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from iotnotify.contract import TopicScheme
from iotnotify.presence import PRESENCE_EVENTS_FILTER

__all__ = [
    "AWS_IOT_SQL_VERSION",
    "TopicRuleDefinition",
    "chat_moderation_rule",
    "presence_rule",
    "topic_rules",
]

# SQL version of every rule (AWS IoT SQL reference, "SQL versions"): the
# current one, which the emulator's SQL subset implements.
AWS_IOT_SQL_VERSION: Final = "2016-03-23"


@dataclass(frozen=True, slots=True)
class TopicRuleDefinition:
    """A rule: ``sql`` selects what ``function`` (a function spec attribute) receives."""

    name: str
    sql: str
    function: str
    description: str
    sql_version: str = AWS_IOT_SQL_VERSION

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-zA-Z0-9_]{1,128}", self.name):
            raise ValueError(f"invalid topic rule name {self.name!r}")


def _rule_name(scheme: TopicScheme, what: str) -> str:
    # App and stage names may hold '-', which rule names may not.
    return f"{scheme.app}_{scheme.stage}_{what}".replace("-", "_")


def chat_moderation_rule(scheme: TopicScheme) -> TopicRuleDefinition:
    """Every room's input to the moderator (DESIGN.md, "Moderated input").

    The rule hands over the payload as base64 (``encode(*, 'base64')``), the
    room (from the topic), the publishing client's id (the only trustworthy
    sender: the session policy pins client ids to the user) and the time the
    message arrived. Functions only, no payload field: such a SELECT works on
    any payload, JSON or not (AWS IoT developer guide, "Working with binary
    payloads"; the Lambda action needs the base64 form), so a malformed
    message reaches the moderator, which refuses it, instead of failing the
    rule into the error action's queue; and no field a client sends can
    shadow ``clientId``, ``room`` or ``receivedAt``.
    """
    # Not SQL injection: the filter is built from validated names (no quote
    # can occur in it) and nothing here comes from a request.
    sql = (
        f"SELECT encode(*, 'base64') AS payload, topic({scheme.chat_room_level}) AS room, "  # noqa: S608
        f"clientid() AS clientId, timestamp() AS receivedAt FROM '{scheme.chat_input_filter()}'"
    )
    return TopicRuleDefinition(
        name=_rule_name(scheme, "chat_moderation"),
        sql=sql,
        function="moderator",
        description=f"{scheme.prefix}: chat input to the moderator",
    )


def presence_rule(scheme: TopicScheme) -> TopicRuleDefinition:
    """Lifecycle events to the presence function (DESIGN.md "Presence").

    ``$aws/events/presence/+/+`` matches ``connected/{clientId}`` and
    ``disconnected/{clientId}`` (AWS IoT developer guide, "Lifecycle events":
    rules may select from these reserved topics), and also
    ``connect_failed/{clientId}``, the "connect attempt failure event" of a
    refused CONNECT; the ``WHERE`` keeps those out, as presence has nothing
    to apply from them and each would be a Lambda invocation. Only the
    fields presence applies are selected; a client id that is not
    ``{userId}.{suffix}`` is ignored by the function
    (:class:`iotnotify.presence.PresenceEvent`).
    """
    sql = (
        "SELECT clientId, timestamp, eventType, sessionIdentifier "  # noqa: S608 - constant
        f"FROM '{PRESENCE_EVENTS_FILTER}' "
        "WHERE eventType = 'connected' OR eventType = 'disconnected'"
    )
    return TopicRuleDefinition(
        name=_rule_name(scheme, "presence"),
        sql=sql,
        function="presence",
        description=f"{scheme.prefix}: lifecycle events to the presence table",
    )


def topic_rules(scheme: TopicScheme) -> tuple[TopicRuleDefinition, ...]:
    """Every rule of a deployment."""
    return (chat_moderation_rule(scheme), presence_rule(scheme))
