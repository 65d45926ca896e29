"""Fixtures for SDK tests against real parts: ``iotnotify local`` and the emulator."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from iotnotify.api_client import ApiClient
from iotnotify.auth import CognitoAuth, CognitoSession
from iotnotify.local.state import LocalState
from tests.unit.sdk.fakes import Collector

REPO = Path(__file__).resolve().parents[3]
IOTNOTIFY = Path(sys.executable).parent / "iotnotify"
_START_TIMEOUT = 120.0


@dataclass
class RunningStack:
    state: LocalState
    state_file: Path
    log: list[str]

    def user(self, name: str) -> dict[str, Any]:
        return self.state.user(name)

    def session(self, name: str) -> CognitoSession:
        user = self.user(name)
        auth = CognitoAuth(
            client_id=self.state.userPoolClientId,
            region=self.state.region,
            endpoint_url=self.state.awsEndpointUrl,
        )
        return CognitoSession(auth, username=user["username"], password=user["password"])

    def api(self, name: str) -> ApiClient:
        return ApiClient(api_url=self.state.apiUrl, id_tokens=self.session(name))


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """``iotnotify local --port 0`` in a subprocess, ready when it says so."""
    state_file = tmp_path_factory.mktemp("stack") / "state.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [str(IOTNOTIFY), "local", "--port", "0", "--state-file", str(state_file)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    log: list[str] = []

    def pump() -> None:
        # Drains stderr for the stack's whole life so it never blocks on a full pipe.
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        while True:
            try:
                line = lines.get(timeout=_START_TIMEOUT)
            except queue.Empty:
                pytest.fail("iotnotify local did not become ready:\n" + "".join(log))
            if line is None:
                pytest.fail("iotnotify local exited:\n" + "".join(log))
            if line.startswith("ready."):
                break
        yield RunningStack(state=LocalState.read(state_file), state_file=state_file, log=log)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(5)


@pytest.fixture
def collector() -> Collector:
    return Collector()
