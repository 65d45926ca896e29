"""An IoT topic rule that invokes a Lambda function, with its permission and dead letters.

One construct for every rule of :func:`iotnotify.topic_rules.topic_rules`
(the definitions ``iotnotify local`` runs in the emulator too):

* the rule's SQL, version and description are the package's definition;
* its error action sends what the rules engine could not deliver (for
  example, the invoke failed) to an SQS dead-letter queue, through a role
  only ``iot.amazonaws.com`` may assume;
* ``lambda:InvokeFunction`` is granted to ``iot.amazonaws.com`` for this
  rule's ARN and this account only (source ARN and account), so no other
  rule, in any account, can invoke the function;
* AWS IoT invokes Lambda asynchronously, so a failure *inside* the function
  is Lambda's to retry; its on-failure destination is the same queue, so
  everything the rule lost ends up in one place.
"""

from __future__ import annotations

from typing import Final

from aws_cdk import Aws, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from iotnotify.topic_rules import TopicRuleDefinition
from iotnotify_infra.nag import suppress

__all__ = ["ASYNC_RETRY_ATTEMPTS", "LambdaTopicRule"]

# Lambda's own retries of an asynchronous invocation that failed (0..2).
ASYNC_RETRY_ATTEMPTS: Final = 2


class LambdaTopicRule(Construct):
    """``definition`` as a ``CfnTopicRule`` with a Lambda action and an SQS error action."""

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
        definition: TopicRuleDefinition,
        function: lambda_.Function,
        queue_name: str,
        what: str,
    ) -> None:
        """``queue_name`` names the DLQ; ``what`` says in descriptions what is lost there."""
        super().__init__(scope, construct_id)
        self.definition = definition
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetters",
            queue_name=queue_name,
            retention_period=Duration.days(14),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        self.error_role = iam.Role(
            self,
            "ErrorActionRole",
            description=f"{definition.name}: rule error action -> DLQ",
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
            rule_name=definition.name,
            topic_rule_payload=iot.CfnTopicRule.TopicRulePayloadProperty(
                sql=definition.sql,
                aws_iot_sql_version=definition.sql_version,
                description=definition.description,
                rule_disabled=False,
                actions=[
                    iot.CfnTopicRule.ActionProperty(
                        lambda_=iot.CfnTopicRule.LambdaActionProperty(
                            function_arn=function.function_arn
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
            function_name=function.function_arn,
            principal="iot.amazonaws.com",
            source_arn=self.rule.attr_arn,
            source_account=Aws.ACCOUNT_ID,
        )
        function.configure_async_invoke(
            retry_attempts=ASYNC_RETRY_ATTEMPTS,
            on_failure=destinations.SqsDestination(self.dead_letter_queue),
        )
        suppress(
            self.dead_letter_queue,
            {
                "AwsSolutions-SQS3": (
                    f"This queue is itself the dead-letter queue of {what}: the rule's error "
                    "action and the function's failed asynchronous invocations."
                )
            },
        )
