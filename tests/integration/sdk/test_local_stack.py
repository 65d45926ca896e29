"""The SDK and ``iotnotify listen`` against ``iotnotify local`` (moto, the API, the emulator)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotnotify.auth import CognitoAuth
from iotnotify.backoff import Backoff
from iotnotify.contract import Notification, new_notification_id
from iotnotify.errors import AuthError, PublishError
from iotnotify.publisher import Publisher
from iotnotify.sending import publisher_for_local
from iotnotify.subscriber import ConnectionState, Subscriber
from tests.integration.sdk.conftest import REPO, RunningStack
from tests.unit.sdk.fakes import Collector


@pytest.fixture
def publisher(local_stack: RunningStack) -> Iterator[tuple[Publisher, str]]:
    pub, resolve = publisher_for_local(local_stack.state_file)
    with pub:
        yield pub, resolve("alice")


def _wait_state(collector: Collector, state: ConnectionState, count: int = 1) -> None:
    collector.wait_for(
        lambda: sum(1 for _, c in collector.states if c.state is state) >= count, timeout=30
    )


def test_cognito_sign_in_refresh_and_wrong_password(local_stack: RunningStack) -> None:
    state = local_stack.state
    alice = local_stack.user("alice")
    auth = CognitoAuth(
        client_id=state.userPoolClientId, region=state.region, endpoint_url=state.awsEndpointUrl
    )
    tokens = auth.sign_in(alice["username"], alice["password"])
    assert tokens.id_token
    assert tokens.refresh_token
    assert tokens.fresh()
    renewed = auth.refresh(tokens.refresh_token)
    assert renewed.id_token
    assert renewed.refresh_token == tokens.refresh_token
    with pytest.raises(AuthError):
        auth.sign_in(alice["username"], "not-her-password")


def test_token_and_inbox_through_the_api(
    local_stack: RunningStack, publisher: tuple[Publisher, str]
) -> None:
    api = local_stack.api("alice")
    token = api.token()
    assert token.url.startswith("ws://")
    assert token.client_id_prefix == f"{token.user_id}."
    assert token.keepalive == 50  # below common NAT/proxy idle timeouts
    pub, alice_id = publisher
    cursor = new_notification_id()
    sent = [pub.notify(alice_id, title=f"inbox {i}") for i in range(3)]
    page = api.notifications(since=cursor, limit=2)
    assert [n.id for n in page.notifications] == [n.id for n in sent[:2]]
    assert page.next is not None
    rest = api.notifications(since=page.next, limit=2)
    assert [n.id for n in rest.notifications] == [sent[2].id]


def test_subscriber_receives_from_the_publisher(
    local_stack: RunningStack, publisher: tuple[Publisher, str], collector: Collector
) -> None:
    pub, alice_id = publisher
    sub = Subscriber(
        tokens=local_stack.api("alice"),
        on_message=collector.on_message,
        on_state=collector.on_state,
        since=new_notification_id(),
        device_id="it-basic",
    ).start()
    try:
        _wait_state(collector, ConnectionState.CAUGHT_UP)
        sent = pub.notify(alice_id, title="your turn", body="game 7", data={"game": "7"})
        everyone = pub.broadcast(title="maintenance tonight")
        notes = collector.wait_notes(2, timeout=15)
        assert {n.id for n in notes} == {sent.id, everyone.id}
        assert sub.last_id == sent.id
        assert sub.last_broadcast_id == everyone.id
        mine = next(n for n in notes if n.id == sent.id)
        assert (mine.title, mine.body, dict(mine.data)) == ("your turn", "game 7", {"game": "7"})
    finally:
        sub.stop()


@pytest.mark.slow
def test_emulator_restart_while_200_notifications_are_sent(
    local_stack: RunningStack, publisher: tuple[Publisher, str], collector: Collector
) -> None:
    pub, alice_id = publisher
    sub = Subscriber(
        tokens=local_stack.api("alice"),
        on_message=collector.on_message,
        on_state=collector.on_state,
        since=new_notification_id(),
        device_id="it-restart",
        backoff=Backoff(initial=0.2, cap=2.0),
    ).start()
    sent: list[Notification] = []
    failures: list[Exception] = []
    midway = threading.Event()
    resume = threading.Event()

    def send_all() -> None:
        for index in range(200):
            try:
                sent.append(pub.notify(alice_id, title=f"turn {index}"))
            except PublishError as exc:
                # The live publish was refused while the emulator was down; the
                # inbox write comes first, so catch-up still delivers it.
                failures.append(exc)
            if index == 50:
                midway.set()
                resume.wait(30)
        midway.set()

    thread = threading.Thread(target=send_all)
    try:
        _wait_state(collector, ConnectionState.CAUGHT_UP)
        thread.start()
        assert midway.wait(60)
        local_stack.restart_emulator(down_seconds=2)
        # Keep sending while the emulator is down and after it is back.
        resume.set()
        thread.join(120)
        got = collector.wait_notes(200, timeout=90)
        # Titles are numbered in sending order; ids must be strictly increasing.
        assert [n.title for n in got] == [f"turn {i}" for i in range(200)]
        assert [n.id for n in got] == sorted({n.id for n in got})
        assert {n.id for n in sent} <= {n.id for n in got}
        assert sub.stats.connects >= 2
        assert any(c.state is ConnectionState.DISCONNECTED for _, c in collector.states)
    finally:
        resume.set()
        sub.stop()
        thread.join(30)


def test_listen_prints_json_lines_and_stops_on_ctrl_c(
    local_stack: RunningStack, publisher: tuple[Publisher, str]
) -> None:
    pub, alice_id = publisher
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iotnotify.cli_client",
            "listen",
            "--state-file",
            str(local_stack.state_file),
            "--user",
            "alice",
            "--json",
            "--device",
            "it-listen",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    events: queue.Queue[tuple[str, str | None]] = queue.Queue()

    def pump(name: str, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            events.put((name, line))
        events.put((name, None))

    readers = [
        threading.Thread(target=pump, args=("out", proc.stdout), daemon=True),
        threading.Thread(target=pump, args=("err", proc.stderr), daemon=True),
    ]
    for reader in readers:
        reader.start()

    def next_line(stream: str) -> str:
        while True:
            name, line = events.get(timeout=30)
            assert line is not None or name != stream, f"{stream} closed"
            if name == stream and line is not None:
                return line

    try:
        while "caught-up" not in next_line("err"):
            pass
        # Issue 11 §2: the always-on client maps neither libbz2 nor liblzma
        # (shutil imports them only to list its archive formats).
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert not [line for line in maps.splitlines() if "libbz2" in line or "liblzma" in line]
        sent = pub.notify(alice_id, title="your turn", body="game 12")
        printed = json.loads(next_line("out"))
        assert printed["id"] == sent.id
        assert printed["title"] == "your turn"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for reader in readers:
            reader.join(5)


def test_tray_refuses_to_run_without_a_keyring(
    local_stack: RunningStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a machine with no usable OS keyring (the tray's keyring helper
    # process reads the same setting)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    import keyring
    from click.testing import CliRunner
    from keyring.backends.fail import Keyring as NoKeyring

    from iotnotify.cli_client import tray

    previous = keyring.get_keyring()
    keyring.set_keyring(NoKeyring())
    try:
        settings = tmp_path / "tray.json"
        # When the tray is started for the first time
        result = CliRunner().invoke(
            tray,
            [
                "--state-file",
                str(local_stack.state_file),
                "--user",
                "alice",
                "--settings",
                str(settings),
            ],
        )
    finally:
        keyring.set_keyring(previous)
    # Then it stops with a clear message rather than keeping the token in a file
    assert result.exit_code == 1
    assert "keyring" in result.output
    assert not settings.exists() or "refresh" not in settings.read_text().lower()
    # and the message names the choices (issue 12 item 7)
    flat = " ".join(result.output.split())
    assert "Secret Service" in flat
    assert "--no-keyring" in flat
    assert "Traceback" not in result.output


def test_tray_no_keyring_signs_in_and_keeps_the_token_in_memory_only(
    local_stack: RunningStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keyring
    from click.testing import CliRunner
    from keyring.backends.fail import Keyring as NoKeyring

    from iotnotify.cli_client import tray
    from iotnotify.tray.app import TrayApp

    ran: list[TrayApp] = []
    monkeypatch.setattr(TrayApp, "run", lambda self: ran.append(self))  # no screen needed
    previous = keyring.get_keyring()
    keyring.set_keyring(NoKeyring())
    try:
        settings = tmp_path / "tray.json"
        result = CliRunner().invoke(
            tray,
            [
                "--state-file",
                str(local_stack.state_file),
                "--user",
                "alice",
                "--settings",
                str(settings),
                "--no-keyring",
            ],
        )
    finally:
        keyring.set_keyring(previous)
    assert result.exit_code == 0, result.output
    assert len(ran) == 1
    assert ran[0].has_refresh_token()  # signed in, token held by this process
    assert "refresh" not in settings.read_text().lower()


def _send(local_stack: RunningStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("iotnotify")),
            "send",
            "--state-file",
            str(local_stack.state_file),
            "--title",
            "hello",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_send_to_an_unknown_user_is_an_error_not_sent(local_stack: RunningStack) -> None:
    # Issue 12 item 9: `send --user carol` said "sent".
    result = _send(local_stack, "--user", "carol")
    assert result.returncode == 1
    assert "no user 'carol'" in result.stderr
    assert "sent" not in result.stdout


def test_a_user_who_signed_up_is_addressable_by_e_mail(local_stack: RunningStack) -> None:
    # Given someone signed up on the page (which stores e-mails lower case)
    auth = CognitoAuth.from_state_file(local_stack.state_file)
    signed_up = auth.sign_up("dora.page@example.com", "Signed-up-1-password")
    # When a sender addresses her by e-mail, in any case
    result = _send(local_stack, "--user", "Dora.Page@Example.com", "--json")
    # Then the notification goes to her user id
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["results"] == [{"userId": signed_up.user_sub, "ok": True}]
    by_id = _send(local_stack, "--user", signed_up.user_sub, "--json")
    assert json.loads(by_id.stdout)["results"][0]["ok"] is True


def test_listen_into_a_pipe_that_closes_exits_quietly(
    local_stack: RunningStack, publisher: tuple[Publisher, str]
) -> None:
    # Given `iotnotify listen | head -1`: a reader that leaves after one line
    # (it printed a BrokenPipeError traceback per notification and never exited)
    pub, alice_id = publisher
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iotnotify.cli_client",
            "listen",
            "--state-file",
            str(local_stack.state_file),
            "--user",
            "alice",
            "--device",
            "it-pipe",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write_end)
    try:
        assert proc.stderr is not None
        while "caught-up" not in proc.stderr.readline():
            pass
        pub.notify(alice_id, title="first")
        with os.fdopen(read_end, "rb") as reader:
            assert b"first" in reader.readline()
        # When the reader has gone and another notification arrives
        pub.notify(alice_id, title="second")
        # Then listen stops by itself, with status 0 and no traceback
        assert proc.wait(timeout=30) == 0
        err = proc.stderr.read()
        assert "Traceback" not in err
        assert "BrokenPipeError" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_listen_ends_when_its_pipe_reader_leaves_even_while_nothing_arrives(
    local_stack: RunningStack,
) -> None:
    # Given `iotnotify listen | grep -m1 turn`: the reader leaves after its
    # line, and no other notification comes (listen noticed only when it next
    # wrote, so it ran on, connected, until the next notification)
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iotnotify.cli_client",
            "listen",
            "--state-file",
            str(local_stack.state_file),
            "--user",
            "alice",
            "--device",
            "it-idle-pipe",
        ],
        cwd=REPO,
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write_end)
    try:
        assert proc.stderr is not None
        while "caught-up" not in proc.stderr.readline():
            pass
        # When the reader closes its end with nothing sent
        os.close(read_end)
        # Then listen stops by itself, quietly, with status 0
        assert proc.wait(timeout=30) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_listen_whose_output_cannot_be_written_stops_with_an_error(
    local_stack: RunningStack, publisher: tuple[Publisher, str]
) -> None:
    # Given `iotnotify listen > file` on a full disk (/dev/full: ENOSPC)
    pub, alice_id = publisher
    with open("/dev/full", "w") as full:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "iotnotify.cli_client",
                "listen",
                "--state-file",
                str(local_stack.state_file),
                "--user",
                "alice",
                "--device",
                "it-full",
            ],
            cwd=REPO,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        assert proc.stderr is not None
        while "caught-up" not in proc.stderr.readline():
            pass
        # When a notification arrives that it cannot print
        pub.notify(alice_id, title="lost?")
        # Then it stops with status 1 and says why, instead of logging a
        # traceback per notification and running on as if they were shown
        assert proc.wait(timeout=30) == 1
        err = proc.stderr.read()
        assert "Traceback" not in err
        assert "No space left on device" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _iotnotify_into_a_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """``iotnotify ARGS | head -0``, deterministically: stdout's read end is
    closed before the command starts."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [str(Path(sys.executable).with_name("iotnotify")), *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)


def test_rooms_and_send_json_into_a_pipe_that_closed_end_quietly(
    local_stack: RunningStack,
) -> None:
    # Given a room to list, and readers that have gone (`... | head -0`)
    target = ("--state-file", str(local_stack.state_file), "--user", "alice")
    created = subprocess.run(
        [str(Path(sys.executable).with_name("iotnotify")), "rooms", "create", "pipe-room", *target],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    for args in (
        ("rooms", *target),
        ("send", "--state-file", str(local_stack.state_file), "--user", "alice",
         "--title", "piped", "--json"),
    ):  # fmt: skip
        # When the command writes its output
        done = _iotnotify_into_a_closed_pipe(*args)
        # Then it ends with status 0 and nothing on stderr: no traceback, no
        # "Exception ignored ... BrokenPipeError"
        assert done.returncode == 0, (args, done.stderr)
        assert done.stderr == "", args
