"""The iotnotify stack: one per stage. It composes the capability constructs
and grants each function exactly what its handler does, nothing more."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from aws_cdk import Aws, CfnOutput, Duration, Stack, Tags
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as events
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from iotnotify.contract import DEFAULT_KEEPALIVE_SECONDS, TopicScheme
from iotnotify.policies import game_server_policy
from iotnotify.topic_rules import presence_rule
from iotnotify_handlers.settings import ENV
from iotnotify_infra.api import Api
from iotnotify_infra.chat import ChatModeration
from iotnotify_infra.config import StageConfig
from iotnotify_infra.functions import WORKER_TIMEOUT_SECONDS, Functions
from iotnotify_infra.identity import Identity
from iotnotify_infra.iot import IotAccess, IotEndpoint
from iotnotify_infra.lambda_asset import DONE_MARKER, stage_lambda_code
from iotnotify_infra.nag import suppress
from iotnotify_infra.rules import LambdaTopicRule
from iotnotify_infra.storage import Storage
from iotnotify_infra.tasks import TaskQueue
from iotnotify_infra.web import WEB_DIST, WebHosting, WebSite

__all__ = ["ROOMS_TABLE_ENV", "IotNotifyStack"]

# settings.ENV gains "rooms_table" on the handlers' side; until then the
# stack still knows the variable's name.
ROOMS_TABLE_ENV: Final = ENV.get("rooms_table", "IOTNOTIFY_ROOMS_TABLE")

# Custom-resource handlers CDK adds at stack level; their code and roles are
# CDK's, so their findings are explained here once.
_CDK_SINGLETONS: Final = {
    "AWS679f53fac002430cb0da5b7982bd2287": "the IoT endpoint lookup (AwsCustomResource)",
    "Custom::CDKBucketDeployment": "the web upload (BucketDeployment)",
    "Custom::S3AutoDeleteObjects": "emptying the web bucket on stack deletion",
}


class IotNotifyStack(Stack):
    """Everything one stage of iotnotify needs on AWS."""

    config: StageConfig
    identity: Identity
    storage: Storage
    tasks: TaskQueue
    endpoint: IotEndpoint
    functions: Functions
    iot: IotAccess
    site: WebSite
    api: Api
    chat: ChatModeration
    presence: LambdaTopicRule
    web: WebHosting
    environment_variables: dict[str, str]
    game_server_policy: iam.ManagedPolicy

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        lambda_code: lambda_.Code | None = None,
        web_dist: Path = WEB_DIST,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"iotnotify stage {config.stage} (parameters: {config.ssm_path('')})",
            **kwargs,
        )
        self.config = config
        for key, value in {"app": config.app, "stage": config.stage, **config.tags}.items():
            Tags.of(self).add(key, value)

        self.identity = Identity(self, "Identity", config=config)
        self.storage = Storage(self, "Storage", config=config)
        self.tasks = TaskQueue(
            self, "Tasks", config=config, worker_timeout=Duration.seconds(WORKER_TIMEOUT_SECONDS)
        )
        self.endpoint = IotEndpoint(self, "IotEndpointLookup")
        notify_api_key = ssm.StringParameter.from_secure_string_parameter_attributes(
            self, "NotifyApiKey", parameter_name=config.notify_api_key_parameter
        )

        self.environment_variables = self._environment(config)
        self.functions = Functions(
            self,
            "Functions",
            config=config,
            code=lambda_code
            or lambda_.Code.from_asset(str(stage_lambda_code()), exclude=[DONE_MARKER]),
            environment=self.environment_variables,
        )
        fn = self.functions
        self.iot = IotAccess(self, "Iot", config=config, token_vendor=_role(fn.token))
        self.environment_variables[ENV["subscriber_role_arn"]] = self.iot.subscriber_role.role_arn
        for function in fn.all:
            function.add_environment(ENV["subscriber_role_arn"], self.iot.subscriber_role.role_arn)

        # A game server's role: the publisher policy (iot:Publish) plus this,
        # what the Python publisher calls besides publishing (inbox writes,
        # game registration, presence reads, endpoint discovery).
        self.game_server_policy = iam.ManagedPolicy(
            self,
            "GameServerPolicy",
            managed_policy_name=config.names.game_server_policy,
            description=(
                f"{config.stack_name}: what the Python publisher needs besides iot:Publish "
                "(attach with the publisher policy)"
            ),
            document=iam.PolicyDocument.from_json(
                game_server_policy(
                    region=Aws.REGION,
                    account=Aws.ACCOUNT_ID,
                    inbox_table=config.names.inbox_table,
                    games_table=config.names.games_table,
                    presence_table=config.names.presence_table,
                )
            ),
        )
        suppress(
            self.game_server_policy,
            {
                "AwsSolutions-IAM5": (
                    "iot:DescribeEndpoint supports no resource-level permissions: '*' is "
                    "the only valid resource."
                )
            },
            applies_to={"AwsSolutions-IAM5": ["Resource::*"]},
        )

        # --- grants: one block per function, mirroring what its handler does.
        # GET /token: assume the subscriber role with a per-user session policy.
        self.iot.subscriber_role.grant_assume_role(_role(fn.token))
        # POST /notify: publish, keep a copy in the inbox, read the API key;
        # a game target must be a registered game (one read).
        self.iot.publisher_policy.attach_to_role(_role(fn.notify))
        self.storage.inbox.grant(fn.notify, "dynamodb:PutItem", "dynamodb:BatchWriteItem")
        self.storage.games.grant(fn.notify, "dynamodb:GetItem")
        fn.notify.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ssm:GetParameter"], resources=[notify_api_key.parameter_arn]
            )
        )
        # The parameter uses the AWS managed key aws/ssm, whose key policy
        # already lets account principals decrypt through SSM: no kms grant.
        # GET /notifications: read the caller's inbox, after leaving the
        # catch-up hint skip-offline sends rely on (iotnotify.presence).
        self.storage.inbox.grant(fn.notifications, "dynamodb:Query")
        self.storage.presence.grant(fn.notifications, "dynamodb:PutItem")
        # POST /task: enqueue only.
        self.tasks.queue.grant(fn.task, "sqs:SendMessage")
        # Task worker: consume (granted by the event source), publish, inbox.
        fn.worker.add_event_source(
            events.SqsEventSource(
                self.tasks.queue,
                batch_size=10,
                report_batch_item_failures=True,
            )
        )
        self.iot.publisher_policy.attach_to_role(_role(fn.worker))
        self.storage.inbox.grant(fn.worker, "dynamodb:PutItem", "dynamodb:BatchWriteItem")
        # /chats: list rooms (scan), create one with its owner's quota counter
        # (one transaction: conditional put + conditional update), read one,
        # add members (conditional update); read a room's history.
        self.storage.rooms.grant(
            fn.chats,
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:ConditionCheckItem",
            "dynamodb:Scan",
        )
        self.storage.chat_history.grant(fn.chats, "dynamodb:Query")
        # Adding a member checks the id is a user of the pool (ListUsers by sub).
        self.identity.user_pool.grant(fn.chats, "cognito-idp:ListUsers")
        # GET /token?rooms=&games=: check each channel exists and the caller may use it;
        # mark a member as having joined a room (a conditional update), which
        # is what lets the room's other members see their presence.
        self.storage.rooms.grant(fn.token, "dynamodb:GetItem", "dynamodb:UpdateItem")
        self.storage.games.grant(fn.token, "dynamodb:GetItem")
        # POST /games: register a game (one conditional-free update), read the API key.
        self.storage.games.grant(fn.games, "dynamodb:UpdateItem")
        fn.games.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ssm:GetParameter"], resources=[notify_api_key.parameter_arn]
            )
        )
        # GET /presence: the caller's rooms and games (filtered scans), then
        # each visible user's session records.
        self.storage.rooms.grant(fn.presence, "dynamodb:Scan")
        self.storage.games.grant(fn.presence, "dynamodb:Scan")
        self.storage.presence.grant(fn.presence, "dynamodb:Query")
        # Presence events (invoked by the lifecycle rule): conditional writes.
        self.presence = LambdaTopicRule(
            self,
            "Presence",
            definition=presence_rule(TopicScheme(config.app, config.stage)),
            function=fn.presence_events,
            queue_name=config.names.presence_dlq,
            what="the presence rule",
        )
        self.storage.presence.grant(fn.presence_events, "dynamodb:UpdateItem")
        # Chat moderator (invoked by the topic rule): claim a line's cid (a
        # conditional put, read back on a copy; released by an update), count
        # the sender's rate and append to history (conditionally, reading back
        # what a retried input stored first), read the denylist, publish.
        self.chat = ChatModeration(self, "Chat", config=config, moderator=fn.moderator)
        self.storage.chat_history.grant(
            fn.moderator, "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem"
        )
        self.iot.publisher_policy.attach_to_role(_role(fn.moderator))
        # Like the API key, the denylist is set by hand and shared by ephemeral
        # stages (its path carries the SSM stage); a missing one masks nothing.
        denylist = ssm.StringListParameter.from_string_list_parameter_name(
            self, "ChatDenylist", config.names.chat_denylist_parameter
        )
        fn.moderator.add_to_role_policy(
            iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[denylist.parameter_arn])
        )

        self.site = WebSite(self, "Site", config=config)
        # Function responses must carry the CORS header themselves.
        for function in fn.all:
            function.add_environment(ENV["cors_origin"], self.site.origin)
        self.api = Api(
            self,
            "Api",
            config=config,
            user_pool=self.identity.user_pool,
            functions=fn,
            web_origins=[self.site.origin, *config.extra_web_origins],
        )
        runtime_config: Mapping[str, Any] = {
            "apiUrl": self.api.url,
            "region": Aws.REGION,
            "iotEndpoint": self.endpoint.address,
            "userPoolId": self.identity.user_pool.user_pool_id,
            "userPoolClientId": self.identity.client.user_pool_client_id,
            "stage": config.stage,
        }
        self.web = WebHosting(
            self,
            "Web",
            config=config,
            site=self.site,
            runtime_config=runtime_config,
            dist=web_dist,
        )
        self._outputs(notify_api_key)
        self._explain_cdk_singletons()

    def _environment(self, config: StageConfig) -> dict[str, str]:
        """Names and ARNs only; the API key stays in SSM. AWS_REGION is set
        by the Lambda runtime itself (and may not be set by a stack)."""
        values = {
            "app": config.app,
            "stage": config.stage,
            "ssm_stage": config.ssm_stage,
            "inbox_table": self.storage.inbox.table_name,
            "task_queue_url": self.tasks.queue.queue_url,
            "iot_endpoint": self.endpoint.address,
            "iot_ws_scheme": "wss",
            "token_duration": "3600",
            "keepalive": str(DEFAULT_KEEPALIVE_SECONDS),
            "inbox_ttl_days": "7",
            "api_key_ttl": "300",
            "history_table": self.storage.chat_history.table_name,
            "games_table": self.storage.games.table_name,
            "presence_table": self.storage.presence.table_name,
            "max_rooms_per_user": "10",
            "chat_rate_messages": "5",
            "chat_rate_window": "5",
            "chat_history_ttl_days": "30",
            "denylist_ttl": "60",
        }
        env = {ENV[key]: value for key, value in values.items() if key in ENV}
        env[ROOMS_TABLE_ENV] = self.storage.rooms.table_name
        return env

    def _outputs(self, notify_api_key: ssm.IStringParameter) -> None:
        outputs = {
            "ApiUrl": self.api.url,
            "Region": Aws.REGION,
            "UserPoolId": self.identity.user_pool.user_pool_id,
            "UserPoolClientId": self.identity.client.user_pool_client_id,
            "IotEndpoint": self.endpoint.address,
            "WebUrl": self.site.origin,
            "SubscriberRoleArn": self.iot.subscriber_role.role_arn,
            "PublisherPolicyArn": self.iot.publisher_policy.managed_policy_arn,
            "GameServerPolicyArn": self.game_server_policy.managed_policy_arn,
            "NotifyCallerPolicyArn": self.api.notify_caller_policy.managed_policy_arn,
            "TaskQueueUrl": self.tasks.queue.queue_url,
            "TaskDeadLetterQueueUrl": self.tasks.dead_letter_queue.queue_url,
            "NotifyApiKeyParameter": notify_api_key.parameter_name,
        }
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)

    def _explain_cdk_singletons(self) -> None:
        basic_execution = (
            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
        )
        site_bucket = self.resolve(
            self.get_logical_id(self.site.bucket.node.default_child)  # type: ignore[arg-type]
        )
        deployment_wildcards = [
            "Action::s3:GetObject*",
            "Action::s3:GetBucket*",
            "Action::s3:List*",
            "Action::s3:DeleteObject*",
            "Action::s3:Abort*",
            "Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*",
            f"Resource::<{site_bucket}.Arn>/*",
            # CloudFront invalidations have no resource-level permissions.
            "Resource::*",
        ]
        for child in self.node.children:
            what = next(
                (w for p, w in _CDK_SINGLETONS.items() if child.node.id.startswith(p)), None
            )
            if what is None:
                continue
            suppress(
                child,
                {
                    "AwsSolutions-IAM4": (
                        f"CDK's handler for {what} uses AWSLambdaBasicExecutionRole "
                        "(CloudWatch Logs only)."
                    ),
                    "AwsSolutions-IAM5": (
                        f"CDK's handler for {what} is granted object-level wildcards on "
                        "the asset and site buckets it copies between (CDK's own grant)."
                    ),
                    "AwsSolutions-L1": (
                        f"CDK pins the runtime of its handler for {what}; it runs only "
                        "during deployment."
                    ),
                },
                applies_to={
                    "AwsSolutions-IAM4": [basic_execution],
                    "AwsSolutions-IAM5": deployment_wildcards,
                },
            )


def _role(function: lambda_.Function) -> iam.IRole:
    role = function.role
    assert role is not None  # every function is built with its own role
    return role
