"""``iotnotify local --data-dir DIR`` refuses a ``lock`` or ``ca`` of the user's own in DIR."""

from __future__ import annotations

from pathlib import Path

import pytest

from iotnotify_local.stack import run_local


@pytest.mark.parametrize("what", ["lock", "ca"])
def test_a_users_own_lock_or_ca_is_one_error_line_and_nothing_starts(
    tmp_path: Path, what: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "my-project"
    data_dir.mkdir()
    if what == "lock":
        mine = data_dir / "lock"
    else:
        (data_dir / "ca").mkdir()
        mine = data_dir / "ca" / "ca.pem"
    mine.write_text("mine, not the stack's\n")
    status = run_local(
        host="127.0.0.1",
        port=0,
        state_file=tmp_path / "local.json",
        app="iotnotify",
        stage="local",
        data_dir=data_dir,
    )
    assert status == 2
    assert mine.read_text() == "mine, not the stack's\n"
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("iotnotify: error: ")
    assert str(data_dir / what) in lines[0]
    assert not (tmp_path / "local.json").exists()  # nothing was started
