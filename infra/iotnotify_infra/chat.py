"""Chat moderation: the topic rule, its Lambda permission and its dead letters.

Clients publish to ``{app}/{stage}/chat/{room}/input``; the topic rule from
:func:`iotnotify.topic_rules.chat_moderation_rule` (the same definition
``iotnotify local`` runs in the emulator) invokes the moderator function,
which alone publishes to the room topic.

* The rule's error action sends what the rules engine could not deliver
  (for example, the invoke failed) to an SQS dead-letter queue, through a
  role only ``iot.amazonaws.com`` may assume.
* ``lambda:InvokeFunction`` is granted to ``iot.amazonaws.com`` for this
  rule's ARN and this account only (source ARN and account), so no other
  rule, in any account, can invoke the moderator.
* AWS IoT invokes Lambda asynchronously, so a failure *inside* the function
  is Lambda's to retry; its on-failure destination is the same queue, so
  every lost chat message ends up in one place.

The construct is the generic :class:`iotnotify_infra.rules.LambdaTopicRule`
(the presence rule uses it too) with the chat rule's definition.
"""

from __future__ import annotations

from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from iotnotify.contract import TopicScheme
from iotnotify.topic_rules import chat_moderation_rule
from iotnotify_infra.config import StageConfig
from iotnotify_infra.rules import ASYNC_RETRY_ATTEMPTS, LambdaTopicRule

__all__ = ["ASYNC_RETRY_ATTEMPTS", "ChatModeration"]


class ChatModeration(LambdaTopicRule):
    """The chat input rule with a Lambda action and an SQS error action."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        moderator: lambda_.Function,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            definition=chat_moderation_rule(TopicScheme(config.app, config.stage)),
            function=moderator,
            queue_name=config.names.chat_dlq,
            what="the chat moderation rule",
        )
