"""Run the real ``iotnotify local`` command as a subprocess for these tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

IOTNOTIFY = str(Path(sys.executable).with_name("iotnotify"))
START_TIMEOUT = 90.0


class RunningStack:
    def __init__(self, process: subprocess.Popen[str], state_file: Path) -> None:
        self.process = process
        self.state_file = state_file
        self.state: dict[str, Any] = {}

    def user(self, name: str) -> dict[str, Any]:
        return next(u for u in self.state["users"] if u["name"] == name)


def start_stack(state_file: Path, *args: str) -> RunningStack:
    process = subprocess.Popen(
        [IOTNOTIFY, "local", "--state-file", str(state_file), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    stack = RunningStack(process, state_file)
    deadline = time.monotonic() + START_TIMEOUT
    # The command writes the state file only when everything listens.
    while not state_file.exists():
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise RuntimeError(f"iotnotify local exited with {process.returncode}:\n{output}")
        if time.monotonic() > deadline:
            stop_stack(stack)
            raise TimeoutError("iotnotify local did not start in time")
        time.sleep(0.1)
    stack.state = json.loads(state_file.read_text())
    return stack


def stop_stack(stack: RunningStack) -> str:
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGINT)
        try:
            stack.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stack.process.kill()
            stack.process.wait(timeout=10)
    return stack.process.stdout.read() if stack.process.stdout else ""


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    state_file = tmp_path_factory.mktemp("local") / "state.json"
    stack = start_stack(state_file, "--port", "0")
    try:
        yield stack
    finally:
        stop_stack(stack)
