"""The settings one deployment (one stage) is built from.

Everything that differs between two stages of the same account lives in
:class:`StageConfig`, read from CDK context (``-c stageName=feat-x``), so a
stack never reads the environment or guesses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from iotnotify.naming import ResourceNames

__all__ = [
    "DEFAULT_APP",
    "DEFAULT_POWERTOOLS_LAYER_VERSION",
    "StageConfig",
    "StageConfigError",
]

DEFAULT_APP: Final = "iotnotify"
# Powertools for AWS Lambda (Python) v3 publishes one layer per Python version
# and architecture, with the same version number in every commercial region.
# Override with `-c powertoolsLayerVersion=N` when a newer one is wanted.
DEFAULT_POWERTOOLS_LAYER_VERSION: Final = 27

# Stage names end up in function names (64 chars), API Gateway stage names,
# CloudFormation stack names and MQTT topics, so they take the strictest
# common alphabet: lower case (S3 and stack names), digits and '-', and a
# length that leaves room for the longest suffix ("-notifications").
_STAGE_RE: Final = re.compile(r"[a-z][a-z0-9-]{0,29}")


COGNITO_FEATURE_PLANS: Final = ("lite", "essentials", "plus")


class StageConfigError(ValueError):
    """CDK context holds a value the stack cannot be built from."""


def _truthy(value: object) -> bool:
    # `-c retainData=false` arrives as the string "false", not a bool.
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True, kw_only=True)
class StageConfig:
    """One stage of iotnotify.

    ``ssm_stage`` lets an ephemeral stage (``feat-x``) read the parameters of
    a long-lived one (``dev``): parameters hold secrets set by hand once, and
    re-creating them for every pull-request stage is exactly what the
    ephemeral-environment practice avoids.
    """

    stage: str = "dev"
    ssm_stage: str = ""
    app: str = DEFAULT_APP
    # Keep tables and the web bucket when the stack is deleted. Off for
    # throw-away stages so `iotnotify destroy` leaves nothing behind.
    retain_data: bool = False
    # Browser origins allowed by CORS besides the stack's own CloudFront site
    # (a local dev server, for example).
    extra_web_origins: tuple[str, ...] = ()
    powertools_layer_version: int = DEFAULT_POWERTOOLS_LAYER_VERSION
    throttling_rate_limit: int = 50
    throttling_burst_limit: int = 100
    log_retention_days: int = 30
    # The user pool's feature plan, set explicitly: CloudFormation's default
    # for a new pool is Essentials ($0.015 per MAU); Lite ($0.0055, first
    # 10,000 free) has everything this product uses (e-mail sign-in, SRP and
    # password auth, refresh tokens). `iotnotify cost --cognito-plan` prices it.
    cognito_feature_plan: str = "lite"
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what, value in (("stageName", self.stage), ("app name", self.app)):
            if not _STAGE_RE.fullmatch(value):
                raise StageConfigError(
                    f"invalid {what} {value!r}: expected 1 to 30 characters from "
                    "a-z 0-9 - starting with a letter"
                )
        if not self.ssm_stage:
            object.__setattr__(self, "ssm_stage", self.stage)
        elif not _STAGE_RE.fullmatch(self.ssm_stage):
            raise StageConfigError(
                f"invalid ssmStageName {self.ssm_stage!r}: expected 1 to 30 characters "
                "from a-z 0-9 - starting with a letter"
            )
        if self.cognito_feature_plan not in COGNITO_FEATURE_PLANS:
            raise StageConfigError(
                f"invalid cognitoFeaturePlan {self.cognito_feature_plan!r}: "
                f"expected one of {', '.join(COGNITO_FEATURE_PLANS)}"
            )
        for origin in self.extra_web_origins:
            if not re.fullmatch(r"https?://[^/\s,]+", origin):
                raise StageConfigError(
                    f"invalid web origin {origin!r}: expected scheme://host[:port]"
                )

    @property
    def stack_name(self) -> str:
        return f"{self.app}-{self.stage}"

    def name(self, suffix: str) -> str:
        """A physical resource name that carries app and stage: ``iotnotify-dev-inbox``."""
        return f"{self.app}-{self.stage}-{suffix}"

    def ssm_path(self, name: str) -> str:
        """An SSM parameter path: ``/{service}/{ssmStage}/{name}``."""
        return f"/{self.app}/{self.ssm_stage}/{name}"

    @property
    def names(self) -> ResourceNames:
        """The names ``iotnotify local`` provisions too: one definition for both."""
        return ResourceNames(self.app, self.stage, self.ssm_stage)

    @property
    def notify_api_key_parameter(self) -> str:
        return self.names.notify_api_key_parameter

    @classmethod
    def from_context(cls, get: Any) -> StageConfig:
        """Build from CDK context; ``get`` is ``node.try_get_context``."""
        stage = str(get("stageName") or "dev")
        origins = get("webOrigins") or ()
        if isinstance(origins, str):
            origins = tuple(o.strip() for o in origins.split(",") if o.strip())
        retain = get("retainData")
        layer = get("powertoolsLayerVersion")
        return cls(
            stage=stage,
            ssm_stage=str(get("ssmStageName") or stage),
            app=str(get("appName") or DEFAULT_APP),
            # Production-like stages keep their data unless told otherwise.
            retain_data=_truthy(retain) if retain is not None else stage == "prod",
            extra_web_origins=tuple(origins),
            powertools_layer_version=(
                int(layer) if layer is not None else DEFAULT_POWERTOOLS_LAYER_VERSION
            ),
            cognito_feature_plan=str(get("cognitoFeaturePlan") or "lite").lower(),
        )
