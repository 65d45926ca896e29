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
"""

from __future__ import annotations

from aws_cdk import Aws, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from iotnotify.contract import TopicScheme
from iotnotify.topic_rules import TopicRuleDefinition, chat_moderation_rule
from iotnotify_infra.config import StageConfig
from iotnotify_infra.nag import suppress

__all__ = ["ASYNC_RETRY_ATTEMPTS", "ChatModeration"]

# Lambda's own retries of an asynchronous invocation that failed (0..2).
ASYNC_RETRY_ATTEMPTS = 2


class ChatModeration(Construct):
    """The chat input rule with a Lambda action and an SQS error action."""

    definition: TopicRuleDefinition
    rule: iot.CfnTopicRule
    dead_letter_queue: sqs.Queue
    error_role: iam.Role
    permission: lambda_.CfnPermission

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        moderator: lambda_.Function,
    ) -> None:
        super().__init__(scope, construct_id)
        self.definition = chat_moderation_rule(TopicScheme(config.app, config.stage))
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetters",
            queue_name=config.names.chat_dlq,
            retention_period=Duration.days(14),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        self.error_role = iam.Role(
            self,
            "ErrorActionRole",
            description=f"{config.stack_name}: chat rule error action -> DLQ",
            assumed_by=iam.ServicePrincipal("iot.amazonaws.com"),
        )
        self.error_role.add_to_policy(
            iam.PolicyStatement(
                actions=["sqs:SendMessage"], resources=[self.dead_letter_queue.queue_arn]
            )
        )
        self.rule = iot.CfnTopicRule(
            self,
            "Rule",
            rule_name=self.definition.name,
            topic_rule_payload=iot.CfnTopicRule.TopicRulePayloadProperty(
                sql=self.definition.sql,
                aws_iot_sql_version=self.definition.sql_version,
                description=self.definition.description,
                rule_disabled=False,
                actions=[
                    iot.CfnTopicRule.ActionProperty(
                        lambda_=iot.CfnTopicRule.LambdaActionProperty(
                            function_arn=moderator.function_arn
                        )
                    )
                ],
                error_action=iot.CfnTopicRule.ActionProperty(
                    sqs=iot.CfnTopicRule.SqsActionProperty(
                        queue_url=self.dead_letter_queue.queue_url,
                        role_arn=self.error_role.role_arn,
                        use_base64=False,
                    )
                ),
            ),
        )
        self.permission = lambda_.CfnPermission(
            self,
            "IotInvoke",
            action="lambda:InvokeFunction",
            function_name=moderator.function_arn,
            principal="iot.amazonaws.com",
            source_arn=self.rule.attr_arn,
            source_account=Aws.ACCOUNT_ID,
        )
        moderator.configure_async_invoke(
            retry_attempts=ASYNC_RETRY_ATTEMPTS,
            on_failure=destinations.SqsDestination(self.dead_letter_queue),
        )
        suppress(
            self.dead_letter_queue,
            {
                "AwsSolutions-SQS3": (
                    "This queue is itself the dead-letter queue of the chat rule's error "
                    "action and of the moderator's failed asynchronous invocations."
                )
            },
        )
