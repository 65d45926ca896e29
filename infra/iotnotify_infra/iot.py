"""IoT: where clients connect and what they and the publishers may do there.

* The account's ``iot:Data-ATS`` endpoint is per account and region and
  cannot be known at synth time, so a custom resource asks IoT for it during
  deployment and the functions and web config receive it as a value.
* The subscriber role is what the token-vending function assumes for each
  user. Its own policy is the *ceiling* from :mod:`iotnotify.policies`
  (connect as ``*.*``, subscribe and receive within this app and stage,
  publish only on rooms' input topics); each session is narrowed further to one user by the session
  policy the function passes to ``sts:AssumeRole``.
* The publisher policy (publish within this app and stage) is a managed
  policy so the Lambdas and, if wanted, a game server's role share one
  definition.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import custom_resources as cr
from constructs import Construct

from iotnotify.contract import TopicScheme
from iotnotify.policies import publisher_policy, subscriber_ceiling_policy
from iotnotify_infra.config import StageConfig
from iotnotify_infra.nag import suppress

__all__ = ["IotAccess", "IotEndpoint"]


def _document(policy: dict[str, Any]) -> iam.PolicyDocument:
    # Region and account are CDK tokens here; the policies module only
    # interpolates them into ARNs, and CloudFormation resolves them.
    return iam.PolicyDocument.from_json(policy)


class IotEndpoint(Construct):
    """The account's ``iot:Data-ATS`` endpoint, looked up at deploy time."""

    address: str
    lookup: cr.AwsCustomResource

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        call = cr.AwsSdkCall(
            service="Iot",
            action="describeEndpoint",
            parameters={"endpointType": "iot:Data-ATS"},
            physical_resource_id=cr.PhysicalResourceId.from_response("endpointAddress"),
        )
        self.lookup = cr.AwsCustomResource(
            self,
            "DescribeEndpoint",
            on_create=call,
            on_update=call,
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [
                    iam.PolicyStatement(
                        actions=["iot:DescribeEndpoint"],
                        # DescribeEndpoint has no resource type to scope to.
                        resources=["*"],
                    )
                ]
            ),
            # The SDK bundled in the handler has DescribeEndpoint; fetching
            # the latest from npm at deploy time would only add a failure mode.
            install_latest_aws_sdk=False,
            timeout=Duration.minutes(2),
        )
        self.address = self.lookup.get_response_field("endpointAddress")
        suppress(
            self.lookup,
            {
                "AwsSolutions-IAM5": (
                    "iot:DescribeEndpoint supports no resource-level permissions; "
                    "'*' is the only valid resource."
                )
            },
            applies_to={"AwsSolutions-IAM5": ["Resource::*"]},
        )


class IotAccess(Construct):
    """The subscriber role (ceiling policy) and the publisher managed policy."""

    subscriber_role: iam.Role
    publisher_policy: iam.ManagedPolicy
    scheme: TopicScheme

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        token_vendor: iam.IRole,
    ) -> None:
        super().__init__(scope, construct_id)
        self.scheme = TopicScheme(config.app, config.stage)
        self.subscriber_role = iam.Role(
            self,
            "SubscriberRole",
            description=f"{config.stack_name}: assumed per user by the token-vending function",
            # Only the token-vending function's role may assume it, never the
            # account as a whole.
            assumed_by=iam.ArnPrincipal(token_vendor.role_arn),
            # A Lambda assuming a role is role chaining: STS allows one hour.
            max_session_duration=Duration.hours(1),
            inline_policies={
                "SubscriberCeiling": _document(
                    subscriber_ceiling_policy(
                        self.scheme, region=Aws.REGION, account=Aws.ACCOUNT_ID
                    )
                )
            },
        )
        self.publisher_policy = iam.ManagedPolicy(
            self,
            "PublisherPolicy",
            managed_policy_name=config.names.publisher_policy,
            description=f"{config.stack_name}: publish notifications within this stage",
            document=_document(
                publisher_policy(self.scheme, region=Aws.REGION, account=Aws.ACCOUNT_ID)
            ),
        )
        wildcard_reason = (
            "The wildcard is the topic scheme itself: '*.*' is any client id of "
            "the form {userId}.{suffix}, '{app}/{stage}/*' is this stage's "
            "topics and '{app}/{stage}/chat/*/input' every room's input topic. "
            "Per-user sessions are narrowed by the session policy."
        )
        suppress(
            self.subscriber_role,
            {"AwsSolutions-IAM5": wildcard_reason},
            applies_to={
                "AwsSolutions-IAM5": [
                    "Resource::arn:aws:iot:<AWS::Region>:<AWS::AccountId>:client/*.*",
                    f"Resource::arn:aws:iot:<AWS::Region>:<AWS::AccountId>:topicfilter/{self.scheme.prefix}/*",
                    f"Resource::arn:aws:iot:<AWS::Region>:<AWS::AccountId>:topic/{self.scheme.prefix}/*",
                    f"Resource::arn:aws:iot:<AWS::Region>:<AWS::AccountId>:topic/{self.scheme.prefix}/chat/*/input",
                ]
            },
        )
        suppress(
            self.publisher_policy,
            {"AwsSolutions-IAM5": wildcard_reason},
            applies_to={
                "AwsSolutions-IAM5": [
                    f"Resource::arn:aws:iot:<AWS::Region>:<AWS::AccountId>:topic/{self.scheme.prefix}/*"
                ]
            },
        )
