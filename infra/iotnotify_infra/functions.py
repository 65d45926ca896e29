"""Functions: the Lambda functions, one per handler module.

All share one code asset, runtime (Python 3.12 on arm64: cheaper per ms
than x86), the Powertools layer, X-Ray tracing, an explicit log group with a
retention, and an environment of names and ARNs only. Each has its own role
that starts with nothing but writing to its own log group (and X-Ray); the
stack grants the rest, so a test can read every permission off the template.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from iotnotify_infra.config import StageConfig
from iotnotify_infra.nag import suppress

__all__ = [
    "FUNCTION_SPECS",
    "WORKER_TIMEOUT_SECONDS",
    "FunctionSpec",
    "Functions",
    "powertools_layer_arn",
    "retention",
]

POWERTOOLS_ACCOUNT: Final = "017000801446"
# The task queue's visibility timeout is derived from this.
WORKER_TIMEOUT_SECONDS: Final = 30


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    attribute: str
    suffix: str
    handler: str
    description: str
    timeout_seconds: int = 10
    memory_mb: int = 256


FUNCTION_SPECS: Final = (
    FunctionSpec("token", "token", "iotnotify_handlers.api_token.handler", "GET /token"),
    FunctionSpec("notify", "notify", "iotnotify_handlers.api_notify.handler", "POST /notify"),
    FunctionSpec(
        "notifications",
        "notifications",
        "iotnotify_handlers.api_notifications.handler",
        "GET /notifications",
    ),
    FunctionSpec("task", "task", "iotnotify_handlers.api_task.handler", "POST /task"),
    FunctionSpec(
        "worker",
        "task-worker",
        "iotnotify_handlers.task_worker.handler",
        "SQS task worker",
        timeout_seconds=WORKER_TIMEOUT_SECONDS,
    ),
    FunctionSpec("chats", "chats", "iotnotify_handlers.api_chats.handler", "/chats routes"),
    FunctionSpec(
        "moderator",
        "chat-moderator",
        "iotnotify_handlers.chat_moderator.handler",
        "chat topic rule: moderate and republish",
    ),
    FunctionSpec("games", "games", "iotnotify_handlers.api_games.handler", "POST /games"),
    FunctionSpec(
        "presence", "presence", "iotnotify_handlers.api_presence.handler", "GET /presence"
    ),
    FunctionSpec(
        "presence_events",
        "presence-events",
        "iotnotify_handlers.presence_events.handler",
        "presence topic rule: lifecycle events to the presence table",
    ),
)


def powertools_layer_arn(version: int) -> str:
    """Powertools' public layer for python3.12/arm64 in the stack's region."""
    return (
        f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:{POWERTOOLS_ACCOUNT}:layer:"
        f"AWSLambdaPowertoolsPythonV3-python312-arm64:{version}"
    )


class Functions(Construct):
    """The Lambda functions; attributes are named after :data:`FUNCTION_SPECS`."""

    token: lambda_.Function
    notify: lambda_.Function
    notifications: lambda_.Function
    task: lambda_.Function
    worker: lambda_.Function
    chats: lambda_.Function
    moderator: lambda_.Function
    games: lambda_.Function
    presence: lambda_.Function
    presence_events: lambda_.Function
    all: tuple[lambda_.Function, ...]
    log_groups: dict[str, logs.LogGroup]

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        code: lambda_.Code,
        environment: Mapping[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        layer = lambda_.LayerVersion.from_layer_version_arn(
            self, "Powertools", powertools_layer_arn(config.powertools_layer_version)
        )
        removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        built: list[lambda_.Function] = []
        self.log_groups = {}
        for spec in FUNCTION_SPECS:
            name = config.name(spec.suffix)
            log_group = logs.LogGroup(
                self,
                f"{spec.attribute.title()}Logs",
                log_group_name=f"/aws/lambda/{name}",
                retention=retention(config.log_retention_days),
                removal_policy=removal,
            )
            role = iam.Role(
                self,
                f"{spec.attribute.title()}Role",
                description=f"{name}: {spec.description}",
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            )
            # Instead of AWSLambdaBasicExecutionRole (logs:* on every log
            # group): write to this function's own group only.
            log_group.grant_write(role)
            function = lambda_.Function(
                self,
                spec.attribute.title(),
                function_name=name,
                description=f"{config.stack_name} {spec.description}",
                runtime=lambda_.Runtime.PYTHON_3_12,
                architecture=lambda_.Architecture.ARM_64,
                handler=spec.handler,
                code=code,
                role=role,
                layers=[layer],
                timeout=Duration.seconds(spec.timeout_seconds),
                memory_size=spec.memory_mb,
                tracing=lambda_.Tracing.ACTIVE,
                log_group=log_group,
                environment={
                    **environment,
                    "POWERTOOLS_SERVICE_NAME": config.app,
                    "POWERTOOLS_METRICS_NAMESPACE": config.app,
                    "POWERTOOLS_LOG_LEVEL": "INFO",
                    # The token response carries STS credentials; a traced
                    # response would copy them into X-Ray.
                    "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
                },
            )
            suppress(
                role,
                {
                    "AwsSolutions-IAM5": (
                        "X-Ray's PutTraceSegments/PutTelemetryRecords support no "
                        "resource-level permissions: '*' is the only valid resource."
                    )
                },
                applies_to={"AwsSolutions-IAM5": ["Resource::*"]},
            )
            suppress(
                function,
                {
                    "AwsSolutions-L1": (
                        "Pinned to python3.12 on purpose: the handlers, the Powertools "
                        "layer (python312-arm64) and the tests target it."
                    )
                },
            )
            setattr(self, spec.attribute, function)
            self.log_groups[spec.attribute] = log_group
            built.append(function)
        self.all = tuple(built)


def retention(days: int) -> logs.RetentionDays:
    """The CloudWatch retention at least ``days`` long (it offers fixed steps)."""
    steps = {
        1: logs.RetentionDays.ONE_DAY,
        3: logs.RetentionDays.THREE_DAYS,
        7: logs.RetentionDays.ONE_WEEK,
        14: logs.RetentionDays.TWO_WEEKS,
        30: logs.RetentionDays.ONE_MONTH,
        90: logs.RetentionDays.THREE_MONTHS,
        180: logs.RetentionDays.SIX_MONTHS,
        365: logs.RetentionDays.ONE_YEAR,
    }
    return next((steps[d] for d in sorted(steps) if d >= days), logs.RetentionDays.ONE_YEAR)
