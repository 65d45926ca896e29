"""Run the real ``iotnotify local`` command as a subprocess for these tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local_process import LocalProcess, start_local


def start_stack(state_file: Path, *args: str) -> LocalProcess:
    """Start the command and wait until it is ready; fail with its output if it is not."""
    stack = start_local(state_file, *args)
    if not stack.wait_ready():
        output = stack.stop()
        raise RuntimeError(
            f"iotnotify local did not become ready (exit code {stack.process.returncode}):\n"
            + output[-4000:]
        )
    return stack


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalProcess]:
    state_file = tmp_path_factory.mktemp("local") / "state.json"
    stack = start_stack(state_file, "--port", "0")
    try:
        yield stack
    finally:
        stack.stop()
