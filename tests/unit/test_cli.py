"""The command line: clear errors, usage checks, the cost table."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from iotnotify.cli import cli


def test_send_without_a_running_stack_says_what_to_do(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["send", "--user", "alice", "--title", "hi", "--state-file", str(tmp_path / "none.json")],
    )
    assert result.exit_code == 1
    assert "iotnotify local" in result.output
    assert "Traceback" not in result.output


def test_send_needs_exactly_one_kind_of_target(tmp_path: Path) -> None:
    runner = CliRunner()
    neither = runner.invoke(cli, ["send", "--title", "hi"])
    both = runner.invoke(cli, ["send", "--title", "hi", "--user", "a", "--broadcast"])
    assert neither.exit_code == both.exit_code == 2
    assert "--user" in neither.output


def test_send_refuses_data_that_is_not_a_json_object() -> None:
    result = CliRunner().invoke(cli, ["send", "--user", "a", "--title", "t", "--data", "[1]"])
    assert result.exit_code == 2
    assert "JSON object" in result.output


def test_cost_prints_a_monthly_table() -> None:
    result = CliRunner().invoke(cli, ["cost", "--users", "1000", "--per-day", "10"])
    assert result.exit_code == 0
    assert "IoT connectivity" in result.output
    assert "total" in result.output


def test_every_documented_command_is_registered() -> None:
    assert {"local", "send", "listen", "tray", "cost", "deploy", "destroy", "synth"} <= set(
        cli.commands
    )
