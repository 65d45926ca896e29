"""The command line: clear errors, usage checks, the cost table."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from iotnotify.cli import cli


def test_send_without_a_running_stack_says_what_to_do(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["send", "--user", "alice", "--title", "hi", "--state-file", str(tmp_path / "none.json")],
    )
    assert result.exit_code == 1
    assert "iotnotify local" in result.output
    assert "Traceback" not in result.output


def test_send_needs_exactly_one_kind_of_target(tmp_path: Path) -> None:
    runner = CliRunner()
    neither = runner.invoke(cli, ["send", "--title", "hi"])
    both = runner.invoke(cli, ["send", "--title", "hi", "--user", "a", "--broadcast"])
    assert neither.exit_code == both.exit_code == 2
    assert "--user" in neither.output
    assert "not both" in both.output


def test_send_stage_without_a_region_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 12 item 9: it printed a 40-line NoRegionError traceback.
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    result = CliRunner().invoke(cli, ["send", "--stage", "dev", "--user", "a", "--title", "t"])
    assert result.exit_code == 1
    assert "no AWS region" in result.output
    assert "--region" in result.output
    assert "Traceback" not in result.output


def test_send_stage_takes_the_region_from_aws_region_as_its_error_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "no AWS region: ... or set AWS_REGION" while AWS_REGION was set: botocore
    # reads only AWS_DEFAULT_REGION (botocore/configprovider.py, 'region').
    import iotnotify.sending

    for name in ("AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    regions: list[str] = []

    def create(*, session: Any, **_: object) -> object:
        regions.append(session.region_name)
        raise click.ClickException("stop here")

    monkeypatch.setattr(iotnotify.sending.Publisher, "create", create)
    result = CliRunner().invoke(cli, ["send", "--stage", "dev", "--user", "a", "--title", "t"])
    assert "no AWS region" not in result.output, result.output
    assert regions == ["eu-west-1"]


@pytest.mark.parametrize("title", ["", "   "])
def test_send_refuses_an_empty_title_like_the_api_does(title: str) -> None:
    result = CliRunner().invoke(cli, ["send", "--user", "a", "--title", title])
    assert result.exit_code == 2
    assert "title is required" in result.output


def test_the_publisher_refuses_an_empty_title_too() -> None:
    from iotnotify.contract import Notification
    from iotnotify.errors import InvalidEnvelope

    with pytest.raises(InvalidEnvelope, match="title is required"):
        Notification.create(title=" ")


class _RecordingPublisher:
    def __init__(self) -> None:
        self.broadcasts: list[dict[str, Any]] = []

    def __enter__(self) -> _RecordingPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def broadcast(self, **options: Any) -> Any:
        from iotnotify.contract import Notification

        self.broadcasts.append(options)
        return Notification.create(title=options["title"], type=options["type"])


def test_send_broadcast_sends_type_broadcast(monkeypatch: pytest.MonkeyPatch) -> None:
    import iotnotify.sending

    recorder = _RecordingPublisher()
    monkeypatch.setattr(
        iotnotify.sending, "publisher_for_local", lambda _path: (recorder, lambda u: u)
    )
    result = CliRunner().invoke(cli, ["send", "--broadcast", "--title", "Season 3"])
    assert result.exit_code == 0, result.output
    assert recorder.broadcasts[0]["type"] == "broadcast"
    explicit = CliRunner().invoke(cli, ["send", "--broadcast", "--title", "x", "--type", "promo"])
    assert explicit.exit_code == 0
    assert recorder.broadcasts[1]["type"] == "promo"


class _PartlyFailingPublisher(_RecordingPublisher):
    """notify_many fails for the users named in ``failing``."""

    def __init__(self, failing: set[str]) -> None:
        super().__init__()
        self.failing = failing

    def notify_many(self, user_ids: list[str], **options: Any) -> list[Any]:
        from iotnotify.publisher import DeliveryResult

        return [
            DeliveryResult(u, ok=False, notification_id="01N", error="publish refused")
            if u in self.failing
            else DeliveryResult(u, ok=True, notification_id="01N")
            for u in user_ids
        ]


@pytest.mark.parametrize(
    ("users", "failing", "stdout", "exit_code"),
    [
        (["a"], set(), "sent 01N\n", 0),
        (["a", "b"], {"b"}, "sent 01N to 1 of 2 users\n", 1),
        (["a"], {"a"}, "", 1),
    ],
)
def test_send_says_sent_only_for_what_reached_someone(
    monkeypatch: pytest.MonkeyPatch,
    users: list[str],
    failing: set[str],
    stdout: str,
    exit_code: int,
) -> None:
    import iotnotify.sending

    publisher = _PartlyFailingPublisher(failing)
    monkeypatch.setattr(
        iotnotify.sending, "publisher_for_local", lambda _path: (publisher, lambda u: u)
    )
    args = ["send", "--title", "t"] + [arg for u in users for arg in ("--user", u)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == exit_code
    assert result.stdout == stdout
    for user in failing:
        assert f"{user}: publish refused" in result.stderr


@pytest.mark.parametrize(
    ("users", "failing", "exit_code"),
    [(["a"], set(), 0), (["a", "b"], {"b"}, 1), (["a"], {"a"}, 1)],
)
def test_send_json_exits_non_zero_when_a_user_was_not_reached(
    monkeypatch: pytest.MonkeyPatch, users: list[str], failing: set[str], exit_code: int
) -> None:
    # `send --json` printed ok:false and exited 0, so a script could not tell.
    import iotnotify.sending

    publisher = _PartlyFailingPublisher(failing)
    monkeypatch.setattr(
        iotnotify.sending, "publisher_for_local", lambda _path: (publisher, lambda u: u)
    )
    args = ["send", "--json", "--title", "t"] + [arg for u in users for arg in ("--user", u)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == exit_code
    printed = json.loads(result.stdout)  # still one JSON document on stdout, nothing else
    assert [r["ok"] for r in printed["results"]] == [u not in failing for u in users]


def test_send_refuses_data_that_is_not_a_json_object() -> None:
    result = CliRunner().invoke(cli, ["send", "--user", "a", "--title", "t", "--data", "[1]"])
    assert result.exit_code == 2
    assert "JSON object" in result.output


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ("[" * 100_000, "nests deeper than 32"),
        ('{"a":' * 40 + "1" + "}" * 40, "nests deeper than 32"),
        ('{"a": NaN}', "NaN"),
        ('{"a": "\\ud800"}', "lone surrogate"),
        ("{nope", "not valid JSON"),
    ],
)
def test_send_refuses_data_the_api_would_refuse_in_one_line(data: str, says: str) -> None:
    # Given --data nested too deep (a RecursionError traceback before) or not
    # strict JSON; When sent, Then one usage line names --data and the reason,
    # before any state file or AWS client is looked at.
    result = CliRunner().invoke(cli, ["send", "--user", "a", "--title", "t", "--data", data])
    assert result.exit_code == 2, result.output
    assert "--data" in result.output
    assert says in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("command", ["send", "listen", "rooms", "chat", "tray"])
@pytest.mark.parametrize("content", [b"[]", b"\xff\xfe", b"[" * 100_000, b'{"apiUrl": 5}'])
def test_every_command_reads_a_broken_state_file_as_one_error_line(
    tmp_path: Path, command: str, content: bytes
) -> None:
    # Given a state file that is not what `iotnotify local` writes
    state_file = tmp_path / "local.json"
    state_file.write_bytes(content)
    args = {
        "send": ["send", "--user", "alice", "--title", "t"],
        "listen": ["listen", "--user", "alice"],
        "rooms": ["rooms", "--user", "alice"],
        "chat": ["chat", "lobby", "--user", "alice"],
        "tray": ["tray", "--user", "alice", "--no-keyring", "--settings", str(tmp_path / "t.json")],
    }[command]
    # When a command reads it, Then it says so in one line with exit status 1,
    # in the one form of the CLI's own errors (it was "error: ..." from send,
    # click's "Error: ..." from the others)
    result = CliRunner().invoke(cli, [*args, "--state-file", str(state_file)])
    assert result.exit_code == 1, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("iotnotify: error: "), line
    assert str(state_file) in line
    assert result.stdout == ""
    assert isinstance(result.exception, SystemExit), result.exception


def test_cost_prints_a_monthly_table() -> None:
    result = CliRunner().invoke(cli, ["cost", "--users", "1000", "--per-day", "10"])
    assert result.exit_code == 0
    assert "connection-minutes" in result.output
    assert "total" in result.output


@pytest.mark.parametrize("users", ["1", "7", "333", "1000", "100000"])
def test_cost_says_when_its_rounded_rows_do_not_add_up_to_the_total(users: str) -> None:
    # Given the text table, whose rows are each rounded to the cent
    result = CliRunner().invoke(cli, ["cost", "--users", users, "--per-day", "3"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("-----"))
    end = next(i for i in range(rule + 1, len(lines)) if lines[i].startswith("-----"))
    rows = sum(Decimal(line.split()[-1].replace(",", "")) for line in lines[rule + 1 : end])
    total = Decimal(next(ln for ln in lines if ln.startswith("total")).split()[-1].replace(",", ""))
    note = [line for line in lines if line.startswith("(each row is rounded")]
    # Then either the rows add up to the total as printed, or a note gives their sum
    if rows == total:
        assert note == []
    else:
        assert note == [
            f"(each row is rounded to the cent; the rows add up to ${rows:,.2f}, "
            "the total is the sum before rounding)"
        ]


def test_cost_for_the_default_load_notes_its_rows_add_up_to_a_cent_more() -> None:
    # The case a reader found: sixteen rows that sum to 6.52 under a total of 6.51.
    result = CliRunner().invoke(cli, ["cost", "--users", "1000", "--per-day", "10"])
    total = next(line for line in result.output.splitlines() if line.startswith("total"))
    assert total.split() == ["total", "6.51"]
    assert "the rows add up to $6.52, the total is the sum before rounding" in result.output


def test_every_documented_command_is_registered() -> None:
    ctx = click.Context(cli)
    documented = {"local", "send", "listen", "tray", "cost", "deploy", "destroy", "synth"}
    documented |= {"rooms", "chat"}
    assert documented <= set(cli.list_commands(ctx))
    for name in documented:
        command = cli.get_command(ctx, name)
        assert isinstance(command, click.Command)
        assert command.name == name


def test_listen_and_tray_load_no_other_command_module() -> None:
    """Issue 11 §2: the always-on commands do not keep the chat, cost and CDK
    commands (their modules, click options and rich) resident."""
    others = ["iotnotify.cli_cost", "iotnotify.cost", "iotnotify.cli_chat", "iotnotify.chat"]
    others += ["iotnotify.cdk_commands", "rich"]
    code = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from iotnotify.cli import cli\n"
        "for args in (['listen', '--help'], ['tray', '--help']):\n"
        "    assert CliRunner().invoke(cli, args).exit_code == 0, args\n"
        f"print(json.dumps(sorted(m for m in {others!r} if m in sys.modules)))\n"
    )
    answer = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert json.loads(answer.stdout) == []


def _state_file(tmp_path: Path, api_url: str) -> Path:
    from iotnotify.state_file import LocalState

    path = tmp_path / "local.json"
    LocalState(
        region="us-east-1",
        app="iotnotify",
        stage="local",
        apiUrl=api_url,
        webUrl="http://127.0.0.1:1/",
        iotWsUrl="ws://127.0.0.1:2/mqtt",
        iotWssUrl="wss://127.0.0.1:3/mqtt",
        iotDataUrl="http://127.0.0.1:2",
        caFile="",
        awsEndpointUrl="http://127.0.0.1:4",
        userPoolId="us-east-1_pool",
        userPoolClientId="client-id",
        users=[{"name": "alice", "username": "alice@example.com", "password": "pw-a", "sub": "a"}],
        publisher={},
    ).write(path)
    return path


def test_a_user_who_signed_up_on_the_page_signs_in_by_e_mail_with_a_state_file(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Review of issue 13: `iotnotify rooms --user carol@example.com` (a user who
    # signed up on the local page) said "no demo user" although --help offers
    # "Sign-in e-mail, or a demo user name with a state file".
    from iotnotify.cli_client import _target

    # The state file is only read while something listens at its API URL.
    api = socket.create_server(("127.0.0.1", 0))
    api_url = f"http://127.0.0.1:{api.getsockname()[1]}"
    request.addfinalizer(api.close)
    options: dict[str, Any] = {
        "api_url": None,
        "client_id": None,
        "region": None,
        "cognito_endpoint": None,
        "state_file": _state_file(tmp_path, api_url),
        "ca_file": None,
        "need_password": True,
    }
    target = _target(user="carol@example.com", password="pw-c", **options)
    assert (target.username, target.password) == ("carol@example.com", "pw-c")
    assert (target.api_url, target.cognito_endpoint) == (api_url, "http://127.0.0.1:4")
    assert _target(user="alice", password=None, **options).password == "pw-a"
    with pytest.raises(click.ClickException, match="no demo user 'carl'"):
        _target(user="carl", password=None, **options)


def test_a_chat_line_cannot_forge_another_line_or_drive_the_terminal() -> None:
    # Review of issue 13: text is the sender's own; printed raw, a newline made
    # "2026-... bob: send me your password" look like bob's line, and escape
    # sequences (OSC window title, screen clear) reached the reader's terminal.
    from iotnotify.cli_chat import _line
    from iotnotify.contract import ChatMessage

    text = "ok\n2026-11-29T13:20:00.000Z bob: hi\x1b]0;pwned\x07\x1b[2J \u202eevil\r\tü 🎲"
    message = ChatMessage.create(room="lobby", sender="a-1", text=text)
    shown = _line(message, {"a-1": "alice", "b-2": "bob"})
    lines = shown.split("\n")
    assert lines[0] == f"{message.ts} alice: ok"
    assert all(line.startswith("    ") for line in lines[1:])
    assert not any(ch not in "\n\t" and unicodedata.category(ch) == "Cc" for ch in shown)
    assert "\u202e" not in shown
    assert "\\x1b]0;pwned\\x07\\x1b[2J \\u202eevil\\r\tü 🎲" in shown


@pytest.mark.parametrize(
    ("typo", "meant"), [("lsiten", "listen"), ("tary", "tray"), ("chta", "chat")]
)
def test_a_mistyped_command_suggests_the_lazily_loaded_command_meant(typo: str, meant: str) -> None:
    # click suggests from the commands registered up front only (local, send);
    # listen, tray, chat... are loaded on first use and must be suggested too.
    result = CliRunner().invoke(cli, [typo])
    assert result.exit_code == 2
    assert f"No such command '{typo}'" in result.output
    # the closest first (click named only 'send' for "lsiten")
    assert f"Did you mean '{meant}'" in result.output


def test_an_unknown_command_far_from_any_suggests_nothing() -> None:
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command 'frobnicate'" in result.output
    assert "Did you mean" not in result.output


def test_local_refuses_a_port_whose_next_three_do_not_exist() -> None:
    # --port P uses P..P+3: 65533 and above would overflow bind() (a traceback)
    result = CliRunner().invoke(cli, ["local", "--port", "65534"])
    assert result.exit_code == 2
    assert "--port" in result.output
    assert "65532" in result.output
    assert "Traceback" not in result.output


def _run_without(modules: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    """``iotnotify *args`` in a fresh interpreter where importing ``modules`` fails,
    as on the core install (no extras)."""
    code = (
        "import sys\n"
        f"for name in {modules!r}:\n"
        "    sys.modules[name] = None\n"
        f"sys.argv = ['iotnotify', *{list(args)!r}]\n"
        "from iotnotify.cli import cli\n"
        "cli()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_cost_on_the_core_install_prints_its_table_without_rich() -> None:
    done = _run_without(["rich"], "cost", "--users", "1000", "--per-day", "10")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # a header, a rule under it and the rows in aligned columns
    header = next(i for i, line in enumerate(lines) if line.startswith("service "))
    assert set(lines[header + 1]) == {"-", " "}
    total = next(line for line in lines if line.startswith("total "))
    assert len(total) == len(lines[header + 1])  # the USD column ends where the rule does
    assert "connection-minutes" in done.stdout


@pytest.mark.parametrize("command", ["deploy", "destroy", "synth"])
@pytest.mark.parametrize("missing", ["aws_cdk", "constructs", "cdk_nag"])
def test_cdk_commands_on_the_core_install_name_the_infra_extra(
    command: str, missing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CDK app runs in this interpreter: without the [infra] extra it used
    # to fail inside `npx cdk` with app.py's ModuleNotFoundError traceback.
    from iotnotify import cdk_commands

    ran: list[list[str]] = []

    def fake_run(argv: list[str], *, cwd: Path, env: object = None) -> int:
        ran.append(list(argv))
        return 0

    monkeypatch.setitem(sys.modules, missing, None)  # importing it fails, as when not installed
    monkeypatch.setattr(cdk_commands, "run_cdk", fake_run)
    monkeypatch.setattr(cdk_commands, "_check_tools", lambda infra: "npx")
    result = CliRunner().invoke(cli, [command, "--stage", "dev"])
    assert result.exit_code == 1, result.output
    assert f"({missing} not installed)" in result.output
    assert "pip install 'iotnotify[infra]'" in result.output
    assert ran == []  # npx cdk never started


def test_send_on_the_core_install_names_the_aws_extra() -> None:
    done = _run_without(["boto3", "botocore"], "send", "--user", "alice", "--title", "t", "b")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "pip install 'iotnotify[aws]'" in done.stderr


@pytest.mark.parametrize(
    ("missing", "options", "named"),
    [
        (["pystray"], ["--no-keyring"], "pystray"),
        (["keyring"], [], "keyring"),
        (["jeepney", "desktop_notifier"], ["--no-keyring"], "not installed"),
    ],
)
def test_tray_on_the_core_install_names_the_tray_extra(
    missing: list[str], options: list[str], named: str, tmp_path: Path
) -> None:
    # Not "no desktop session" or a keyring helper's traceback: the extra is missing.
    done = _run_without(
        missing, "tray", "--settings", str(tmp_path / "tray.json"), "--user", "alice", *options
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "pip install 'iotnotify[tray]'" in done.stderr
    assert named in done.stderr


@pytest.mark.parametrize("value", ["-5", "65536"])
def test_listen_refuses_a_keepalive_mqtt_cannot_carry(value: str) -> None:
    result = CliRunner().invoke(cli, ["listen", "--user", "alice", "--keepalive", value])
    assert result.exit_code == 2
    assert "--keepalive" in result.output
    assert "0<=x<=65535" in result.output


def test_rooms_with_no_room_to_list_says_so_and_how_to_make_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import iotnotify.cli_chat as cli_chat

    class NoRooms:
        def rooms(self) -> Iterator[dict[str, object]]:
            return iter(())

    monkeypatch.setattr(cli_chat, "_connect", lambda options: (None, NoRooms()))
    result = CliRunner().invoke(cli, ["rooms", "--user", "alice"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no rooms you can see yet; create one: iotnotify rooms create NAME" in result.stderr


def test_send_says_a_user_it_failed_to_reach_live_still_has_it_in_the_inbox(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a fan-out whose live publish failed for one user after the inbox write
    import iotnotify.sending as sending
    from iotnotify.publisher import DeliveryResult

    class OnePublishFails:
        def __enter__(self) -> OnePublishFails:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def notify_many(self, users: list[str], **_: object) -> list[DeliveryResult]:
            return [
                DeliveryResult("a-1", ok=True, notification_id="01J", stored=True),
                DeliveryResult(
                    "b-2", ok=False, notification_id="01J", error="throttled", stored=True
                ),
                DeliveryResult("c-3", ok=False, notification_id="01J", error="inbox down"),
            ]

    monkeypatch.setattr(
        sending, "publisher_for_local", lambda _state: (OnePublishFails(), lambda user: user)
    )
    # When sending
    result = CliRunner().invoke(
        cli, ["send", "--user", "a-1", "--user", "b-2", "--user", "c-3", "--title", "t"]
    )
    # Then the one stored is said to be, the one not stored is not
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "iotnotify: error: not sent to b-2: throttled (stored in the inbox, not lost: "
        "catch-up from before it shows it; clients connected now did not get it live)",
        "iotnotify: error: not sent to c-3: inbox down",
    ]
    assert "sent 01J to 1 of 3 users" in result.stdout


@pytest.mark.parametrize("command", [["listen"], ["chat", "lobby"]])
@pytest.mark.parametrize("device", ["a/b#", "x" * 64, "caf\u00e9", ""])
def test_listen_refuses_a_device_suffix_no_client_id_can_hold_before_signing_in(
    tmp_path: Path, device: str, command: list[str]
) -> None:
    # It signed in, fetched a token, printed "connecting", then "stopped: ..."
    # and the same error again, with exit status 1 (chat: a traceback).
    result = CliRunner().invoke(
        cli,
        [*command, "--user", "alice", "--device", device, "--state-file", str(tmp_path / "none")],
    )
    assert result.exit_code == 2, result.output
    assert "--device" in result.output
    assert "client id suffix" in result.output
    assert "state file" not in result.output


@pytest.mark.parametrize(
    "option", [["--stage", "a/b"], ["--app", ""], ["--app", "a" * 65], ["--stage", "x y"]]
)
def test_local_refuses_an_app_or_stage_no_topic_can_hold_before_anything_starts(
    tmp_path: Path, option: list[str]
) -> None:
    # It created the data directory (with a lock file) and then failed with
    # status 1 from inside the stack's start.
    data = tmp_path / "data"
    state_file = str(tmp_path / "s.json")
    result = CliRunner().invoke(
        cli, ["local", "--port", "0", "--state-file", state_file, "--data-dir", str(data), *option]
    )
    assert result.exit_code == 2, result.output
    assert option[0] in result.output
    assert "expected 1 to 64 characters" in result.output
    assert not data.exists()


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--title", "caf\udce9"], "--title"),
        (["--title", "t", "caf\udce9 \udcff"], "BODY"),
    ],
)
def test_send_names_an_argument_that_is_not_utf8(args: list[str], names: str) -> None:
    # Bytes that are not UTF-8 reach Python as lone surrogates; the error was
    # "notification is not valid JSON: value contains a lone surrogate".
    result = CliRunner().invoke(cli, ["send", "--user", "a", *args])
    assert result.exit_code == 2, result.output
    assert names in result.output
    assert "not valid UTF-8" in result.output


def test_destroy_without_a_terminal_asks_for_yes_before_running_cdk(
    monkeypatch: pytest.MonkeyPatch, aws_env: None
) -> None:
    # In CI or a pipe, `iotnotify destroy --stage dev` ran the CDK (a dozen
    # seconds of synthesis) for CDK's "terminal (TTY) is not attached" refusal,
    # which does not say which option of ours confirms.
    from iotnotify import cdk_commands

    ran: list[list[str]] = []

    def fake_run(argv: list[str], *, cwd: Path, env: object = None) -> int:
        ran.append(list(argv))
        return 0

    monkeypatch.setattr(cdk_commands, "run_cdk", fake_run)
    monkeypatch.setattr(cdk_commands, "_check_tools", lambda infra: "npx")
    refused = CliRunner().invoke(cli, ["destroy", "--stage", "dev"], input="")
    assert refused.exit_code == 2, refused.output
    assert "--yes" in refused.output
    assert ran == []
    confirmed = CliRunner().invoke(cli, ["destroy", "--stage", "dev", "--yes"], input="")
    assert confirmed.exit_code == 0, confirmed.output
    assert "--force" in ran[0]


@pytest.mark.parametrize(
    "command",
    [
        ["listen", "--user", "alice", "--state-file"],
        ["send", "--user", "alice", "--title", "t", "--state-file"],
        ["rooms", "--user", "alice", "--state-file"],
        ["local", "--port", "0", "--state-file"],
        ["tray", "--no-keyring", "--settings"],
    ],
    ids=lambda command: command[0],
)
@pytest.mark.parametrize("kind", ["fifo", "stdin"])
def test_a_fifo_or_dev_stdin_as_a_file_option_is_refused_at_once(
    tmp_path: Path, command: list[str], kind: str
) -> None:
    # `--state-file some.fifo` (or /dev/stdin) blocked for ever reading it.
    if kind == "fifo":
        path = tmp_path / "local.json"
        os.mkfifo(path)
    else:
        path = Path("/dev/stdin")  # a pipe below: nobody writes to it
    iotnotify = Path(sys.executable).with_name("iotnotify")
    with subprocess.Popen(
        [str(iotnotify), *command, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,  # `local`, if it started, would write under here
    ) as proc:
        try:
            out, err = proc.communicate(timeout=60)  # a hang guard, not a speed check
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail(f"iotnotify {command[0]} blocked on {path}")
    assert proc.returncode == 2, (out, err)
    assert f"{path} is a FIFO (named pipe), not a regular file" in err
    assert "Traceback" not in err


def _into_a_closed_pipe(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``iotnotify ARGS | head -0``, deterministically: stdout is a pipe whose
    read end is closed before the command starts, so its first write fails."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [str(Path(sys.executable).with_name("iotnotify")), *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args",
    [
        ["cost"],
        ["cost", "--json"],
        ["--help"],
        ["--version"],
        ["cost", "--help"],
        ["rooms", "--help"],
    ],
    ids=" ".join,
)
def test_a_reader_that_leaves_ends_the_command_quietly(args: list[str]) -> None:
    # `iotnotify cost | head -0` exited 1 (click's EPIPE handling), which a
    # script under `set -o pipefail` takes for a failure of ours.
    done = _into_a_closed_pipe(*args)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_a_broken_pipe_that_is_not_stdout_is_still_an_error() -> None:
    # Only stdout's reader leaving is quiet: an EPIPE from elsewhere (a socket)
    # while stdout is fine keeps click's handling (status 1).
    script = (
        "import errno, sys\n"
        "from iotnotify.cli import cli\n"
        "@cli.command('boom')\n"
        "def boom():\n"
        "    raise BrokenPipeError(errno.EPIPE, 'a socket broke')\n"
        "sys.argv = ['iotnotify', 'boom']\n"
        "cli()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1, (done.stdout, done.stderr)


def test_ctrl_c_that_a_command_does_not_handle_is_one_line_and_status_130() -> None:
    # `iotnotify send` interrupted early printed click's "Aborted!" and
    # exited 1, which a script cannot tell from a failure of ours.
    script = (
        "import sys\n"
        "from iotnotify.cli import cli\n"
        "@cli.command('slow')\n"
        "def slow():\n"
        "    raise KeyboardInterrupt\n"
        "sys.argv = ['iotnotify', 'slow']\n"
        "cli()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 130, (done.stdout, done.stderr)
    assert done.stderr == "iotnotify: interrupted\n"
    assert done.stdout == ""


def test_output_that_cannot_be_written_is_one_error_line_and_status_1() -> None:
    # Given stdout on a full disk (/dev/full: every write fails with ENOSPC)
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [str(Path(sys.executable).with_name("iotnotify")), "cost"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    # Then the command fails as any other error does: one line, status 1
    # (it was a click/OSError traceback)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
    assert "No space left on device" in done.stderr


def test_a_closed_stdout_is_no_traceback() -> None:
    # Given `iotnotify cost >&-`: Python starts with sys.stdout None
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; os.close(1); os.execv(sys.argv[1], [sys.argv[1], 'cost'])",
            str(Path(sys.executable).with_name("iotnotify")),
        ],
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )
    # Then the output goes nowhere, as into /dev/null, without an
    # AttributeError traceback from flushing a stdout that does not exist
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr


_BLOCK_AN_IMPORT = """\
import os, sys, time

class _BlockOnce:
    # Stands in for a slow import: says where it is, then waits for Ctrl-C.
    def find_spec(self, name, path=None, target=None):
        if name == os.environ["IOTNOTIFY_TEST_BLOCKED_IMPORT"]:
            sys.meta_path.remove(self)
            sys.stderr.write("importing " + name + "\\n")
            sys.stderr.flush()
            time.sleep(60)
        return None

sys.meta_path.insert(0, _BlockOnce())
"""


@pytest.mark.parametrize(
    ("command", "module"),
    [
        (["tray"], "click"),
        (["listen", "--user", "alice"], "iotnotify.cli_output"),
        (["send", "--user", "alice", "--title", "t"], "iotnotify.errors"),
        (["tray", "--help"], "iotnotify.cli_client"),
    ],
    ids=["tray-click", "listen-cli_output", "send-errors", "tray-help-lazy-command"],
)
def test_ctrl_c_while_the_console_script_still_imports_is_one_line_and_130(
    tmp_path: Path, command: list[str], module: str
) -> None:
    # `iotnotify tray` interrupted within ~0.05 s of its start printed a
    # KeyboardInterrupt traceback: the console script imported iotnotify.cli
    # (click and the CLI's modules) before any of our code could handle it.
    import signal

    (tmp_path / "sitecustomize.py").write_text(_BLOCK_AN_IMPORT)
    script = Path(sys.executable).parent / "iotnotify"
    # Given the installed console script, held inside one of its first imports
    proc = subprocess.Popen(
        [str(script), *command],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": str(tmp_path),
            "IOTNOTIFY_TEST_BLOCKED_IMPORT": module,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline() == f"importing {module}\n"
        # When Ctrl-C comes (SIGINT, as the terminal sends it)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Then it is one line and 128 + SIGINT, no traceback
    assert err == "iotnotify: interrupted\n", err
    assert out == ""
    assert proc.returncode == 130
