"""A second ``iotnotify local`` must not take the state file of one that is running."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotnotify.state_file import LocalState
from iotnotify_local.stack import run_local


@pytest.fixture
def listening() -> Iterator[int]:
    """A port that accepts TCP connections, standing in for a running stack's API."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def _state(api_port: int) -> LocalState:
    base = f"http://127.0.0.1:{api_port}"
    return LocalState(
        region="us-east-1",
        app="iotnotify",
        stage="local",
        apiUrl=base,
        webUrl=base + "/",
        iotWsUrl="ws://127.0.0.1:1/mqtt",
        iotWssUrl="wss://127.0.0.1:1/mqtt",
        iotDataUrl="http://127.0.0.1:1",
        caFile="",
        awsEndpointUrl="http://127.0.0.1:1",
        userPoolId="us-east-1_pool",
        userPoolClientId="client",
        users=[],
        publisher={},
        pid=os.getpid(),  # a live process
    )


def test_a_running_stacks_state_file_is_refused_not_taken_over(
    tmp_path: Path, listening: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # `iotnotify local --port 0 --data-dir d2` in the directory of a running stack
    # overwrote its .iotnotify/local.json and deleted it on Ctrl-C: `send` then said
    # "no state file ... start the local stack" while that stack was still up.
    path = tmp_path / "local.json"
    _state(listening).write(path)
    before = path.read_text()
    status = run_local(
        host="127.0.0.1",
        port=0,
        state_file=path,
        app="iotnotify",
        stage="local",
        data_dir=tmp_path / "other-data",
    )
    assert status == 2
    assert path.read_text() == before
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "--state-file" in out
    assert str(os.getpid()) in out
    assert not (tmp_path / "other-data").exists()  # nothing was started


@pytest.mark.parametrize("host", ["::1", "ip6-localhost.invalid"])
def test_a_host_without_an_ipv4_address_is_one_clear_error(
    tmp_path: Path, host: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every listener of the stack is IPv4 (the emulator's create_server, moto's
    # werkzeug, the probe of free ports): --host ::1 ended in tracebacks from
    # the port probe or the emulator's process.
    status = run_local(
        host=host,
        port=0,
        state_file=tmp_path / "local.json",
        app="iotnotify",
        stage="local",
        data_dir=tmp_path / "data",
    )
    assert status == 2
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "IPv4" in out
    assert "Traceback" not in out
    assert not (tmp_path / "data").exists()  # nothing was started


@pytest.mark.parametrize("where", ["under-a-file", "read-only-dir"])
def test_a_state_file_that_cannot_be_written_is_refused_before_anything_starts(
    tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `iotnotify local --state-file /proc/nope/x.json` started moto, the
    # emulator and the API, then ended in a FileNotFoundError traceback.
    if where == "under-a-file":
        (tmp_path / "a-file").write_text("")
        path = tmp_path / "a-file" / "local.json"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        path = locked / "local.json"
        if os.access(locked, os.W_OK):  # root ignores the mode bits
            locked.chmod(0o700)
            (locked / "local.json").mkdir()  # a directory where the file goes
    status = run_local(
        host="127.0.0.1",
        port=0,
        state_file=path,
        app="iotnotify",
        stage="local",
        data_dir=tmp_path / "data",
    )
    assert status == 2
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "state file" in out
    assert "Traceback" not in out
    assert not (tmp_path / "data").exists()  # nothing was started


@pytest.mark.parametrize(
    "content",
    ["my notes\n", '{"name": "my-app", "version": "1.0.0"}\n', "[1, 2]\n"],
    ids=["text", "another-json-object", "json-array"],
)
def test_a_file_that_is_no_state_file_is_refused_not_overwritten_and_deleted(
    tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `iotnotify local --state-file notes.txt` (or package.json) overwrote the
    # file with the stack's JSON and deleted it on Ctrl-C.
    path = tmp_path / "notes.txt"
    path.write_text(content)
    status = run_local(
        host="127.0.0.1",
        port=0,
        state_file=path,
        app="iotnotify",
        stage="local",
        data_dir=tmp_path / "data",
    )
    assert status == 2
    assert path.read_text() == content
    captured = capsys.readouterr()
    out = " ".join((captured.out + captured.err).split())
    assert f"{path} exists and is not a state file" in out
    assert "Traceback" not in out
    assert not (tmp_path / "data").exists()  # nothing was started


def test_a_stale_or_older_state_file_is_still_replaced(tmp_path: Path) -> None:
    # A state file left by a crashed stack, or by a version with other fields,
    # is ours: the check must not refuse it (nothing listens at port 1).
    from iotnotify_local.stack import _foreign_state_file

    path = tmp_path / "local.json"
    _state(1).write(path)
    assert _foreign_state_file(path) is None
    path.write_text('{"apiUrl": "http://127.0.0.1:1", "pid": 1}')  # fields missing
    assert _foreign_state_file(path) is None
    assert _foreign_state_file(tmp_path / "absent.json") is None
