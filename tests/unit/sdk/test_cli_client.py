"""``iotnotify listen`` / ``tray`` argument handling (no stack needed)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from iotnotify.cli_client import _line, listen, tray
from iotnotify.contract import Notification


def test_readable_line() -> None:
    note = Notification.create(title="Your turn", body="Game 7", type="turn")
    line = _line(note)
    assert line.startswith(note.ts)
    assert line.endswith("[turn] Your turn: Game 7")


def test_api_url_needs_a_client_id_and_user() -> None:
    result = CliRunner().invoke(listen, ["--api-url", "https://api.example"])
    assert result.exit_code == 2
    assert "--client-id" in result.output


def test_missing_state_file_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        listen, ["--state-file", str(tmp_path / "none.json"), "--user", "alice"]
    )
    assert result.exit_code == 1
    assert "iotnotify local" in result.output


def test_state_file_mode_needs_a_user(tmp_path: Path) -> None:
    result = CliRunner().invoke(listen, ["--state-file", str(tmp_path / "none.json")])
    assert result.exit_code == 2
    assert "--user" in result.output


def test_tray_without_settings_explains_the_first_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(tray, ["--settings", str(tmp_path / "tray.json")])
    assert result.exit_code == 1
    assert "--api-url" in result.output


def test_since_garbage_is_a_usage_error(tmp_path: Path) -> None:
    # Issue 12 item 9: it used to loop forever on a 400 from the inbox.
    result = CliRunner().invoke(
        listen,
        ["--state-file", str(tmp_path / "none.json"), "--user", "alice", "--since", "garbage"],
    )
    assert result.exit_code == 2
    assert "--since" in result.output
    assert "notification id" in result.output
