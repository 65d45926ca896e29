"""Static checks of the synthesised templates: cfn-lint and cdk-nag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk import Stack
from aws_cdk import aws_s3 as s3
from infra_helpers import Synth, new_app, synth

from iotnotify_infra import StageConfig, add_stage
from iotnotify_infra.app_builder import add_nag_checks


@pytest.fixture(scope="module")
def dev() -> Synth:
    return synth("dev")


def test_cfn_lint_reports_no_errors(dev: Synth) -> None:
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(
        Path(dev.template_path), config=ManualArgs(regions=["us-east-1", "eu-west-1"])
    )
    errors = [m for m in matches if m.rule.id.startswith("E")]
    assert not errors, "\n".join(str(m) for m in errors)


def test_cdk_nag_acknowledgements_all_carry_a_reason(dev: Synth) -> None:
    acknowledged = []
    for logical_id, resource in dev.raw["Resources"].items():
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            acknowledged.append((logical_id, rule["id"], rule.get("reason", "")))
    assert acknowledged, "cdk-nag ran and recorded its acknowledgements"
    for logical_id, rule_id, reason in acknowledged:
        assert rule_id.startswith("AwsSolutions-"), (logical_id, rule_id)
        assert len(reason) >= 20, (logical_id, rule_id, reason)


def test_cdk_nag_left_no_unacknowledged_finding(dev: Synth) -> None:
    # synth() succeeded, which cdk-nag's validation plugin only allows when
    # every finding is acknowledged; the report says the same.
    report = json.loads((dev.outdir / "validation-report.json").read_text())
    violations = [
        v
        for plugin in report.get("pluginReports", [])
        for v in plugin.get("violations", [])
        if v.get("severity", "error") == "error"
    ]
    assert violations == []


def test_cdk_nag_would_fail_an_unexplained_finding() -> None:
    """The check has teeth: an unacknowledged finding fails synthesis."""
    app = new_app()
    stack = add_stage(app, StageConfig(stage="nagcheck"))
    s3.Bucket(Stack.of(stack), "UnloggedBucket")  # no SSL enforcement, no logs
    add_nag_checks(app)
    with pytest.raises(RuntimeError, match=r"[Vv]alidation"):
        app.synth()
