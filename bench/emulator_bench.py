"""The emulator against mosquitto, as issue 3's benchmark section asks, in one command.

Run: ``.venv/bin/python bench/emulator_bench.py`` (``--quick`` for a small run).

Three kinds of process, so no broker shares an event loop (or a core's
queue) with its clients:

* the broker under test: the emulator (``bench/bench_server.py``: ws:// only,
  SigV4 and IAM on, credentials from a key file) or mosquitto (Debian
  package, WebSocket listener, anonymous);
* the load generator (``bench/bench_loadgen.py``), the same code for both;
* this orchestrator, which starts and stops them, reads the brokers' RSS and
  CPU time from /proc, and prints the figures.

Measured ``--repeat`` times (3), the two brokers alternating, each run on a
freshly started broker; the summary rows and the verdicts are column medians:

1. fan-out: 1 publisher, ``--subscribers`` WebSocket subscribers on distinct
   topics (``iotnotify/bench/user/u{i}/notifications``), ``--messages``
   64-byte QoS 0 messages round-robin; delivered messages/s and
   publish-to-delivery latency p50/p99;
2. idle: ``--idle`` WebSocket connections, CONNECT + SUBSCRIBE each (SigV4
   presigned URLs, one role session per user, for the emulator); RSS growth
   per connection and connects+subscribes per second;
3. fixed load (issue 11 section 4): ``--fixed-rate`` (10,000) msg/s offered
   for ``--fixed-duration`` seconds by ``--fixed-publishers`` (400)
   connections, at most 90/s each (AWS allows 100), to ``--subscribers``
   WebSocket subscribers on distinct topics, open loop; delivered msg/s and
   latency p50/p90/p99/p99.9 from each message's scheduled send time. Here
   the emulator is the one ``iotnotify local`` runs (``--port 0``, in its
   own process, with the stack's moto, API, SQS poller and autosave in the
   parent): subscribers are moto STS role sessions with the token Lambda's
   session policy, the publishers an IAM user with the publisher policy plus
   ``iot:Connect``, all checked by the emulator as on AWS. The emulator row
   is followed by its event loop's stalls over 5 ms in the measured window
   (``/_emulator/stats`` -> ``loop``), its CPU per message and the CPU of
   ``iotnotify local``'s own process.
4. the same fixed load with each broker's threads real-time (``SCHED_FIFO``
   1, ``benchlib.make_realtime``), so that no other task on the machine can
   hold a broker's event loop off its CPU. Informative, no target: it
   tells the broker's own latency from the machine's. On 2 vCPUs a nice -10
   thread of the sandbox runs about 11 ms a second and sets the p99 of
   whichever broker's CPU it lands on (docs/emulator-benchmarks.md, "Who
   takes the emulator's CPU"). Needs ``CAP_SYS_NICE``; without it this part
   reports NOT MEASURED.

About mosquitto's WebSocket listener: Debian's mosquitto 2.0.11 has one
(libwebsockets 4.1), but a configuration whose only listeners are WebSocket
ones exits with "Error: Unable to start any listening sockets, exiting."
(``listeners__start`` only counts its own MQTT sockets; libwebsockets owns the
WebSocket one). A plain MQTT listener beside it, never used, lets it start;
``socket_domain ipv4`` makes libwebsockets bind 127.0.0.1 rather than every
address. Were the WebSocket listener still to fail, the bench falls back to
plain MQTT/TCP and says so on every mosquitto row.

The publisher keeps at most ``--window`` (256) messages in flight: the
brokers are saturated while latency stays a property of the broker, not of
a backlog the publisher piled up. mosquitto's rate grows with the window (its
libwebsockets integration is latency-bound, not CPU-bound); the emulator's,
CPU-bound on one core, does not.

Other work on the machine skews everything on 2 cores: each row shows the CPU
used by the broker, the load generator and everything else ("other"), the
bench waits (``--quiet-wait``, bounded) for a quiet machine before each run;
a run during which other work used more than ``--max-other`` cores (0.2) is
set aside and measured again, up to ``--retries`` (2) more times, whichever
the broker (the set-aside runs are listed at the end, and a run still
disturbed at its last attempt is kept); and it warns when the runs were
disturbed anyway.

Bounded: every run is aborted after ``--phase-timeout`` seconds; every
process started here is stopped (by pid) at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import boto3
from benchlib import (
    PUBLISHER_CLIENT_ID,
    BenchKey,
    KeyFile,
    machine_busy_seconds,
    make_realtime,
    raise_fd_limit,
    rss_kb,
)

from iotnotify.contract import TopicScheme, iot_arn
from iotnotify.naming import ResourceNames
from iotnotify.policies import compact_json, publisher_policy, subscriber_session_policy
from iotnotify.state_file import LocalState

HERE: Final = Path(__file__).resolve().parent
TARGET_RATIO: Final = 0.5
TARGET_KB_PER_CONNECTION: Final = 20.0
TARGET_CONNECTS_PER_SECOND: Final = 1000.0
TARGET_FIXED_P99_RATIO: Final = 2.0
TARGET_FIXED_P50_MS: Final = 1.0


class BenchError(Exception):
    """A phase could not run; the message says why."""


@dataclass
class Broker:
    name: str
    pid: int
    url: str
    transport: str  # "ws" or "tcp"
    keys: Path | None  # SigV4-sign with these, or anonymous
    log: Path | None = None
    stack_pid: int | None = None  # iotnotify local's own process, when the emulator is its child

    @property
    def label(self) -> str:
        return self.name if self.transport == "ws" else f"{self.name} (TCP!)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[Any]) -> None:
    """Stop one child we started: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def _child(command: list[str], **kwargs: Any) -> Iterator[subprocess.Popen[Any]]:
    process = subprocess.Popen(command, **kwargs)
    try:
        yield process
    finally:
        _stop(process)


def _python(script: str) -> list[str]:
    return [sys.executable, str(HERE / script)]


@contextmanager
def emulator(keys: Path, work: Path) -> Iterator[Broker]:
    info = work / f"emulator-{time.monotonic_ns()}.json"
    log = work / "emulator.log"
    with (
        log.open("ab") as sink,
        _child(
            [*_python("bench_server.py"), "--keys", str(keys), "--info-file", str(info)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        ) as process,
    ):
        deadline = time.monotonic() + 60
        while not info.exists():
            if process.poll() is not None:
                raise BenchError(f"the emulator exited at start-up: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise BenchError("the emulator did not start within 60 s")
            time.sleep(0.05)  # a file written by another process: polling is the only signal
        data = json.loads(info.read_text())
        yield Broker("emulator", data["pid"], data["ws_url"], "ws", keys, log)


def _wait_for_file(path: Path, process: subprocess.Popen[Any], what: str, log: Path) -> None:
    deadline = time.monotonic() + 180
    while not path.exists():
        if process.poll() is not None:
            raise BenchError(f"{what} exited at start-up: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise BenchError(f"{what} did not start within 180 s")
        time.sleep(0.1)  # a file written by another process: polling is the only signal


def _mint_local_keys(state: LocalState, subscribers: int, keys: Path) -> None:
    """Role sessions as ``GET /token`` mints them, and one MQTT publisher user, in moto."""
    admin = boto3.session.Session(
        region_name=state.region, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    iam = admin.client("iam", endpoint_url=state.awsEndpointUrl)
    sts = admin.client("sts", endpoint_url=state.awsEndpointUrl)
    account = sts.get_caller_identity()["Account"]
    names = ResourceNames(state.app, state.stage, state.stage)
    scheme = TopicScheme(state.app, state.stage)
    # The emulator honours a role session only if the role's trust policy
    # trusts its AssumeRole caller (the stack's subscriber role trusts only
    # the token-vending function). The bench vends like it, as its own IAM
    # user, on a role with the same ceiling that trusts the account.
    ceiling = iam.get_role_policy(RoleName=names.subscriber_role, PolicyName="ceiling")
    role_name = f"bench-subscriber-{time.monotonic_ns()}"
    role_arn = iam.create_role(
        RoleName=role_name,
        AssumeRolePolicyDocument=compact_json(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    document = ceiling["PolicyDocument"]
    iam.put_role_policy(
        RoleName=role_name,
        PolicyName="ceiling",
        PolicyDocument=document if isinstance(document, str) else compact_json(document),
    )
    vendor = f"bench-vendor-{time.monotonic_ns()}"
    iam.create_user(UserName=vendor)
    iam.put_user_policy(
        UserName=vendor,
        PolicyName="assume",
        PolicyDocument=compact_json(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role_arn}
                ],
            }
        ),
    )
    vendor_key = iam.create_access_key(UserName=vendor)["AccessKey"]
    # Every IAM write first, as `iotnotify local` makes them at start-up and
    # `GET /token` mints sessions afterwards: an IAM write makes the emulator
    # process drop every credential it holds (moto_credentials.count_iam_changes),
    # the sessions pushed to it as they were issued included, and the connect
    # storm would then measure a lookup per session that the usual order never makes.
    user = "bench-mqtt-publisher"
    iam.create_user(UserName=user)
    connect = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": iot_arn(state.region, account, "client", f"{PUBLISHER_CLIENT_ID}-*"),
            }
        ],
    }
    for name, document in (
        ("publish", publisher_policy(scheme, region=state.region, account=account)),
        ("connect", connect),
    ):
        iam.put_user_policy(UserName=user, PolicyName=name, PolicyDocument=compact_json(document))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    publisher = BenchKey(key["AccessKeyId"], key["SecretAccessKey"], None)
    sts = boto3.session.Session(
        region_name=state.region,
        aws_access_key_id=vendor_key["AccessKeyId"],
        aws_secret_access_key=vendor_key["SecretAccessKey"],
    ).client("sts", endpoint_url=state.awsEndpointUrl)
    sessions = []
    for index in range(subscribers):
        policy = subscriber_session_policy(
            scheme, f"u{index}", region=state.region, account=account
        )
        answer = sts.assume_role(
            RoleArn=role_arn, RoleSessionName=f"u{index}", Policy=compact_json(policy)
        )["Credentials"]
        sessions.append(
            BenchKey(answer["AccessKeyId"], answer["SecretAccessKey"], answer["SessionToken"])
        )
    KeyFile(publisher=publisher, subscribers=tuple(sessions)).write(keys)


@contextmanager
def local_emulator(subscribers: int, work: Path) -> Iterator[Broker]:
    """The emulator as ``iotnotify local`` runs it, with bench credentials minted in its moto."""
    tag = time.monotonic_ns()
    state_file = work / f"local-{tag}.json"
    log = work / "local.log"
    keys = work / f"keys-local-{tag}.json"
    command = [sys.executable, "-c", "from iotnotify.cli import main; main()", "local"]
    command += ["--port", "0", "--state-file", str(state_file)]
    command += ["--data-dir", str(work / f"data-{tag}")]  # a fresh stack every run
    with (
        log.open("ab") as sink,
        _child(command, stdout=sink, stderr=subprocess.STDOUT) as process,
    ):
        _wait_for_file(state_file, process, "iotnotify local", log)
        state = LocalState.read(state_file)
        _mint_local_keys(state, subscribers, keys)
        stats_url = state.iotWsUrl.replace("ws://", "http://").replace("/mqtt", "/_emulator/stats")
        with urllib.request.urlopen(stats_url, timeout=30) as response:
            # The emulator says which process serves it (iotnotify local may run it apart).
            pid = int(json.load(response).get("pid", process.pid))
        stack_pid = process.pid if pid != process.pid else None
        yield Broker("emulator", pid, state.iotWsUrl, "ws", keys, log, stack_pid)


def ensure_mosquitto() -> str | None:
    """The mosquitto binary, installed with apt-get when missing and we are root."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print("mosquitto is not installed and cannot be installed here (needs root and apt-get):")
        print("  apt-get update && apt-get install -y mosquitto")
        return None
    print("mosquitto missing: apt-get install -y mosquitto ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(
        "apt-get update -qq && apt-get install -y -qq mosquitto",
        shell=True,
        check=False,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        timeout=900,
    )
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if result.returncode != 0 or not found:
        print("apt-get install mosquitto failed; mosquitto rows are skipped")
        return None
    return found


def _wait_port(port: int, process: subprocess.Popen[Any], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)  # a foreign process: its port is the only signal
    return False


def _log_tail(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "(empty log)"


@contextmanager
def mosquitto(binary: str, work: Path) -> Iterator[Broker]:
    """mosquitto with its WebSocket listener; plain MQTT/TCP only if that cannot start."""
    mqtt_port, ws_port = _free_port(), _free_port()
    conf = work / "mosquitto.conf"
    log = work / "mosquitto.log"
    common = "allow_anonymous true\nmax_queued_messages 100000\npersistence false\n"
    conf.write_text(
        # The plain listener is there only so that mosquitto 2.0 starts at all
        # (see the module docstring); the bench never connects to it.
        f"listener {mqtt_port} 127.0.0.1\n"
        f"listener {ws_port} 127.0.0.1\nprotocol websockets\nsocket_domain ipv4\n" + common
    )
    with ExitStack() as stack:
        sink = stack.enter_context(log.open("wb"))
        command = [binary, "-c", str(conf), "-v"]
        process = stack.enter_context(_child(command, stdout=sink, stderr=subprocess.STDOUT))
        if _wait_port(ws_port, process):
            yield Broker("mosquitto", process.pid, f"ws://127.0.0.1:{ws_port}/mqtt", "ws", None)
            return
        reason = _log_tail(log)
        _stop(process)
        print(f"mosquitto's WebSocket listener did not start: {reason!r}; falling back to TCP")
        conf.write_text(f"listener {mqtt_port} 127.0.0.1\n" + common)
        process = stack.enter_context(_child(command, stdout=sink, stderr=subprocess.STDOUT))
        if not _wait_port(mqtt_port, process):
            raise BenchError(f"mosquitto did not start: {_log_tail(log)!r}")
        yield Broker("mosquitto", process.pid, f"tcp://127.0.0.1:{mqtt_port}", "tcp", None)


def _loadgen(broker: Broker, mode: str, *options: str) -> list[str]:
    command = [*_python("bench_loadgen.py"), mode, "--url", broker.url]
    command += ["--transport", broker.transport, "--broker-pid", str(broker.pid)]
    if broker.keys is not None:
        command += ["--keys", str(broker.keys)]
    return command + list(options)


def run_fanout(broker: Broker, args: argparse.Namespace) -> dict[str, Any]:
    options = ["--subscribers", str(args.subscribers), "--messages", str(args.messages)]
    options += ["--size", str(args.size), "--window", str(args.window)]
    try:
        done = subprocess.run(
            _loadgen(broker, "fanout", *options),
            capture_output=True,
            text=True,
            timeout=args.phase_timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"fan-out against {broker.name} ran over {args.phase_timeout} s") from exc
    if done.returncode != 0:
        raise BenchError(f"load generator failed against {broker.name}: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if "error" in result:
        raise BenchError(f"fan-out against {broker.name}: {result['error']}")
    return result


def run_fixed(
    broker: Broker, args: argparse.Namespace, *, realtime: bool = False
) -> dict[str, Any]:
    """One fixed-load run against ``broker``; with ``realtime``, every thread
    of the broker's process runs ``SCHED_FIFO`` 1 first (raises
    :class:`BenchError` when that is not permitted)."""
    if realtime:
        try:
            make_realtime(broker.pid)
        except PermissionError as exc:
            raise BenchError(
                "real-time scheduling is not permitted here (needs CAP_SYS_NICE or an "
                f"RLIMIT_RTPRIO of 1): {exc}"
            ) from exc
    options = ["--subscribers", str(args.subscribers), "--publishers", str(args.fixed_publishers)]
    options += ["--rate", str(args.fixed_rate), "--duration", str(args.fixed_duration)]
    # Unmeasured warm-up: `iotnotify local` turns each of the 1,400 CONNECTs
    # into a presence event (topic rule -> presence Lambda -> DynamoDB in
    # moto), and those writes keep the stack's process busy for seconds
    # after a connect storm (a core the emulator's process would otherwise
    # have); the fixed load measures the steady state.
    options += ["--warmup", str(args.fixed_warmup)]
    options += [
        "--size",
        str(args.size),
        "--stage",
        "local" if broker.name == "emulator" else "bench",
    ]
    if broker.name == "emulator":
        stats_url = broker.url.replace("ws://", "http://").replace("/mqtt", "/_emulator/stats")
        options += ["--stats-url", stats_url]
    if broker.stack_pid:
        options += ["--stack-pid", str(broker.stack_pid)]
    if args.dump_deliveries is not None:
        args.dump_deliveries.mkdir(parents=True, exist_ok=True)
        dump = args.dump_deliveries / f"fixed-{broker.name}-{time.strftime('%H%M%S')}.json"
        options += ["--dump", str(dump)]
    try:
        done = subprocess.run(
            _loadgen(broker, "fixed", *options),
            capture_output=True,
            text=True,
            timeout=args.phase_timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(
            f"fixed load against {broker.name} ran over {args.phase_timeout} s"
        ) from exc
    if done.returncode != 0:
        raise BenchError(f"load generator failed against {broker.name}: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if "error" in result:
        raise BenchError(f"fixed load against {broker.name}: {result['error']}")
    return result


def _read_json_line(stream: IO[str], process: subprocess.Popen[str], timeout: float) -> Any:
    """The next JSON line a child prints, within ``timeout`` seconds."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise BenchError(f"no answer from the load generator within {timeout:.0f} s")
    line = stream.readline()
    if not line:
        process.wait(timeout=10)
        raise BenchError(f"the load generator exited ({process.returncode})")
    return json.loads(line)


def run_idle(broker: Broker, args: argparse.Namespace) -> dict[str, Any]:
    time.sleep(args.settle / 2)  # let the fresh broker finish starting up before the baseline
    before = rss_kb(broker.pid)
    command = _loadgen(broker, "idle", "--count", str(args.idle))
    command += ["--concurrency", str(args.concurrency)]
    with _child(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        assert process.stdin is not None
        result: dict[str, Any] = _read_json_line(process.stdout, process, args.phase_timeout)
        time.sleep(args.settle)  # writers finish, transient buffers are released
        after = rss_kb(broker.pid)
        if broker.name == "emulator":
            result["broker_view"] = _emulator_stats(broker.url)
        process.stdin.write("close\n")
        process.stdin.flush()
        _read_json_line(process.stdout, process, 60)
    result.update(rss_before_kb=before, rss_after_kb=after)
    held = result["connected"]
    result["kb_per_connection"] = (after - before) / held if held else float("nan")
    return result


def _emulator_stats(ws_url: str) -> dict[str, Any]:
    url = ws_url.replace("ws://", "http://").replace("/mqtt", "/_emulator/stats")
    with urllib.request.urlopen(url, timeout=30) as response:
        stats: dict[str, Any] = json.load(response)
    return {
        "connections": stats["connections_current"],
        "subscriptions": stats["subscriptions_current"],
    }


# --- report -------------------------------------------------------------------------

Runs = dict[str, list[dict[str, Any]]]  # broker name -> one result per run


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Column-wise median of the numeric figures of several runs."""
    merged: dict[str, Any] = dict(rows[0])
    for key, value in rows[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            merged[key] = statistics.median(row[key] for row in rows)
    return merged


def _cores(value: float) -> str:
    return f"{value:.2f}"


def _fan_table(args: argparse.Namespace, fan: Runs, labels: dict[str, str]) -> None:
    print(
        f"fan-out: 1 publisher -> {args.subscribers} WebSocket subscribers on distinct topics, "
        f"{args.messages} x {args.size}-byte QoS 0, round-robin, at most {args.window} in flight"
    )
    print(
        f"  {'broker':<22}{'delivered':>13}{'msg/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"   CPU (cores): broker loadgen other"
    )
    for name, rows in fan.items():
        if not rows:
            continue  # every run failed: said above
        numbered = [(f"run {i + 1}", row) for i, row in enumerate(rows)]
        for tag, row in [*numbered, ("median", _median_row(rows))]:
            print(
                f"  {labels[name] + ' ' + tag:<22}{row['delivered']:>7.0f}/{row['sent']:<5.0f}"
                f"{row['rate']:>9.0f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
                f"{'':17}{_cores(row['broker_cpu']):>6}{_cores(row['loadgen_cpu']):>8}"
                f"{_cores(row['other_cpu']):>6}"
            )


def _idle_table(args: argparse.Namespace, idle: Runs, labels: dict[str, str]) -> None:
    print(
        f"idle: {args.idle} WebSocket connections, CONNECT + SUBSCRIBE each, "
        f"{args.concurrency} at a time (emulator: SigV4-presigned URL and IAM per user)"
    )
    print(
        f"  {'broker':<22}{'held':>6}{'conn+sub/s':>11}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'RSS before':>11}{'RSS after':>10}{'KB/conn':>8}   CPU: broker loadgen other"
    )
    for name, rows in idle.items():
        if not rows:
            continue  # every run failed: said above
        numbered = [(f"run {i + 1}", row) for i, row in enumerate(rows)]
        for tag, row in [*numbered, ("median", _median_row(rows))]:
            print(
                f"  {labels[name] + ' ' + tag:<22}{row['connected']:>6.0f}{row['rate']:>11.0f}"
                f"{row['p50_ms']:>8.1f}{row['p99_ms']:>8.1f}"
                f"{row['rss_before_kb'] / 1024:>8.1f} MB{row['rss_after_kb'] / 1024:>7.1f} MB"
                f"{row['kb_per_connection']:>8.2f}{'':10}{_cores(row['broker_cpu']):>6}"
                f"{_cores(row['loadgen_cpu']):>8}{_cores(row['other_cpu']):>6}"
            )
        for row in rows:
            if row.get("failed"):
                print(f"  {'':<22}{row['failed']} failed, first: {row['first_error']}")
        views = {json.dumps(row["broker_view"]) for row in rows if "broker_view" in row}
        for view in views:
            data = json.loads(view)
            print(
                f"  {'':<22}(while held, the emulator reported {data['connections']} "
                f"connections and {data['subscriptions']} subscriptions)"
            )


def _fixed_table(
    args: argparse.Namespace, fixed: Runs, labels: dict[str, str], *, realtime: bool = False
) -> None:
    if realtime:
        print(
            "fixed load again, every thread of each broker's process SCHED_FIFO 1 (no other "
            "task can hold its event loop off a CPU; informative, no target):"
        )
    print(
        f"fixed load: {args.fixed_rate:,.0f} msg/s offered for {args.fixed_duration:g} s by "
        f"{args.fixed_publishers} publishers ({args.fixed_rate / args.fixed_publishers:.0f}/s "
        f"each) -> {args.subscribers} WebSocket subscribers on distinct topics, "
        f"{args.size}-byte QoS 0, open loop (emulator: as `iotnotify local` runs it)"
    )
    print(
        f"  {'broker':<22}{'delivered':>15}{'msg/s':>9}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}"
        f"{'p99.9 ms':>9}{'max ms':>8}   CPU (cores): broker loadgen other"
    )
    for name, rows in fixed.items():
        if not rows:
            continue  # every run failed: said above
        numbered = [(f"run {i + 1}", row) for i, row in enumerate(rows)]
        for tag, row in [*numbered, ("median", _median_row(rows))]:
            print(
                f"  {labels[name] + ' ' + tag:<22}{row['delivered']:>8.0f}/{row['sent']:<6.0f}"
                f"{row['rate']:>9.0f}{row['p50_ms']:>8.2f}{row['p90_ms']:>8.2f}"
                f"{row['p99_ms']:>8.2f}{row['p999_ms']:>9.2f}{row['max_ms']:>8.1f}"
                f"{'':17}{_cores(row['broker_cpu']):>6}{_cores(row['loadgen_cpu']):>8}"
                f"{_cores(row['other_cpu']):>6}"
            )
        # The medians of the other latencies too (what the verdicts compare),
        # when there is more than one run.
        medians = [("median", _median_row(rows))] if len(rows) > 1 else []
        for tag, row in [*numbered, *medians]:
            if "send_lag_p99_ms" in row:
                print(
                    f"  {labels[name] + ' ' + tag:<22}load generator's send lag behind schedule: "
                    f"p50 {row['send_lag_p50_ms']:.3f} ms, p90 {row['send_lag_p90_ms']:.3f} ms, "
                    f"p99 {row['send_lag_p99_ms']:.3f} ms (counted in the latency above); "
                    f"latency from the actual send: p50 {row['broker_p50_ms']:.2f} ms, "
                    f"p99 {row['broker_p99_ms']:.2f} ms"
                )
            if row.get("socket_stamped"):
                print(
                    f"  {labels[name] + ' ' + tag:<22}at the subscriber's socket (kernel "
                    f"receive timestamp, {row['socket_stamped']:.0f} stamped), from the actual "
                    f"send: p50 {row['socket_p50_ms']:.3f} ms, p90 {row['socket_p90_ms']:.3f} ms, "
                    f"p99 {row['socket_p99_ms']:.3f} ms, p99.9 {row['socket_p999_ms']:.3f} ms"
                )
            if "broker_waited_ms" in row:
                # Runnable but without a CPU: messages that arrive meanwhile
                # wait too, whatever the broker's code does (benchlib.run_delay_seconds).
                slices = max(row.get("broker_slices", 0), 1)
                print(
                    f"  {labels[name] + ' ' + tag:<22}its event loop while measured: waited "
                    f"for a CPU {row['broker_waited_ms']:.0f} ms in all over {slices:.0f} "
                    f"turns on a CPU ({row['broker_waited_ms'] * 1000 / slices:.1f} us each), "
                    f"taken off a CPU with work left {row.get('broker_preempted', 0):.0f} times "
                    f"(/proc/PID/task/PID/schedstat and status)"
                )
            if "stalls" in row and tag != "median":
                print(
                    f"  {labels[name] + ' ' + tag:<22}event-loop stalls over 5 ms while measured: "
                    f"{row['stalls']:.0f}, {row['stalled_ms']:.0f} ms in all, longest "
                    f"{row['max_stall_ms']:.1f} ms; CPU per message "
                    f"{row['broker_cpu'] * row['seconds'] / max(row['delivered'], 1) * 1e6:.0f} us"
                    + (
                        f"; iotnotify local's own process {row['stack_cpu']:.2f} cores"
                        if "stack_cpu" in row
                        else ""
                    )
                    + f"; garbage collections per generation {row.get('gc_collections')}"
                    + (
                        f"; its {row['subscribers']:.0f} subscribers connected and subscribed "
                        f"at {row['connect_rate']:.0f}/s"
                        if "connect_rate" in row
                        else ""
                    )
                )


def report(
    args: argparse.Namespace,
    fan: Runs,
    idle: Runs,
    fixed: Runs,
    labels: dict[str, str],
    problems: list[str],
    fixed_realtime: Runs | None = None,
) -> None:
    if fan:
        print()
        _fan_table(args, fan, labels)
    if idle:
        print()
        _idle_table(args, idle, labels)
    if fixed:
        print()
        _fixed_table(args, fixed, labels)
    if fixed_realtime:
        print()
        _fixed_table(args, fixed_realtime, labels, realtime=True)
    print()
    print(f"targets (medians of {args.repeat} runs; ratios from the same run of the bench)")
    emu_fan = _median_row(fan["emulator"]) if fan.get("emulator") else None
    ref_fan = _median_row(fan["mosquitto"]) if fan.get("mosquitto") else None
    if emu_fan and ref_fan:
        ratio = emu_fan["rate"] / ref_fan["rate"]
        print(
            f"  delivered msg/s >= {TARGET_RATIO} x {labels['mosquitto']:<12}"
            f"{ratio:>12.2f} x    {_verdict(ratio >= TARGET_RATIO)}"
        )
        print(
            f"  latency vs mosquitto: p50 {emu_fan['p50_ms'] / ref_fan['p50_ms']:.2f} x, "
            f"p99 {emu_fan['p99_ms'] / ref_fan['p99_ms']:.2f} x (informative, no target)"
        )
        emu_per_cpu = emu_fan["rate"] / max(emu_fan["broker_cpu"], 1e-9)
        ref_per_cpu = ref_fan["rate"] / max(ref_fan["broker_cpu"], 1e-9)
        # /proc counts CPU in 10 ms ticks: short runs give no usable figure.
        measurable = all(row["broker_cpu"] * row["seconds"] >= 0.2 for row in (emu_fan, ref_fan))
        if measurable:
            print(
                f"  msg/s per broker CPU-second: emulator {emu_per_cpu:.0f}, mosquitto "
                f"{ref_per_cpu:.0f}, ratio {emu_per_cpu / ref_per_cpu:.2f} (informative: less "
                "sensitive to other load; mosquitto is not CPU-bound here, so its figure is a "
                "ceiling)"
            )
    elif args.only in (None, "fan-out"):
        print("  delivered msg/s >= 0.5 x mosquitto: NOT MEASURED (no figures for both brokers)")
    emu_idle = _median_row(idle["emulator"]) if idle.get("emulator") else None
    if emu_idle:
        kb = emu_idle["kb_per_connection"]
        rate = emu_idle["rate"]
        print(
            f"  idle RSS <= {TARGET_KB_PER_CONNECTION:.0f} KB per connection"
            f"{kb:>17.2f} KB   {_verdict(kb <= TARGET_KB_PER_CONNECTION)}"
        )
        print(
            f"  SigV4 connect+subscribe >= {TARGET_CONNECTS_PER_SECOND:.0f}/s"
            f"{rate:>14.0f}/s    {_verdict(rate >= TARGET_CONNECTS_PER_SECOND)}"
        )
        if idle.get("mosquitto"):
            ref_idle = _median_row(idle["mosquitto"])
            print(
                f"  vs mosquitto (anonymous, no auth): RSS per connection "
                f"{kb / ref_idle['kb_per_connection']:.1f} x, "
                f"connect rate {rate / ref_idle['rate']:.2f} x (informative)"
            )
    elif args.only in (None, "idle"):
        print("  idle RSS and connect rate: NOT MEASURED")
    _fixed_verdicts(fixed)
    if fixed_realtime:
        _fixed_verdicts(fixed_realtime, realtime=True)
    others = [
        row["other_cpu"]
        for rows in (
            *fan.values(),
            *idle.values(),
            *fixed.values(),
            *(fixed_realtime or {}).values(),
        )
        for row in rows
    ]
    if others and statistics.median(others) > 0.25:
        print(
            f"  WARNING: other work on this machine used {statistics.median(others):.2f} cores "
            f"(median) during the runs, out of {os.cpu_count()}: every figure is skewed, the "
            "CPU-bound emulator's most"
        )
    for problem in problems:
        print(f"  NOT MEASURED: {problem}")


def _report_disturbed(disturbed: list[tuple[str, str, int, dict[str, Any]]]) -> None:
    """The runs set aside because other work used the machine meanwhile."""
    if not disturbed:
        return
    print("runs set aside (other work over --max-other cores; measured again, not in medians)")
    for phase, name, run, row in disturbed:
        figures = f"{row['rate']:.0f}/s, p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms"
        print(
            f"  {phase} against {name}, run {run}: other work {row['other_cpu']:.2f} cores; "
            f"{figures}"
        )


def _fixed_verdicts(fixed: Runs, *, realtime: bool = False) -> None:
    """The fixed-load target lines; with ``realtime`` (the brokers at
    ``SCHED_FIFO``) the same comparisons, said to be informative."""
    emu = _median_row(fixed["emulator"]) if fixed.get("emulator") else None
    ref = _median_row(fixed["mosquitto"]) if fixed.get("mosquitto") else None
    if emu is None:
        return
    if realtime:
        print("  informative, brokers real-time (SCHED_FIFO 1), the same comparisons:")

    def judge(ok: bool) -> str:
        if realtime:
            return "(within)" if ok else "(over)"
        return "PASS" if ok else "MISS"

    print(
        f"  fixed load: emulator p50 <= {TARGET_FIXED_P50_MS:g} ms{emu['p50_ms']:>18.2f} ms   "
        f"{judge(emu['p50_ms'] <= TARGET_FIXED_P50_MS)}"
    )
    lost = emu["sent"] - emu["delivered"]
    print(
        f"  fixed load: emulator delivered {emu['delivered']:.0f}/{emu['sent']:.0f} "
        f"({lost:.0f} lost)"
    )
    if ref is None:
        print("  fixed load: p99 <= 2 x mosquitto: NOT MEASURED (no mosquitto figures)")
        return
    ratio = emu["p99_ms"] / ref["p99_ms"]
    print(
        f"  fixed load: emulator p99 <= {TARGET_FIXED_P99_RATIO:g} x mosquitto's"
        f"{ratio:>12.2f} x ({emu['p99_ms']:.2f} vs {ref['p99_ms']:.2f} ms)   "
        f"{judge(ratio <= TARGET_FIXED_P99_RATIO)}"
    )
    if "broker_p99_ms" in emu and "broker_p99_ms" in ref:
        # The same target on latency from each message's actual send time: the
        # generator's send lag, shared by both brokers, left out.
        sent_ratio = emu["broker_p99_ms"] / ref["broker_p99_ms"]
        print(
            f"  fixed load: the same from the actual send time"
            f"{sent_ratio:>9.2f} x ({emu['broker_p99_ms']:.2f} vs {ref['broker_p99_ms']:.2f} ms)   "
            f"{judge(sent_ratio <= TARGET_FIXED_P99_RATIO)}"
        )
    if emu.get("socket_stamped") and ref.get("socket_stamped"):
        # And at the subscriber's socket: the broker's part alone, without the
        # time the generator takes to read a burst (bench_loadgen._KernelStamps).
        socket_ratio = emu["socket_p99_ms"] / ref["socket_p99_ms"]
        print(
            f"  fixed load: the same at the subscriber's socket"
            f"{socket_ratio:>7.2f} x ({emu['socket_p99_ms']:.2f} vs "
            f"{ref['socket_p99_ms']:.2f} ms)   "
            f"{judge(socket_ratio <= TARGET_FIXED_P99_RATIO)}"
        )
    print(
        f"  fixed load: mosquitto p50 {ref['p50_ms']:.2f} ms, p99.9 {ref['p999_ms']:.2f} ms; "
        f"emulator p99.9 {emu['p999_ms']:.2f} ms (informative)"
    )


# --- main ---------------------------------------------------------------------------


def wait_quiet(max_seconds: float, threshold: float = 0.3) -> None:
    """Wait (bounded) until the rest of the machine uses under ``threshold`` cores.

    Other work on a 2-core machine halves what a broker gets; the figures
    carry the "other" CPU column either way.
    """
    deadline = time.monotonic() + max_seconds
    started = time.monotonic()
    while True:
        before = machine_busy_seconds()
        time.sleep(0.5)
        load = (machine_busy_seconds() - before) / 0.5
        if load < threshold:
            waited = time.monotonic() - started
            if waited > 1:
                print(f"  (waited {waited:.0f} s for other work on the machine to stop)")
            return
        if time.monotonic() > deadline:
            print(
                f"  (the machine stayed busy: {load:.2f} cores used by other work; running anyway)"
            )
            return


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one run (smoke)")
    parser.add_argument("--subscribers", type=int, help="fan-out subscribers (1000)")
    parser.add_argument("--messages", type=int, help="fan-out messages (20000)")
    parser.add_argument("--idle", type=int, help="idle connections (10000)")
    parser.add_argument("--repeat", type=int, help="runs per broker and phase (3); medians")
    parser.add_argument("--size", type=int, default=64, help="payload bytes")
    parser.add_argument("--window", type=int, default=256, help="messages in flight at most")
    parser.add_argument("--concurrency", type=int, default=100, help="connects in flight")
    parser.add_argument("--phase-timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument(
        "--quiet-wait", type=float, default=20.0, help="seconds to wait for an idle machine"
    )
    parser.add_argument(
        "--settle", type=float, help="seconds before reading RSS after connecting (2)"
    )
    parser.add_argument(
        "--max-other",
        type=float,
        default=0.2,
        help="cores of other work above which a run counts as disturbed and is measured "
        "again (0.2)",
    )
    parser.add_argument(
        "--retries", type=int, help="extra attempts for a disturbed run (2; 0 with --quick)"
    )
    parser.add_argument("--no-mosquitto", action="store_true", help="emulator only")
    parser.add_argument(
        "--only",
        choices=("fan-out", "idle", "fixed-load", "fixed-load-realtime"),
        help="run one measurement (fixed-load-realtime: the fixed load with each broker's "
        "threads SCHED_FIFO 1, informative)",
    )
    parser.add_argument("--fixed-rate", type=float, help="fixed load: msg/s offered (10000)")
    parser.add_argument("--fixed-publishers", type=int, help="fixed load: publishers (400)")
    parser.add_argument("--fixed-duration", type=float, help="fixed load: seconds (10)")
    parser.add_argument(
        "--fixed-warmup",
        type=float,
        help="fixed load: seconds offered before measuring (15; lets the presence writes "
        "of the connect storm finish)",
    )
    parser.add_argument(
        "--dump-deliveries",
        type=Path,
        metavar="DIR",
        help="fixed load: write each run's deliveries (actual send, kernel receive and read "
        "times, CLOCK_MONOTONIC ns) to DIR/fixed-BROKER-HHMMSS.json, to line the tail up "
        "with `perf sched record -k CLOCK_MONOTONIC`",
    )
    args = parser.parse_args()
    quick = {
        "subscribers": 50,
        "messages": 1000,
        "idle": 200,
        "repeat": 1,
        "settle": 0.5,
        "fixed_rate": 400.0,
        "fixed_publishers": 10,
        "fixed_duration": 2.0,
        "fixed_warmup": 1.0,
        "retries": 0,
    }
    full = {
        "subscribers": 1000,
        "messages": 20000,
        "idle": 10000,
        "repeat": 3,
        "settle": 2.0,
        "fixed_rate": 10000.0,
        "fixed_publishers": 400,
        "fixed_duration": 10.0,
        "fixed_warmup": 15.0,
        "retries": 2,
    }
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.quick:
        args.quiet_wait = 0.0
    return args


def main() -> int:
    args = _options()
    limit = raise_fd_limit()  # the children inherit it
    # The fixed load's generator holds two descriptors per subscriber (its
    # socket and the duplicate it reads kernel timestamps through).
    needed = max(args.idle, 2 * args.subscribers + (args.fixed_publishers or 0)) + 200
    if needed > limit:
        print(f"needs {needed} file descriptors per process; the hard limit is {limit}")
        return 2
    binary = None if args.no_mosquitto else ensure_mosquitto()
    version = "mosquitto skipped"
    if binary:
        done = subprocess.run([binary, "-h"], capture_output=True, text=True, check=False)
        version = (done.stdout.splitlines() or ["mosquitto ?"])[0]
    print(
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {version}, "
        f"file descriptors {limit}"
    )
    if binary:
        print(
            "mosquitto: WebSocket listener on 127.0.0.1, anonymous (2.0 starts it only beside "
            "a plain MQTT listener, so one is configured and never used)"
        )
    fan: Runs = {}
    idle: Runs = {}
    fixed: Runs = {}
    fixed_realtime: Runs = {}
    labels = {"emulator": "emulator", "mosquitto": "mosquitto"}
    problems: list[str] = []
    brokers = ["emulator"] + (["mosquitto"] if binary else [])
    disturbed: list[tuple[str, str, int, dict[str, Any]]] = []
    phases = [
        phase
        for phase in ("fan-out", "idle", "fixed-load", "fixed-load-realtime")
        if args.only in (None, phase)
    ]
    with tempfile.TemporaryDirectory(prefix="iotnotify-bench-") as directory:
        work = Path(directory)
        # One key file per measurement, sized to it: the emulator's store then
        # holds exactly the users of the run (a bigger heap lengthens CPython's
        # full collections, which are what the fan-out p99 latency shows).
        key_files = {"fan-out": work / "keys-fan-out.json", "idle": work / "keys-idle.json"}
        if "fan-out" in phases:
            KeyFile.mint(args.subscribers).write(key_files["fan-out"])
        if "idle" in phases:
            KeyFile.mint(args.idle).write(key_files["idle"])
        for phase in phases:
            for run in range(args.repeat):
                for name in brokers:  # alternated, so slow drifts hit both
                    results = {
                        "fan-out": fan,
                        "idle": idle,
                        "fixed-load": fixed,
                        "fixed-load-realtime": fixed_realtime,
                    }[phase]
                    for attempt in range(1 + max(0, args.retries)):
                        again = f" (measured again, attempt {attempt + 1})" if attempt else ""
                        print(
                            f"{phase} against {name}, run {run + 1}/{args.repeat}{again} ...",
                            flush=True,
                        )
                        if args.quiet_wait:
                            wait_quiet(args.quiet_wait)
                        if name == "mosquitto":
                            context = mosquitto(binary or "", work)
                        elif phase.startswith("fixed-load"):
                            context = local_emulator(args.subscribers, work)
                        else:
                            context = emulator(key_files[phase], work)
                        try:
                            with context as broker:
                                labels[name] = broker.label
                                if phase == "fan-out":
                                    row = run_fanout(broker, args)
                                elif phase == "idle":
                                    row = run_idle(broker, args)
                                else:
                                    row = run_fixed(
                                        broker, args, realtime=phase == "fixed-load-realtime"
                                    )
                        except BenchError as exc:
                            problems.append(f"{phase} against {name}, run {run + 1}: {exc}")
                            print(f"  failed: {exc}", flush=True)
                            results.setdefault(name, [])
                            break
                        last = attempt == max(0, args.retries)
                        if row["other_cpu"] <= args.max_other or last:
                            results.setdefault(name, []).append(row)
                            break
                        # Other work took CPU this run could have had: on 2
                        # cores that moves latency most. Set aside, shown in
                        # the report, and measured again; both brokers alike.
                        print(
                            f"  disturbed: other work used {row['other_cpu']:.2f} cores "
                            f"(over {args.max_other:g}); set aside",
                            flush=True,
                        )
                        disturbed.append((phase, name, run + 1, row))
    report(args, fan, idle, fixed, labels, problems, fixed_realtime)
    _report_disturbed(disturbed)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
