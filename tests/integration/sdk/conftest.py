"""Fixtures for SDK tests against real parts: ``iotnotify local`` and the emulator."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from iotnotify.api_client import ApiClient
from iotnotify.auth import CognitoAuth, CognitoSession
from iotnotify.state_file import LocalState
from tests.local_process import start_local
from tests.unit.sdk.fakes import Collector

REPO = Path(__file__).resolve().parents[3]


@dataclass
class RunningStack:
    state: LocalState
    state_file: Path

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

    def restart_emulator(self, down_seconds: int) -> None:
        """The stack's fault-injection hook: drop everyone, listen again later."""
        url = f"{self.state.iotDataUrl}/_emulator/restart?downSeconds={down_seconds}"
        secret = self.state.extra["emulatorAdminSecret"]
        request = urllib.request.Request(
            url, method="POST", data=b"", headers={"X-Emulator-Secret": secret}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert int(answer.status) == 202


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """``iotnotify local --port 0`` in a subprocess, ready when it says so."""
    state_file = tmp_path_factory.mktemp("stack") / "state.json"
    process = start_local(state_file, "--port", "0", cwd=REPO)
    try:
        if not process.wait_ready():
            pytest.fail("iotnotify local did not become ready:\n" + process.output())
        yield RunningStack(state=LocalState.read(state_file), state_file=state_file)
    finally:
        process.stop()


@pytest.fixture
def collector() -> Collector:
    return Collector()
