"""The iotnotify CDK app: one construct per capability, one stack per stage."""

from __future__ import annotations

from iotnotify_infra.app_builder import add_stage, build_app
from iotnotify_infra.config import StageConfig, StageConfigError
from iotnotify_infra.stack import IotNotifyStack

__all__ = ["IotNotifyStack", "StageConfig", "StageConfigError", "add_stage", "build_app"]
