"""Stages: names carry the stage, parameters follow ssmStageName, and two
stages live side by side in one account without a clash."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import App
from infra_helpers import Synth, new_app, render, synth

from iotnotify_infra import StageConfig, StageConfigError, add_stage
from iotnotify_infra.app_builder import add_nag_checks

# Properties that are physical names in their account and region.
NAME_PROPERTIES = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Cognito::UserPool": "UserPoolName",
    "AWS::ApiGateway::RestApi": "Name",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::IAM::Role": "RoleName",
}


def physical_names(template: dict[str, Any]) -> set[str]:
    names = set()
    for resource in template["Resources"].values():
        key = NAME_PROPERTIES.get(resource["Type"])
        if key and key in resource.get("Properties", {}):
            names.add(json.dumps(render(resource["Properties"][key])))
    return names


def ssm_paths(template: dict[str, Any]) -> set[str]:
    text = json.dumps(render(template))
    found = set()
    for part in text.split("parameter/")[1:]:
        found.add("/" + part.split('"')[0])
    for output in template["Outputs"].values():
        value = render(output["Value"])
        if isinstance(value, str) and value.startswith("/iotnotify/"):
            found.add(value)
    return found


@pytest.fixture(scope="module")
def side_by_side() -> tuple[dict[str, Any], dict[str, Any]]:
    """Two stages in one app: one synthesis, both templates."""
    app = new_app()
    dev = add_stage(app, StageConfig(stage="dev"))
    feat = add_stage(app, StageConfig(stage="feat-x", ssm_stage="dev"))
    add_nag_checks(app)
    assembly = app.synth()
    return (
        assembly.get_stack_by_name(dev.stack_name).template,
        assembly.get_stack_by_name(feat.stack_name).template,
    )


def test_every_physical_name_carries_the_stage(side_by_side: tuple[dict, dict]) -> None:
    dev, feat = side_by_side
    assert physical_names(dev), "the stack names its resources"
    for name in physical_names(dev):
        assert "iotnotify-dev" in name, name
    for name in physical_names(feat):
        assert "iotnotify-feat-x" in name, name


def test_two_stages_do_not_clash(side_by_side: tuple[dict, dict]) -> None:
    dev, feat = side_by_side
    assert physical_names(dev).isdisjoint(physical_names(feat))


def test_ephemeral_stage_reads_parameters_of_its_ssm_stage(side_by_side: tuple[dict, dict]) -> None:
    _, feat = side_by_side
    paths = ssm_paths(feat)
    assert paths == {"/iotnotify/dev/notify-api-key", "/iotnotify/dev/chat-denylist"}
    # Its own resources still carry feat-x, and its functions know both.
    env = next(
        r["Properties"]["Environment"]["Variables"]
        for r in feat["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
        and r["Properties"].get("FunctionName") == "iotnotify-feat-x-notify"
    )
    assert env["IOTNOTIFY_STAGE"] == "feat-x"
    assert env["IOTNOTIFY_SSM_STAGE"] == "dev"


def test_ephemeral_stage_topics_are_its_own(side_by_side: tuple[dict, dict]) -> None:
    _, feat = side_by_side
    text = json.dumps(render(feat))
    assert "topic/iotnotify/feat-x/*" in text
    assert "topicfilter/iotnotify/feat-x/*" in text
    assert "iotnotify/dev/*" not in text


def test_ssm_stage_defaults_to_the_stage() -> None:
    feat: Synth = synth("feat-y")
    assert ssm_paths(feat.raw) == {
        "/iotnotify/feat-y/notify-api-key",
        "/iotnotify/feat-y/chat-denylist",
    }


def test_context_defaults() -> None:
    config = StageConfig.from_context(App().node.try_get_context)
    assert (config.stage, config.ssm_stage, config.retain_data) == ("dev", "dev", False)
    prod = StageConfig.from_context({"stageName": "prod"}.get)
    assert prod.retain_data is True
    assert prod.stack_name == "iotnotify-prod"
    kept = StageConfig.from_context({"stageName": "pr-7", "retainData": "true"}.get)
    assert kept.retain_data is True


@pytest.mark.parametrize("bad", ["", "Dev", "feat_x", "feat/x", "a" * 31, "1abc", "x*"])
def test_invalid_stage_names_are_refused(bad: str) -> None:
    with pytest.raises(StageConfigError, match="stageName"):
        StageConfig.from_context({"stageName": bad}.get if bad else {"stageName": "-"}.get)


def test_invalid_extra_origin_is_refused() -> None:
    with pytest.raises(StageConfigError, match="web origin"):
        StageConfig(stage="dev", extra_web_origins=("localhost:5173/path",))
