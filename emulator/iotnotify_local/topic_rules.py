"""The deployment's topic rules, as the emulator runs them offline.

Each :class:`iotnotify.topic_rules.TopicRuleDefinition` (the very objects
``infra/`` turns into ``CfnTopicRule``) becomes an emulator rule with the
same name and SQL, a Lambda action that calls the function's handler
in-process, and an SQS error action on the same dead-letter queue as on AWS
(moto's). ``tests/infra/test_local_matches_infra.py`` checks they agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from iotnotify.contract import TopicScheme
from iotnotify.topic_rules import topic_rules
from iotnotify_emulator.rules import LambdaAction, Rule, SqsAction

__all__ = ["LambdaHandler", "emulator_rules"]

LambdaHandler = Callable[[Any, Any], Any]


def emulator_rules(
    scheme: TopicScheme,
    *,
    handlers: Mapping[str, LambdaHandler],
    sqs: Any,
    dead_letter_queue_urls: Mapping[str, str],
) -> list[Rule]:
    """The rules of ``scheme``'s deployment; ``handlers`` maps a function
    attribute (``"moderator"``, ``"presence"``) to its handler and
    ``dead_letter_queue_urls`` to its rule's DLQ; ``sqs`` is a boto3 client."""
    return [
        Rule.create(
            definition.name,
            definition.sql,
            [LambdaAction(definition.function, handlers[definition.function])],
            error_action=SqsAction(dead_letter_queue_urls[definition.function], sqs),
        )
        for definition in topic_rules(scheme)
    ]
