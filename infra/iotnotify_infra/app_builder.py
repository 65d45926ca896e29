"""Building the CDK app from context: shared by ``app.py`` and the tests, so
the tests synthesise exactly what ``cdk deploy`` deploys."""

from __future__ import annotations

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from iotnotify_infra.config import StageConfig
from iotnotify_infra.stack import IotNotifyStack

__all__ = ["add_nag_checks", "add_stage", "build_app"]


def add_stage(app: App, config: StageConfig, *, env: Environment | None = None) -> IotNotifyStack:
    """Add one stage's stack (named ``{app}-{stage}``) to ``app``."""
    return IotNotifyStack(app, config.stack_name, config=config, env=env)


def build_app(app: App) -> IotNotifyStack:
    """Add the stage named by ``-c stageName`` and the cdk-nag checks."""
    config = StageConfig.from_context(app.node.try_get_context)
    # Deploy to the account and region of the caller's credentials (as the
    # CLI resolves them); env-agnostic when synthesising without any.
    stack = add_stage(app, config)
    add_nag_checks(app)
    return stack


def add_nag_checks(app: App) -> None:
    """cdk-nag's AwsSolutions pack: an unacknowledged finding fails synthesis."""
    # The reasons also go into the template metadata, where auditors look.
    Validations.of(app).add_plugins(
        AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True)
    )
