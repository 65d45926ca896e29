"""Synthesis and template-reading helpers shared by the infra tests.

Each stage is synthesised once per test session (cached here): a synthesis
runs the whole jsii kernel, cdk-nag and asset staging, and takes seconds.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

# Node 20 is past end of life for jsii; the banner is noise in test output.
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App
from aws_cdk.assertions import Template

from iotnotify_infra import StageConfig, add_stage
from iotnotify_infra.app_builder import add_nag_checks

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"


@dataclass(frozen=True)
class Synth:
    config: StageConfig
    outdir: Path
    template_path: Path
    template: Template
    raw: dict[str, Any]

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.raw["Resources"].items() if r["Type"] == kind}

    def props(self, logical_id: str) -> dict[str, Any]:
        return self.raw["Resources"][logical_id].get("Properties", {})

    def function_id(self, suffix: str) -> str:
        name = self.config.name(suffix)
        for k, r in self.resources("AWS::Lambda::Function").items():
            if r["Properties"].get("FunctionName") == name:
                return k
        raise KeyError(name)

    def function(self, suffix: str) -> dict[str, Any]:
        return self.props(self.function_id(suffix))

    def role_of(self, suffix: str) -> str:
        role = self.function(suffix)["Role"]
        return role["Fn::GetAtt"][0]

    def statements_of_role(self, role_id: str) -> list[dict[str, Any]]:
        """Every IAM statement that applies to a role: inline, attached
        customer-managed policies and AWS::IAM::Policy resources."""
        ref = {"Ref": role_id}
        found: list[dict[str, Any]] = []
        for policy in self.props(role_id).get("Policies", []):
            found.extend(policy["PolicyDocument"]["Statement"])
        for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for r in self.resources(kind).values():
                if ref in r["Properties"].get("Roles", []):
                    found.extend(r["Properties"]["PolicyDocument"]["Statement"])
        return [normalise(s) for s in found]


def render(value: Any) -> Any:
    """CloudFormation intrinsics as readable strings: ``${Logical.Attr}``."""
    if isinstance(value, list):
        return [render(v) for v in value]
    if isinstance(value, dict):
        if "Fn::Join" in value:
            sep, parts = value["Fn::Join"]
            return sep.join(str(render(p)) for p in parts)
        if "Ref" in value:
            return "${" + value["Ref"] + "}"
        if "Fn::GetAtt" in value:
            return "${" + ".".join(value["Fn::GetAtt"]) + "}"
        if "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
            return value["Fn::Sub"]
        return {k: render(v) for k, v in value.items()}
    return value


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def normalise(statement: dict[str, Any]) -> dict[str, Any]:
    """Actions and resources as sorted lists of plain strings."""
    out = dict(statement)
    out["Action"] = sorted(as_list(statement.get("Action", [])))
    if "Resource" in statement:
        out["Resource"] = sorted(str(r) for r in as_list(render(statement["Resource"])))
    return out


def allowed(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    """action -> the resources it is allowed on."""
    grants: dict[str, set[str]] = {}
    for s in statements:
        if s.get("Effect") != "Allow":
            continue
        for action in s["Action"]:
            grants.setdefault(action, set()).update(s.get("Resource", []))
    return grants


def new_app(**context: str) -> App:
    """An app with cdk.json's context (its feature flags shape the template),
    as the CDK CLI would build it, plus ``context``."""
    outdir = tempfile.mkdtemp(prefix="iotnotify-cdk-")
    defaults = json.loads((INFRA / "cdk.json").read_text())["context"]
    return App(outdir=outdir, context={**defaults, **context})


@cache
def synth(stage: str = "dev", ssm_stage: str = "") -> Synth:
    context = {"stageName": stage}
    if ssm_stage:
        context["ssmStageName"] = ssm_stage
    app = new_app(**context)
    config = StageConfig.from_context(app.node.try_get_context)
    stack = add_stage(app, config)
    add_nag_checks(app)
    assembly = app.synth()  # fails on any unacknowledged cdk-nag finding
    artifact = assembly.get_stack_by_name(stack.stack_name)
    path = Path(assembly.directory) / artifact.template_file
    raw = json.loads(path.read_text())
    return Synth(config, Path(assembly.directory), path, Template.from_json(raw), raw)
