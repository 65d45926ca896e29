"""The CDK CLI: the real ``npx cdk synth`` from infra/, and the
``iotnotify deploy/destroy/synth`` commands that wrap it."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from infra_helpers import INFRA

from iotnotify import cdk_commands

NODE_CDK = INFRA / "node_modules" / ".bin" / "cdk"


@pytest.mark.slow
def test_npx_cdk_synth_from_infra_produces_a_template(tmp_path: Path) -> None:
    assert NODE_CDK.exists(), "make setup installs the CDK CLI into infra/node_modules"
    out = tmp_path / "cdk.out"
    env = {
        **os.environ,
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
    }
    # Exactly what infra/README.md tells a user to run (cdk.json names the app).
    result = subprocess.run(
        [
            "npx",
            "--no-install",
            "cdk",
            "synth",
            "--context",
            "stageName=clitest",
            "--output",
            str(out),
            "--quiet",
            "--no-notices",
        ],
        cwd=INFRA,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    template = json.loads((out / "iotnotify-clitest.template.json").read_text())
    names = {
        r["Properties"].get("FunctionName")
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
    }
    assert "iotnotify-clitest-token" in names


def test_cdk_command_carries_stage_context() -> None:
    argv = cdk_commands.cdk_command(
        "deploy", stage="feat-x", ssm_stage="dev", npx="npx", python="/py", extra=["--x"]
    )
    assert argv[:4] == ["npx", "--no-install", "cdk", "deploy"]
    assert argv[argv.index("--app") + 1] == "/py app.py"
    assert "stageName=feat-x" in argv
    assert "ssmStageName=dev" in argv
    assert argv[-2:] == ["--x", "iotnotify-feat-x"]


def test_cdk_command_ssm_stage_defaults_to_stage() -> None:
    argv = cdk_commands.cdk_command("synth", stage="dev")
    assert "ssmStageName=dev" in argv


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch, aws_env: None) -> list[tuple[list[str], Path]]:
    calls: list[tuple[list[str], Path]] = []

    def fake_run(argv: list[str], *, cwd: Path, env: object = None) -> int:
        calls.append((list(argv), cwd))
        return 0

    monkeypatch.setattr(cdk_commands, "run_cdk", fake_run)
    monkeypatch.setattr(cdk_commands, "_check_tools", lambda infra: "npx")
    return calls


def test_deploy_runs_cdk_deploy_from_infra(recorded: list) -> None:
    result = CliRunner().invoke(
        cdk_commands.deploy, ["--stage", "feat-x", "--ssm-stage", "dev", "--yes"]
    )
    assert result.exit_code == 0, result.output
    ((argv, cwd),) = recorded
    assert cwd == INFRA
    assert argv[3] == "deploy"
    assert "ssmStageName=dev" in argv
    assert argv[argv.index("--require-approval") + 1] == "never"
    assert argv[argv.index("--app") + 1].endswith("app.py")
    assert sys.executable in argv[argv.index("--app") + 1]


def test_destroy_and_synth(recorded: list, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cdk_commands.destroy, ["--stage", "feat-x", "--yes"]).exit_code == 0
    out = tmp_path / "assembly"
    assert runner.invoke(cdk_commands.synth, ["--stage", "dev", "--out", str(out)]).exit_code == 0
    (destroy_argv, _), (synth_argv, _) = recorded
    assert destroy_argv[3] == "destroy"
    assert "--force" in destroy_argv
    assert destroy_argv[-1] == "iotnotify-feat-x"
    assert synth_argv[3] == "synth"
    assert synth_argv[synth_argv.index("--output") + 1] == str(out.resolve())


def test_cdk_exit_status_is_passed_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cdk_commands, "run_cdk", lambda argv, *, cwd, env=None: 3)
    monkeypatch.setattr(cdk_commands, "_check_tools", lambda infra: "npx")
    result = CliRunner().invoke(cdk_commands.synth, ["--stage", "dev"])
    assert result.exit_code == 3


def test_invalid_stage_is_refused_before_cdk_runs(recorded: list) -> None:
    result = CliRunner().invoke(cdk_commands.deploy, ["--stage", "Feat_X"])
    assert result.exit_code == 2
    assert "--stage" in result.output
    assert recorded == []


def test_missing_node_modules_gives_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "app.py").write_text("")
    (tmp_path / "cdk.json").write_text("{}")
    (tmp_path / "iotnotify_infra").mkdir()
    monkeypatch.setenv("IOTNOTIFY_INFRA_DIR", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/npx")
    result = CliRunner().invoke(cdk_commands.synth, ["--stage", "dev"])
    assert result.exit_code == 1
    assert "make setup" in result.output
    assert "node_modules" in result.output


def test_missing_npx_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    result = CliRunner().invoke(cdk_commands.destroy, ["--stage", "dev"])
    assert result.exit_code == 1
    assert "Node.js" in result.output


def test_missing_infra_dir_gives_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IOTNOTIFY_INFRA_DIR", str(tmp_path / "nowhere"))
    result = CliRunner().invoke(cdk_commands.deploy, ["--stage", "dev"])
    assert result.exit_code == 1
    assert "no CDK app" in result.output


def _wheel_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """This module as a wheel installs it: site-packages, no infra/ beside it."""
    monkeypatch.delenv("IOTNOTIFY_INFRA_DIR", raising=False)
    installed = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "iotnotify"
    monkeypatch.setattr(cdk_commands, "__file__", str(installed / "cdk_commands.py"))


def test_a_wheel_install_finds_the_cdk_app_of_the_checkout_it_runs_in(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a wheel install, run from a folder inside a checkout
    _wheel_install(monkeypatch, tmp_path)
    infra = tmp_path / "checkout" / "infra"
    (infra / "iotnotify_infra").mkdir(parents=True)
    (infra / "app.py").write_text("")
    (infra / "cdk.json").write_text("{}")
    inside = tmp_path / "checkout" / "examples" / "game"
    inside.mkdir(parents=True)
    # Then the app is found there, from the folder or from the checkout's root
    assert cdk_commands.find_infra_dir(cwd=inside) == infra
    assert cdk_commands.find_infra_dir(cwd=tmp_path / "checkout") == infra


def test_a_wheel_install_outside_a_checkout_says_where_it_looked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _wheel_install(monkeypatch, tmp_path)
    # Another project's CDK app (app.py and cdk.json, no iotnotify_infra) is not ours
    other = tmp_path / "other-project" / "infra"
    other.mkdir(parents=True)
    (other / "app.py").write_text("")
    (other / "cdk.json").write_text("{}")
    for where in (tmp_path, tmp_path / "other-project"):
        with pytest.raises(click.ClickException, match="or in an infra/ folder here or above"):
            cdk_commands.find_infra_dir(cwd=where)


def test_a_missing_infra_extra_is_named_before_the_cdk_app_is_looked_for(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given neither the [infra] packages nor a CDK app (a wheel install in /tmp)
    _wheel_install(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "aws_cdk" else real_find_spec(name, *a),
    )
    result = CliRunner().invoke(cdk_commands.synth, ["--stage", "dev"])
    assert result.exit_code == 1
    assert "pip install 'iotnotify[infra]'" in result.output


@pytest.mark.parametrize("command", ["deploy", "destroy"])
def test_deploy_and_destroy_without_aws_credentials_say_so_before_the_cdk_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: str
) -> None:
    # Without credentials the CDK synthesised for a dozen seconds and then said
    # "Unable to resolve AWS account to use. It must be either configured when
    # you define your CDK Stack, or through the environment".
    calls: list[list[str]] = []
    monkeypatch.setattr(
        cdk_commands, "run_cdk", lambda argv, *, cwd, env=None: calls.append(argv) or 0
    )
    monkeypatch.setattr(cdk_commands, "_check_tools", lambda infra: "npx")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    result = CliRunner().invoke(getattr(cdk_commands, command), ["--stage", "dev", "--yes"])
    assert result.exit_code == 1, result.output
    assert "no AWS credentials" in result.output
    assert calls == []
    # synth needs none
    synth = CliRunner().invoke(cdk_commands.synth, ["--stage", "dev"])
    assert synth.exit_code == 0, synth.output
