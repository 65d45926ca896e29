"""``iotnotify listen`` / ``tray`` argument handling (no stack needed)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from iotnotify.cli_client import _line, listen, tray
from iotnotify.contract import Notification
from iotnotify.errors import ConnectionLost
from tests.unit.sdk.fakes import FakeService


def test_readable_line() -> None:
    note = Notification.create(title="Your turn", body="Game 7", type="turn")
    line = _line(note)
    assert line.startswith(note.ts)
    assert line.endswith("[turn] Your turn: Game 7")


def test_api_url_needs_a_client_id_and_user() -> None:
    result = CliRunner().invoke(listen, ["--api-url", "https://api.example"])
    assert result.exit_code == 2
    assert "--client-id" in result.output


def test_missing_state_file_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        listen, ["--state-file", str(tmp_path / "none.json"), "--user", "alice"]
    )
    assert result.exit_code == 1
    assert "iotnotify local" in result.output


def test_state_file_mode_needs_a_user(tmp_path: Path) -> None:
    result = CliRunner().invoke(listen, ["--state-file", str(tmp_path / "none.json")])
    assert result.exit_code == 2
    assert "--user" in result.output


def test_tray_without_settings_explains_the_first_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(tray, ["--settings", str(tmp_path / "tray.json")])
    assert result.exit_code == 1
    assert "--api-url" in result.output


def test_since_garbage_is_a_usage_error(tmp_path: Path) -> None:
    # Issue 12 item 9: it used to loop forever on a 400 from the inbox.
    result = CliRunner().invoke(
        listen,
        ["--state-file", str(tmp_path / "none.json"), "--user", "alice", "--since", "garbage"],
    )
    assert result.exit_code == 2
    assert "--since" in result.output
    assert "notification id" in result.output


@pytest.mark.parametrize("since", ["zzz", "x" * 5000])
def test_since_garbage_is_echoed_as_typed_and_shortened(tmp_path: Path, since: str) -> None:
    # It showed the value upper-cased ('ZZZ') and repeated 5,000 characters whole.
    result = CliRunner().invoke(
        listen,
        ["--state-file", str(tmp_path / "none.json"), "--user", "alice", "--since", since],
    )
    assert result.exit_code == 2
    assert repr(since[:80]) in result.output
    assert since.upper() not in result.output
    assert len(result.output) < 1000


def test_tray_user_alice_again_signs_in_as_the_demo_user_not_as_alice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's `iotnotify tray --user alice`, run a second time (settings saved
    # by the first run): it signed in as the user name "alice" on the saved
    # deployment, asked for a password and got "User does not exist".
    import iotnotify.tray.app
    from iotnotify.state_file import DEFAULT_STATE_FILE, LocalState
    from iotnotify.tray.settings import TraySettings

    monkeypatch.chdir(tmp_path)
    state = LocalState(
        region="us-east-1",
        app="iotnotify",
        stage="local",
        apiUrl="http://127.0.0.1:8700",
        webUrl="http://127.0.0.1:8700/",
        iotWsUrl="ws://127.0.0.1:8702/mqtt",
        iotWssUrl="wss://127.0.0.1:8703/mqtt",
        iotDataUrl="http://127.0.0.1:8702",
        caFile="",
        awsEndpointUrl="http://127.0.0.1:8701",
        userPoolId="us-east-1_pool",
        userPoolClientId="client",
        users=[{"name": "alice", "username": "alice@example.com", "password": "demo-pw"}],
        publisher={},
    )
    DEFAULT_STATE_FILE.parent.mkdir()
    state.write(DEFAULT_STATE_FILE)
    monkeypatch.setattr(LocalState, "ensure_running", lambda self, path: None)
    saved = tmp_path / "tray.json"
    TraySettings(
        api_url=state.apiUrl,
        user_pool_client_id="client",
        region="us-east-1",
        username="alice@example.com",
    ).save(saved)
    signed_in: list[tuple[str, str | None]] = []

    class FakeTray:
        def __init__(self, *, settings: TraySettings, password: str | None, **_: object) -> None:
            self.settings, self.password = settings, password

        def has_refresh_token(self) -> bool:
            return False

        def sign_in(self) -> None:
            signed_in.append((self.settings.username, self.password))
            raise KeyboardInterrupt  # stop before the icon

    monkeypatch.setattr(iotnotify.tray.app, "TrayApp", FakeTray)
    result = CliRunner().invoke(
        tray, ["--settings", str(saved), "--user", "alice", "--no-keyring"], input=""
    )
    assert "password for" not in result.output, result.output
    assert signed_in == [("alice@example.com", "demo-pw")], result.output


def test_listen_and_tray_load_their_http_stack_without_bz2_and_lzma() -> None:
    """Issue 11 §2: shutil (imported by the HTTP stack through tempfile)
    imports bz2 and lzma only to list its archive formats; the always-on
    clients load neither, yet a later explicit import still works."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from iotnotify.cli_client import _shutil_without_archive_codecs\n"
        "_shutil_without_archive_codecs()\n"
        "import iotnotify.subscriber, iotnotify.api_client, iotnotify.tray.app, shutil\n"
        "loaded = sorted(m for m in ('bz2', 'lzma', '_bz2', '_lzma') if m in sys.modules)\n"
        "formats = sorted(name for name, _ in shutil.get_archive_formats())\n"
        "import lzma\n"
        "print(json.dumps({'loaded': loaded, 'formats': formats, 'later': lzma.__name__}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "loaded": [],
        "formats": ["gztar", "tar", "zip"],
        "later": "lzma",
    }


def test_tray_settings_that_cannot_be_saved_are_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `iotnotify tray --settings /proc/nope/tray.json ...` signed in, then
    # ended in a FileNotFoundError traceback from TraySettings.save.
    import iotnotify.tray.app

    ran: list[bool] = []

    class FakeTray:
        def __init__(self, **_: object) -> None:
            pass

        def has_refresh_token(self) -> bool:
            return True

        def sign_in(self) -> None:
            pass

        def run(self) -> None:
            ran.append(True)

    monkeypatch.setattr(iotnotify.tray.app, "TrayApp", FakeTray)
    (tmp_path / "a-file").write_text("")
    settings = tmp_path / "a-file" / "tray.json"
    result = CliRunner().invoke(
        tray,
        [
            "--settings",
            str(settings),
            "--api-url",
            "http://127.0.0.1:9",
            "--client-id",
            "c",
            "--user",
            "a@example.com",
            "--password",
            "p",
            "--no-keyring",
        ],
    )
    assert result.exit_code == 1, result.output
    assert f"cannot save the tray settings to {settings}" in result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert ran == []


def test_listen_says_ignoring_a_message_as_an_iotnotify_line(
    service: FakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The subscriber's "ignoring a message on <topic>: ..." warning reached
    # stderr bare (logging's last resort), unlike every other line of listen.
    import iotnotify.subscriber

    class StopsAfterTheValidOne(iotnotify.subscriber.Subscriber):
        def __init__(self, **options: Any) -> None:
            show = options["on_message"]

            def on_message(note: Notification) -> None:
                show(note)
                if note.title == "valid":
                    self.stop()

            super().__init__(**{**options, "on_message": on_message})

    monkeypatch.setattr(iotnotify.subscriber, "Subscriber", StopsAfterTheValidOne)

    def publish() -> None:
        # Given a sender that puts something that is no notification on the topic
        service.wait_subscribed()
        service.send_raw(b"not a notification")
        service.send(Notification.create(title="valid"))

    sender = threading.Thread(target=publish, daemon=True)
    sender.start()
    # When listen receives it (and then a valid one, after which it stops)
    result = CliRunner().invoke(
        listen,
        [
            *("--api-url", service.api_url, "--client-id", "c", "--user", "u", "--password", "p"),
            *("--cognito-endpoint", service.cognito_url),
            *("--since", "all", "--device", "cli-test"),
        ],
    )
    sender.join(10)
    # Then the warning is an "iotnotify: ..." line like the others on stderr
    assert result.exit_code == 0, (result.output, result.exception)
    assert "valid" in result.stdout
    lines = result.stderr.splitlines()
    assert any(line.startswith("iotnotify: ignoring a message on ") for line in lines), lines
    assert all(line.startswith("iotnotify: ") for line in lines), lines


def _listen_args(api_url: str, cognito_url: str, *more: str) -> list[str]:
    return [
        *("--api-url", api_url, "--client-id", "c", "--cognito-endpoint", cognito_url),
        *("--user", "alice@example.com", "--since", "all", "--device", "cli-test", *more),
    ]


def test_listen_started_before_the_network_waits_says_so_once_and_connects(
    service: FakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `iotnotify tray` started before the network waited for it
    # (aws-iot-device-sdk-python-v2#226); `iotnotify listen` exited with
    # "error: sign-in failed: cannot reach ...".
    import iotnotify.subscriber
    from iotnotify.backoff import Backoff
    from iotnotify.subscriber import ConnectionState, StateChange
    from tests.integration.sdk.network_link import Link

    link = Link(service.port)  # the network is down: connections are refused
    retried = threading.Event()
    failures: list[StateChange] = []

    class StopsAfterOne(iotnotify.subscriber.Subscriber):
        def __init__(self, **options: Any) -> None:
            show, state = options["on_message"], options["on_state"]

            def on_message(note: Notification) -> None:
                show(note)
                self.stop()

            def on_state(change: StateChange) -> None:
                state(change)
                if change.state is ConnectionState.DISCONNECTED:
                    failures.append(change)
                    if len(failures) >= 3:
                        retried.set()

            super().__init__(
                **{
                    **options,
                    "on_message": on_message,
                    "on_state": on_state,
                    "backoff": Backoff(initial=0.05, cap=0.2),
                }
            )

    monkeypatch.setattr(iotnotify.subscriber, "Subscriber", StopsAfterOne)

    def network_comes_back() -> None:
        assert retried.wait(30)
        link.up()
        service.wait_subscribed(timeout=30)
        service.send(Notification.create(title="your turn"))

    helper = threading.Thread(target=network_comes_back, daemon=True)
    helper.start()
    try:
        # Given listen started while neither Cognito nor the API can be reached
        result = CliRunner().invoke(
            listen, _listen_args(link.url(), link.url() + "/cognito/", "--password", "pw")
        )
    finally:
        helper.join(30)
        link.close()
    # Then it waited, retrying, and printed the notification once the network came
    assert result.exit_code == 0, (result.output, result.exception)
    assert "your turn" in result.stdout
    assert len(failures) >= 3
    assert all(isinstance(f.error, ConnectionLost) for f in failures)
    # saying so in one line, not one per retry, and then that it connected
    lines = result.stderr.splitlines()
    assert len(lines) == 4, lines
    assert lines[0].startswith("iotnotify: cannot connect yet: sign-in failed: cannot reach ")
    assert lines[0].endswith("retrying with backoff (Ctrl-C stops)")
    assert lines[1:] == [
        "iotnotify: connected as alice.cli-test",
        "iotnotify: caught-up",
        "iotnotify: stopped",
    ]
    assert service.sign_ins == 1


def test_listen_with_a_refused_password_ends_at_once_without_retrying(
    service: FakeService,
) -> None:
    result = CliRunner().invoke(
        listen, _listen_args(service.api_url, service.cognito_url, "--password", "wrong")
    )
    assert result.exit_code == 1, result.output
    assert "Incorrect username or password." in result.stderr
    assert "waiting" not in result.stderr
    assert service.sign_ins == 1
    assert service.token_calls == 0


def test_listen_interrupted_while_waiting_for_the_network_is_one_line_and_130() -> None:
    import signal
    import socket
    import subprocess
    import sys

    # Given an address that refuses connections (bound, not listening)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; sys.argv[0] = 'iotnotify'; from iotnotify.cli import main; main()",
                "listen",
                *_listen_args(url, url, "--password", "pw"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stderr is not None
            # When listen is waiting for the network
            first = proc.stderr.readline()
            assert first.startswith("iotnotify: cannot connect yet: "), first
            # and Ctrl-C comes
            proc.send_signal(signal.SIGINT)
            out, rest = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # Then it says so in one line, with 128 + SIGINT
    assert rest == "iotnotify: interrupted\n", rest
    assert out == ""
    assert proc.returncode == 130
