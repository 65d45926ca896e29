"""Restarting ``iotnotify local``: same ports at once, stale state files, kept data."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from tests.integration.local.conftest import start_stack
from tests.local_process import IOTNOTIFY, LocalProcess


def four_free_ports() -> int:
    """A port P such that P..P+3 are free now (the stack uses four in a row)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + 3 > 65535:
            continue
        try:
            with ExitStack() as held:
                for port in range(base, base + 4):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no four consecutive free ports")


@contextmanager
def open_connections(stack: LocalProcess) -> Iterator[None]:
    """Keep-alive connections to the API and the emulator while the stack stops.

    The servers close these, so the server side of each ends in TIME_WAIT on
    the listening port: what a user's browser tab or `listen` leaves behind.
    """
    held = []
    for url in (stack.state["apiUrl"], stack.state["iotDataUrl"]):
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        conn.request("GET", "/config.json" if url == stack.state["apiUrl"] else "/_emulator/stats")
        conn.getresponse().read()
        held.append(conn)
    try:
        yield
    finally:
        for conn in held:
            conn.close()


def test_restarts_at_once_on_the_same_fixed_ports(tmp_path: Path) -> None:
    port = four_free_ports()
    for run in range(3):
        stack = start_stack(tmp_path / f"run{run}.json", "--port", str(port))
        try:
            assert stack.state["apiUrl"] == f"http://127.0.0.1:{port}"
            with open_connections(stack):
                output = stack.stop()
        finally:
            stack.stop()
        assert stack.process.returncode == 0, output


def test_a_port_held_by_a_live_process_is_still_refused(tmp_path: Path) -> None:
    port = four_free_ports()
    with socket.create_server(("127.0.0.1", port + 2)):  # what another server would hold
        second = subprocess.run(
            [IOTNOTIFY, "local", "--port", str(port), "--state-file", str(tmp_path / "s.json")],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert second.returncode == 2
    assert f"port {port + 2}" in second.stderr
    assert "already in use" in second.stderr


def test_commands_say_the_stack_is_not_running_after_a_crash(tmp_path: Path) -> None:
    state_file = tmp_path / "crashed.json"
    stack = start_stack(state_file, "--port", "0")
    try:
        stack.process.kill()  # a crash: no clean-up, the state file stays
        stack.process.wait(timeout=30)
    finally:
        stack.stop()
    assert state_file.exists()
    commands = [
        ["send", "--user", "alice", "--title", "hi", "body"],
        ["listen", "--user", "alice"],
    ]
    for command in commands:
        result = subprocess.run(
            [IOTNOTIFY, *command, "--state-file", str(state_file)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
        )
        assert result.returncode == 1, command
        assert "not running" in result.stderr, result.stderr
        assert "Could not connect" not in result.stderr + result.stdout
        assert "Traceback" not in result.stderr + result.stdout
