"""Restarting ``iotnotify local``: same ports at once, stale state files, kept data."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt

from tests.integration.local.clients import MqttUser, api, sign_in, sign_up
from tests.integration.local.conftest import four_free_ports, start_stack
from tests.local_process import IOTNOTIFY, LocalProcess


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
        stack = start_stack(tmp_path / f"run{run}.json", "--port", str(port), "--fresh")
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
        ["tray", "--user", "alice"],
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


def send(stack: LocalProcess, title: str) -> str:
    out = subprocess.run(
        [
            IOTNOTIFY,
            "send",
            "--user",
            "alice",
            "--title",
            title,
            "--json",
            "--state-file",
            str(stack.state_file),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return str(json.loads(out.stdout)["id"])


def claims(id_token: str) -> dict[str, Any]:
    return dict(jwt.decode(id_token, options={"verify_signature": False}))


def test_users_inbox_rooms_ids_key_and_ca_survive_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_stack(tmp_path / "first.json", "--port", "0", "--data-dir", str(data_dir))
    try:
        carol_sub = sign_up(first.state, "carol@example.com", "Carol-1-secret!")
        sent = send(first, "kept across a restart")
        alice_token = sign_in(first.state, first.user("alice"))
        status, _ = api(first.state, "POST", "/chats", token=alice_token, body={"room": "lobby"})
        assert status == 201
        ca = Path(first.state["caFile"]).read_bytes()
    finally:
        first.stop()
    assert first.process.returncode == 0

    second = start_stack(tmp_path / "second.json", "--port", "0", "--data-dir", str(data_dir))
    try:
        state = second.state
        # Same pool, client, demo users (passwords and subs), API key and CA.
        for key in ("userPoolId", "userPoolClientId", "users", "publisher"):
            assert state[key] == first.state[key], key
        assert state["extra"]["notifyApiKey"] == first.state["extra"]["notifyApiKey"]
        assert Path(state["caFile"]).read_bytes() == ca
        # A user who signed up before the restart signs in with the same password, same sub.
        carol = sign_in(state, {"username": "carol@example.com", "password": "Carol-1-secret!"})
        assert claims(carol)["sub"] == carol_sub
        # The pool kept its signing key: a token issued before the restart still works.
        assert api(state, "GET", "/token", token=alice_token)[0] == 200
        token = sign_in(state, second.user("alice"))
        status, page = api(state, "GET", "/notifications?limit=100", token=token)
        assert status == 200
        assert sent in [n["id"] for n in page["notifications"]]
        status, rooms = api(state, "GET", "/chats", token=token)
        assert status == 200
        assert "lobby" in [room["room"] for room in rooms["rooms"]]
        # The kept CA signs the restarted wss:// endpoint.
        parts = urlsplit(state["iotWssUrl"])
        context = ssl.create_default_context(cafile=state["caFile"])
        with (
            socket.create_connection((parts.hostname, parts.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=parts.hostname) as tls,
        ):
            assert tls.version() is not None
    finally:
        second.stop()
    assert second.process.returncode == 0

    fresh = start_stack(
        tmp_path / "fresh.json", "--port", "0", "--data-dir", str(data_dir), "--fresh"
    )
    try:
        assert fresh.state["userPoolId"] != first.state["userPoolId"]
        assert fresh.state["users"] != first.state["users"]
        assert Path(fresh.state["caFile"]).read_bytes() != ca
        token = sign_in(fresh.state, fresh.user("alice"))
        status, page = api(fresh.state, "GET", "/notifications", token=token)
        assert (status, page["notifications"]) == (200, [])
        status, rooms = api(fresh.state, "GET", "/chats", token=token)
        assert (status, rooms["rooms"]) == (200, [])
    finally:
        fresh.stop()


def test_one_data_directory_serves_one_stack_at_a_time(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_stack(tmp_path / "first.json", "--port", "0", "--data-dir", str(data_dir))
    try:
        second = subprocess.run(
            [
                IOTNOTIFY,
                "local",
                "--port",
                "0",
                "--data-dir",
                str(data_dir),
                "--state-file",
                str(tmp_path / "second.json"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        first.stop()
    assert second.returncode == 2
    assert "in use" in second.stderr
    assert "Traceback" not in second.stderr + second.stdout


def test_an_unusable_data_directory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    result = subprocess.run(
        [
            IOTNOTIFY,
            "local",
            "--port",
            "0",
            "--state-file",
            str(tmp_path / "s.json"),
            "--data-dir",
            str(tmp_path / "a-file" / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "data directory" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def presence_of(state: dict[str, Any], token: str, user: str) -> dict[str, Any]:
    status, answer = api(state, "GET", f"/presence?users={user}", token=token)
    assert status == 200, answer
    return dict(answer["presence"][user])


def test_nobody_is_online_after_a_restart(tmp_path: Path) -> None:
    # Given alice connected to a stack that keeps its data
    data_dir = tmp_path / "data"
    first = start_stack(tmp_path / "first.json", "--port", "0", "--data-dir", str(data_dir))
    alice = first.user("alice")
    user: MqttUser | None = None
    try:
        token = sign_in(first.state, alice)
        status, vended = api(first.state, "GET", "/token", token=token)
        assert status == 200
        user = MqttUser(vended)
        assert user.connected.wait(10)
        # The presence rule applies the connect event on its own time.
        deadline = time.monotonic() + 30
        while not presence_of(first.state, token, alice["sub"])["online"]:
            assert time.monotonic() < deadline, "the connect never reached presence"
            time.sleep(0.2)
    finally:
        # When the stack stops with her connection open (and she does not come back)
        first.stop()
        if user is not None:
            user.close()
    assert first.process.returncode == 0

    second = start_stack(tmp_path / "second.json", "--port", "0", "--data-dir", str(data_dir))
    try:
        # Then the restarted stack, whose broker has no connection at all,
        # does not report her online (the saved record said so for 24 h)
        token = sign_in(second.state, second.user("alice"))
        seen = presence_of(second.state, token, alice["sub"])
        assert (seen["online"], seen["connections"]) == (False, 0)
        assert seen["lastSeen"] is not None  # when she was last seen is kept
    finally:
        second.stop()
