"""Acceptance of ``iotnotify local``, driving the real command as a subprocess."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import queue
import re
import shlex
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import jwt
import moto
import pytest

from tests.integration.local.clients import MqttUser, api, sign_in
from tests.integration.local.conftest import four_free_ports, start_stack
from tests.local_process import IOTNOTIFY, LocalProcess, start_local

README = Path(__file__).resolve().parents[3] / "README.md"


def quickstart_send_command() -> list[str]:
    """The `iotnotify send` line of the README quickstart, as argv."""
    text = README.read_text()
    block = text.split("<!-- quickstart -->", 2)[1]
    line = next(ln for ln in block.splitlines() if "iotnotify send" in ln)
    argv = shlex.split(line.split("#", 1)[0])
    return ["iotnotify", *argv[1:]] if argv[0].endswith("/iotnotify") else argv


def connect(stack: LocalProcess, name: str) -> tuple[MqttUser, dict[str, Any]]:
    token_id = sign_in(stack.state, stack.user(name))
    status, token = api(stack.state, "GET", "/token", token=token_id)
    assert status == 200, token
    client = MqttUser(token, suffix=f"{name}-test")
    assert client.connected.wait(10), f"{name} could not connect"
    assert [str(r) for r in client.connect_result] == ["Success"]
    for topic in token["topics"]:
        assert client.subscribe(topic) == [0]
    return client, token


def test_alice_receives_what_send_sent_and_bob_sees_nothing(local_stack: LocalProcess) -> None:
    alice, alice_token = connect(local_stack, "alice")
    bob, _ = connect(local_stack, "bob")
    try:
        argv = quickstart_send_command()
        assert argv[:2] == ["iotnotify", "send"]
        started = time.monotonic()
        subprocess.run(
            [IOTNOTIFY, *argv[1:], "--state-file", str(local_stack.state_file)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        topic, payload = alice.messages.get(timeout=2 + (time.monotonic() - started))
        assert topic == alice_token["topics"][0]
        note = json.loads(payload)
        assert note["title"] == argv[argv.index("--title") + 1]
        assert note["v"] == 1
        # bob asking for alice's topic is disconnected (AWS, MQTT 3.1.1) and
        # never receives alice's notification.
        bob.client.subscribe(alice_token["topics"][0], qos=0)
        assert bob.disconnected.wait(timeout=5)
        assert bob.suback.empty()
        with pytest.raises(queue.Empty):
            bob.messages.get(timeout=1.0)
    finally:
        alice.close()
        bob.close()


def test_inbox_returns_what_alice_missed_while_disconnected(local_stack: LocalProcess) -> None:
    token_id = sign_in(local_stack.state, local_stack.user("alice"))
    status, before = api(local_stack.state, "GET", "/notifications?limit=100", token=token_id)
    assert status == 200
    last_seen = before["notifications"][-1]["id"] if before["notifications"] else None
    sent = []
    for n in range(3):
        out = subprocess.run(
            [
                IOTNOTIFY,
                "send",
                "--user",
                "alice",
                "--title",
                f"missed {n}",
                "--json",
                "--state-file",
                str(local_stack.state_file),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        sent.append(json.loads(out.stdout)["id"])
    query = f"/notifications?since={last_seen}" if last_seen else "/notifications"
    status, page = api(local_stack.state, "GET", query, token=token_id)
    assert status == 200
    assert [n["id"] for n in page["notifications"]][-3:] == sent
    assert [n["title"] for n in page["notifications"]][-3:] == ["missed 0", "missed 1", "missed 2"]


def receive_titles(client: MqttUser, wanted: set[str], timeout: float) -> set[str]:
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while not wanted <= seen and time.monotonic() < deadline:
        try:
            _, payload = client.messages.get(timeout=max(0.05, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.add(json.loads(payload)["title"])
    return seen


def dlq_count(state: dict[str, Any]) -> int:
    sqs = boto3.client(
        "sqs",
        region_name=state["region"],
        endpoint_url=state["awsEndpointUrl"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    attrs = sqs.get_queue_attributes(
        QueueUrl=state["extra"]["taskDlqUrl"], AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def test_tasks_finish_and_a_poisoned_one_ends_in_the_dlq(local_stack: LocalProcess) -> None:
    alice, _ = connect(local_stack, "alice")
    try:
        token_id = sign_in(local_stack.state, local_stack.user("alice"))
        for body in (
            {"name": "render"},
            {"name": "poison", "payload": {"fail": True}},
            {"name": "export"},
        ):
            status, answer = api(local_stack.state, "POST", "/task", token=token_id, body=body)
            assert status == 202, answer
        titles = receive_titles(alice, {"Finished task: render", "Finished task: export"}, 15)
        assert {"Finished task: render", "Finished task: export"} <= titles
        assert "Finished task: poison" not in titles
        deadline = time.monotonic() + 30
        while dlq_count(local_stack.state) < 1 and time.monotonic() < deadline:
            time.sleep(0.5)  # SQS redrive happens on the queue's clock, not an event we get
        assert dlq_count(local_stack.state) == 1
    finally:
        alice.close()


def moto_private_jwk() -> dict[str, Any]:
    path = Path(moto.__file__).parent / "cognitoidp" / "resources" / "jwks-private.json.gz"
    document = json.loads(gzip.decompress(path.read_bytes()))
    return dict(document["keys"][0] if "keys" in document else document)


def test_tampered_and_expired_id_tokens_get_401(local_stack: LocalProcess) -> None:
    good = sign_in(local_stack.state, local_stack.user("alice"))
    header, _payload, signature = good.split(".")
    claims = jwt.decode(good, options={"verify_signature": False})
    forged_claims = {**claims, "sub": local_stack.user("bob")["sub"]}
    forged_payload = jwt.utils.base64url_encode(json.dumps(forged_claims).encode()).decode()
    tampered = f"{header}.{forged_payload}.{signature}"
    key = jwt.PyJWK(moto_private_jwk())
    expired = jwt.encode(
        {**claims, "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600},
        key.key,
        algorithm="RS256",
        headers={"kid": jwt.get_unverified_header(good)["kid"]},
    )
    for bad in (tampered, expired, "not-a-jwt", ""):
        status, body = api(local_stack.state, "GET", "/token", token=bad or None)
        assert status == 401, bad
        assert body["error"] == "unauthorized"
    assert api(local_stack.state, "GET", "/token", token=good)[0] == 200


def test_starting_twice_on_the_same_ports_gives_a_clear_error(tmp_path: Path) -> None:
    # Given a stack on four free ports in a row (as the default 8700-8703 are)
    base = str(four_free_ports())
    first = start_stack(tmp_path / "first.json", "--port", base)
    try:
        # When a second one is started on the same ports
        second = subprocess.run(
            [IOTNOTIFY, "local", "--port", base, "--state-file", str(tmp_path / "second.json")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        # Then it says so in one line and exits 2, and the first keeps running
        assert second.returncode == 2
        assert "already in use" in second.stderr
        assert "Traceback" not in second.stderr + second.stdout
        assert first.process.poll() is None
    finally:
        output = first.stop()
    assert first.process.returncode == 0, output
    assert not (tmp_path / "first.json").exists()
    assert re.search(r"stopping", output)


def _gone(pid: int, within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)  # another process's exit: polling is the only signal
    return False


def test_the_emulator_serves_from_its_own_process_and_honours_iam_changes_at_once(
    local_stack: LocalProcess,
) -> None:
    # Given the stack's emulator, in a process apart from iotnotify local's
    state = local_stack.state
    stats_url = state["extra"]["emulatorStatsUrl"]
    with urllib.request.urlopen(stats_url, timeout=10) as answer:
        emulator_pid = json.load(answer)["pid"]
    assert emulator_pid == state["extra"]["emulatorPid"] != local_stack.process.pid
    # And an IAM user (in moto) allowed to publish, whose key the emulator has honoured
    iam = boto3.client(
        "iam",
        endpoint_url=state["awsEndpointUrl"],
        region_name=state["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    user = f"revoked-{time.monotonic_ns()}"
    iam.create_user(UserName=user)
    iam.put_user_policy(
        UserName=user,
        PolicyName="publish",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "iot:Publish", "Resource": "*"}],
            }
        ),
    )
    key = iam.create_access_key(UserName=user)["AccessKey"]
    iot_data = boto3.client(
        "iot-data",
        endpoint_url=state["iotDataUrl"],
        region_name=state["region"],
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )
    topic = f"{state['app']}/{state['stage']}/broadcast"
    assert (
        iot_data.publish(topic=topic, qos=0, payload=b"{}")["ResponseMetadata"]["HTTPStatusCode"]
        == 200
    )
    # When the key is deactivated in IAM
    iam.update_access_key(UserName=user, AccessKeyId=key["AccessKeyId"], Status="Inactive")
    # Then the very next publish with it is refused
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        iot_data.publish(topic=topic, qos=0, payload=b"{}")
    assert refused.value.response["Error"]["Code"] == "UnauthorizedException"


def test_ctrl_c_and_kill_leave_no_emulator_process_behind(tmp_path: Path) -> None:
    for how in ("ctrl-c", "kill"):
        # Given a running stack and its emulator process
        stack = start_stack(tmp_path / f"{how}.json", "--port", "0")
        emulator_pid = int(stack.state["extra"]["emulatorPid"])
        assert not _gone(emulator_pid, within=0)
        # When it is stopped with Ctrl-C, or killed by pid with no chance to clean up
        if how == "kill":
            stack.process.kill()
            stack.process.wait(timeout=30)
        stack.stop()
        # Then the emulator's process is gone too
        assert _gone(emulator_pid), how


def test_a_dead_emulator_process_stops_the_stack_and_says_so(tmp_path: Path) -> None:
    # Given a running stack
    state_file = tmp_path / "emulator-dies.json"
    stack = start_stack(state_file, "--port", "0")
    try:
        emulator_pid = int(stack.state["extra"]["emulatorPid"])
        # When its emulator's process dies (the OOM killer, kill -9 by pid)
        os.kill(emulator_pid, signal.SIGKILL)
        # Then iotnotify local stops too, with an error naming it, and leaves
        # no state file pointing clients at endpoints that are gone
        assert stack.process.wait(timeout=60) == 1
    finally:
        output = stack.stop()
    assert "emulator" in output
    assert "exited unexpectedly" in output
    assert not state_file.exists()


def _descendants(root: int) -> dict[int, bytes]:
    """Every live process below ``root`` (children, theirs, ...): pid -> cmdline."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # exited meanwhile
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found = {root}
    while True:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        if not more:
            break
        found |= more
    cmdlines: dict[int, bytes] = {}
    for pid in found - {root}:
        try:
            cmdlines[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
    return cmdlines


@pytest.mark.parametrize(
    ("signum", "said"),
    [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated")],
    ids=["ctrl-c", "sigterm"],
)
def test_ctrl_c_during_start_up_stops_it_there_and_leaves_nothing(
    tmp_path: Path, signum: int, said: str
) -> None:
    # Ctrl-C (or a service manager's SIGTERM) while `iotnotify local` started
    # went unheard until "ready.".
    state_file = tmp_path / "interrupted.json"
    stack = start_local(state_file, "--port", "0")
    children: dict[int, bytes] = {}
    try:
        # Given a start-up under way: the emulator's process has been spawned
        while stack.process.poll() is None and not any(
            b"spawn_main" in cmdline for cmdline in children.values()
        ):
            children = _descendants(stack.process.pid)
            time.sleep(0.02)  # another process's start: polling is the only signal
        assert stack.process.poll() is None, stack.output()
        # When the user presses Ctrl-C (or the process is sent SIGTERM)
        stack.process.send_signal(signum)
        # Then it stops there, before "ready.", with status 128 + the signal and one line
        status = stack.process.wait(timeout=60)  # a hang guard, not a speed check
    finally:
        output = stack.stop()
        leftovers = [pid for pid in children if not _gone(pid, within=10)]
        for pid in leftovers:  # a failed run must not leave them running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert status == 128 + signum, output
    assert "ready." not in output
    assert f"{said} while starting; stopped everything it had started." in output
    assert "Traceback" not in output
    # And every process it had started is gone (the emulator, multiprocessing's
    # resource tracker), and no state file points clients at nothing
    assert leftovers == [], {pid: children[pid] for pid in leftovers}
    assert not state_file.exists()
