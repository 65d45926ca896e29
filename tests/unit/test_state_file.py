"""Reading the state file says whether the stack it describes is still running."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotnotify.state_file import LocalState, StackNotRunning, StateFileError


def write_state(path: Path, *, pid: int, api_port: int) -> Path:
    path.write_text(
        json.dumps(
            {
                "region": "us-east-1",
                "app": "iotnotify",
                "stage": "local",
                "apiUrl": f"http://127.0.0.1:{api_port}",
                "webUrl": "",
                "iotWsUrl": "",
                "iotWssUrl": "",
                "iotDataUrl": "",
                "caFile": "",
                "awsEndpointUrl": "",
                "userPoolId": "pool",
                "userPoolClientId": "client",
                "users": [],
                "publisher": {},
                "pid": pid,
            }
        )
    )
    return path


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server


def test_a_listening_stack_of_a_live_process_is_read(
    tmp_path: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    state = LocalState.read(write_state(tmp_path / "s.json", pid=os.getpid(), api_port=port))
    assert state.apiUrl == f"http://127.0.0.1:{port}"


def test_a_state_file_whose_process_exited_is_stale(
    tmp_path: Path, listener: socket.socket
) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    path = write_state(tmp_path / "s.json", pid=child.pid, api_port=listener.getsockname()[1])
    with pytest.raises(StackNotRunning, match=f"not running.*process {child.pid} has exited"):
        LocalState.read(path)


def test_a_state_file_whose_api_does_not_answer_is_stale(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    path = write_state(tmp_path / "s.json", pid=os.getpid(), api_port=closed_port)
    with pytest.raises(StackNotRunning, match="nothing listens"):
        LocalState.read(path)
    # Tools that only want the file's contents can skip the check.
    assert LocalState.read(path, check_running=False).userPoolId == "pool"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"[]", "not a JSON object"),
        (b'"a string"', "not a JSON object"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[" * 100_000, "cannot read"),
        (b"{" + b'"a":{' * 5_000 + b"}" * 5_001, "cannot read"),
    ],
)
def test_a_state_file_that_is_no_json_object_is_a_state_file_error(
    tmp_path: Path, content: bytes, says: str
) -> None:
    # Given a state file someone overwrote with something else
    path = tmp_path / "s.json"
    path.write_bytes(content)
    # When it is read, Then the error names the file and the problem (it was an
    # AttributeError, UnicodeDecodeError or RecursionError traceback)
    with pytest.raises(StateFileError, match=says) as raised:
        LocalState.read(path, check_running=False)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("apiUrl", 5),
        ("userPoolClientId", None),
        ("users", "alice"),
        ("users", ["alice"]),
        ("publisher", []),
        ("pid", "123"),
        ("pid", True),
        ("extra", [1]),
    ],
)
def test_a_state_file_field_of_the_wrong_type_is_a_state_file_error(
    tmp_path: Path, field: str, value: object
) -> None:
    path = write_state(tmp_path / "s.json", pid=os.getpid(), api_port=1)
    raw = json.loads(path.read_text())
    raw[field] = value
    path.write_text(json.dumps(raw))
    with pytest.raises(StateFileError, match=f"{field}"):
        LocalState.read(path, check_running=False)


def test_a_state_file_missing_fields_names_them(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"region": "us-east-1"}')
    with pytest.raises(StateFileError, match="incomplete: missing apiUrl, app, awsEndpointUrl"):
        LocalState.read(path, check_running=False)


def test_every_state_file_field_has_a_type_check() -> None:
    from iotnotify import state_file

    assert set(state_file._FIELD_CHECKS) == set(LocalState.__dataclass_fields__)


def test_state_file_errors_are_sdk_errors(tmp_path: Path) -> None:
    # The SDK's one base: a game server that catches IotNotifyError around
    # Publisher.from_state_file() caught nothing when the stack was stopped.
    from iotnotify.errors import IotNotifyError

    with pytest.raises(IotNotifyError, match="no state file"):
        LocalState.read(tmp_path / "none.json")
    assert issubclass(StackNotRunning, IotNotifyError)


def _read_in_a_thread(path: Path) -> BaseException | None:
    """LocalState.read(path) in a thread; what it raised. A read that blocks
    (as it did on a FIFO) is released by opening the FIFO for writing, so the
    test fails instead of hanging."""
    import threading

    raised: list[BaseException] = []

    def read() -> None:
        try:
            LocalState.read(path, check_running=False)
        except BaseException as exc:  # handed to the test
            raised.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)  # a hang guard, not a speed check
    if reader.is_alive():
        os.close(os.open(path, os.O_WRONLY))  # unblock the reader, then fail
        reader.join(10)
        pytest.fail(f"LocalState.read blocked on {path}")
    return raised[0] if raised else None


def test_a_fifo_as_state_file_is_refused_without_blocking(tmp_path: Path) -> None:
    # Given a FIFO where the state file should be (nobody writes to it)
    fifo = tmp_path / "local.json"
    os.mkfifo(fifo)
    # When it is read, Then one clear StateFileError says what it is
    raised = _read_in_a_thread(fifo)
    assert isinstance(raised, StateFileError), raised
    assert str(raised) == f"state file {fifo} is a FIFO (named pipe), not a regular file"


def test_a_directory_as_state_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(StateFileError, match="is a directory, not a regular file"):
        LocalState.read(tmp_path, check_running=False)
