"""Fan-out at cloud latency: a naive ``notify`` loop against ``notify_many``, 15 ms per AWS call.

Run: ``.venv/bin/python bench/fanout_latency.py`` (about a minute; ``--quick``
for a smoke run with small counts).

What runs, each in its own process (2 cores are shared by all of them):

* ``iotnotify local`` (moto, the API; the IoT emulator in a process of its
  own, whose pid the state file gives), started here with free ports and a
  private state file;
* ``bench/latency_proxy.py`` in front of its iot-data endpoint (the
  emulator) and its AWS endpoint (moto's DynamoDB), holding every request
  ``--latency-ms`` (15) before forwarding it: the round trip a publisher
  outside the region sees on AWS;
* this process: one :class:`iotnotify.publisher.Publisher` built with
  ``Publisher.create`` (the local publisher's keys), pointed at the proxy.

Measured in the same run, with the same publisher:

1. the naive loop: ``for user in users: publisher.notify(user, ...)`` over
   ``--naive-users`` users (one PutItem and one Publish each, one after the
   other); its rate is what a loop over N users would take;
2. ``publisher.notify_many(users, ...)`` for each ``--users`` count, every
   result checked (one per user, all ok) and a sample of inboxes read back.

Where the time goes comes from timing every call (botocore's own
``before-call``/``after-call`` events for the naive loop's, a wrapper around
``iot_data.publish`` and ``inbox.put_batch`` for the lean ones of
``iotnotify.signed_http``): calls per operation, their round trips, the span
from the first call to the last, and the CPU used by this process,
``iotnotify local``, its emulator, the proxy and everything else on the
machine. Each user costs one Publish and a
25th of a BatchWriteItem, so with the round trip hidden by concurrency the
limit is the CPU of signing, sending and parsing those calls here and
serving them in ``iotnotify local``; both are on this machine, so the
figures are a floor for AWS, where the server side is not ours to pay.

Bounded: every child is stopped (by pid) at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import boto3
from benchlib import cpu_seconds, machine_busy_seconds

from iotnotify.naming import ResourceNames
from iotnotify.publisher import DEFAULT_FANOUT_WORKERS, Publisher
from iotnotify.state_file import LocalState

HERE: Final = Path(__file__).resolve().parent
TARGET_SPEEDUP: Final = 25.0
TARGET_USERS: Final = 10_000
TARGET_SECONDS: Final = 5.0


class BenchError(Exception):
    """The bench could not run; the message says why."""


# --- processes ------------------------------------------------------------------------


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_file(path: Path, process: subprocess.Popen[Any], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise BenchError(f"{what} exited at start-up ({process.returncode})")
        if time.monotonic() > deadline:
            raise BenchError(f"{what} did not start within {timeout:.0f} s")
        time.sleep(0.1)  # written by another process: polling is the only signal


@contextmanager
def local_stack(work: Path) -> Iterator[tuple[LocalState, int]]:
    """``iotnotify local`` on free ports; its state and pid."""
    state_file = work / "local.json"
    log = work / "local.log"
    command = [
        sys.executable,
        "-c",
        "from iotnotify.cli import main; main()",
        "local",
        "--port",
        "0",
        "--state-file",
        str(state_file),
        "--data-dir",
        str(work / "data"),  # a fresh stack, not the one a developer keeps
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        try:
            try:
                _wait_file(state_file, process, "iotnotify local", 180)
            except BenchError as exc:
                raise BenchError(f"{exc}: {log.read_text(errors='replace')[-2000:]}") from exc
            yield LocalState.read(state_file), process.pid
        finally:
            _stop(process)


def _host_port(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0]


@contextmanager
def latency_proxy(state: LocalState, delay_ms: float, work: Path) -> Iterator[dict[str, int]]:
    """The proxy in front of the emulator (``iot``) and moto (``aws``); ports and pid."""
    info = work / "proxy.json"
    command = [sys.executable, str(HERE / "latency_proxy.py"), "--delay-ms", str(delay_ms)]
    command += ["--upstream", f"iot={_host_port(state.iotDataUrl)}"]
    command += ["--upstream", f"aws={_host_port(state.awsEndpointUrl)}"]
    command += ["--info-file", str(info)]
    process = subprocess.Popen(command)
    try:
        _wait_file(info, process, "the latency proxy", 30)
        yield json.loads(info.read_text())
    finally:
        _stop(process)


# --- measuring ------------------------------------------------------------------------


@dataclass
class CallStats:
    """botocore calls of one operation: count, summed and extreme times."""

    calls: int = 0
    failed: int = 0
    busy: float = 0.0
    first: float = float("inf")
    last: float = 0.0
    durations: list[float] = field(default_factory=list)

    def span(self) -> float:
        return max(0.0, self.last - self.first) if self.calls else 0.0


class CallRecorder:
    """Times every AWS call: botocore's (``before-call``/``after-call`` events) and the
    publisher's lean ones (``FastPublish`` and the inbox's ``FastBatchWrite`` go
    through ``iotnotify.signed_http``, which emits no ``before-call``): those are
    timed by wrapping ``iot_data.publish`` and ``inbox.put_batch``."""

    def __init__(self, session: boto3.session.Session) -> None:
        self._lock = threading.Lock()
        self.ops: dict[str, CallStats] = {}
        session.events.register("before-call", self._before)
        session.events.register("after-call", self._after)

    def wrap(self, owner: Any, method: str, name: str) -> None:
        """Time ``owner.method`` as operation ``name`` (an instance attribute shadows it)."""
        call = getattr(owner, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            failed = False
            try:
                return call(*args, **kwargs)
            except Exception:
                failed = True
                raise
            finally:
                self._record(name, started, time.perf_counter(), failed)

        setattr(owner, method, timed)

    def reset(self) -> None:
        with self._lock:
            self.ops = {}

    def _before(self, context: dict[str, Any], **_: Any) -> None:
        context["bench_started"] = time.perf_counter()

    def _after(
        self, model: Any, context: dict[str, Any], http_response: Any = None, **_: Any
    ) -> None:
        if "bench_started" not in context:
            return  # a lean call (signed_http): timed by its wrapper instead
        ended = time.perf_counter()
        started = context["bench_started"]
        failed = getattr(http_response, "status_code", 200) >= 300
        self._record(model.name, started, ended, failed)

    def _record(self, name: str, started: float, ended: float, failed: bool) -> None:
        with self._lock:
            stats = self.ops.setdefault(name, CallStats())
            stats.calls += 1
            stats.busy += ended - started
            stats.durations.append(ended - started)
            stats.first = min(stats.first, started)
            stats.last = max(stats.last, ended)
            stats.failed += failed


class CpuMeter:
    """CPU used over a window by this process, the local stack, the proxy and the rest."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._start = self._read()

    def _read(self) -> dict[str, float]:
        values = {name: cpu_seconds(pid) for name, pid in self._pids.items()}
        values["bench (client)"] = time.process_time()
        values["machine"] = machine_busy_seconds()
        return values

    def used(self) -> dict[str, float]:
        now = self._read()
        used = {name: now[name] - self._start[name] for name in now}
        machine = used.pop("machine")
        used["other"] = max(0.0, machine - sum(used.values()))
        return used


@dataclass
class Run:
    label: str
    users: int
    seconds: float
    ok: int
    ops: dict[str, CallStats]
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return self.users / self.seconds


def _measure(
    label: str,
    users: list[str],
    action: Any,
    recorder: CallRecorder,
    pids: dict[str, int],
) -> Run:
    recorder.reset()
    meter = CpuMeter(pids)
    started = time.perf_counter()
    ok = action(users)
    seconds = time.perf_counter() - started
    return Run(label, len(users), seconds, ok, dict(recorder.ops), meter.used())


# --- report ---------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def print_run(run: Run, naive: Run | None) -> None:
    speedup = f", {run.rate / naive.rate:.1f} x the naive loop" if naive else ""
    print(
        f"{run.label}: {run.users} users in {run.seconds:.2f} s = {run.rate:,.0f} users/s"
        f"{speedup}; {run.ok}/{run.users} ok"
    )
    for name, stats in sorted(run.ops.items()):
        durations = sorted(stats.durations)
        p50 = statistics.median(durations) if durations else 0.0
        p99 = durations[min(len(durations) - 1, int(len(durations) * 0.99))] if durations else 0.0
        print(
            f"    {name:<15}{stats.calls:>7} calls{stats.failed:>4} failed   round trip "
            f"p50 {_ms(p50):>6} ms p99 {_ms(p99):>6} ms   span {stats.span():6.2f} s "
            f"({stats.span() / run.seconds:4.0%} of the run)   in flight on average "
            f"{stats.busy / max(stats.span(), 1e-9):5.1f}"
        )
    total = sum(run.cpu.values())
    shares = "  ".join(f"{name} {value:.2f} s" for name, value in run.cpu.items())
    print(
        f"    CPU: {shares}  (total {total:.2f} s = {total / run.seconds:.2f} of "
        f"{os.cpu_count()} cores)"
    )
    own = total - run.cpu["other"]
    processes = {name: value for name, value in run.cpu.items() if name != "other"}
    # With nothing else running, the run still needs this CPU: each process's
    # on one core at most (one interpreter lock each), everything of ours
    # spread over all cores at best.
    floor = max(max(processes.values()), own / (os.cpu_count() or 1))
    per_user = ", ".join(
        f"{'client' if name == 'bench (client)' else name} {value / run.users * 1000:.2f} ms"
        for name, value in processes.items()
    )
    print(
        f"    CPU per user: {per_user}; floor on an idle machine "
        f"{floor:.2f} s ({run.users / floor:,.0f} users/s), from this run's own CPU"
    )


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# --- main -----------------------------------------------------------------------------


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (smoke run)")
    parser.add_argument("--users", help="comma-separated notify_many sizes (2000,10000)")
    parser.add_argument("--naive-users", type=int, help="users in the naive loop (300)")
    parser.add_argument("--latency-ms", type=float, default=15.0, help="added per AWS call")
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_FANOUT_WORKERS,
        help=f"Publisher max_workers (and HTTP pool size) ({DEFAULT_FANOUT_WORKERS})",
    )
    args = parser.parse_args()
    if args.users is None:
        args.users = "40" if args.quick else "2000,10000"
    if args.naive_users is None:
        args.naive_users = 10 if args.quick else 300
    args.user_counts = [int(item) for item in args.users.split(",") if item]
    return args


def main() -> int:
    args = _options()
    print(
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, boto3 {boto3.__version__}; "
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    with tempfile.TemporaryDirectory(prefix="iotnotify-fanout-") as directory:
        work = Path(directory)
        with (
            local_stack(work) as (state, local_pid),
            latency_proxy(state, args.latency_ms, work) as proxy,
        ):
            session = boto3.session.Session(
                region_name=state.region,
                aws_access_key_id=state.publisher["accessKeyId"],
                aws_secret_access_key=state.publisher["secretAccessKey"],
            )
            recorder = CallRecorder(session)  # before the clients exist: they copy the hooks
            table = ResourceNames(state.app, state.stage, state.stage).inbox_table
            publisher = Publisher.create(
                app=state.app,
                stage=state.stage,
                endpoint=f"http://127.0.0.1:{proxy['iot']}",
                inbox_table=table,
                session=session,
                dynamodb_endpoint_url=f"http://127.0.0.1:{proxy['aws']}",
                max_workers=args.workers,
            )
            recorder.wrap(publisher.iot_data, "publish", "Publish")
            if publisher.inbox is not None:
                # put_batch is one BatchWriteItem, plus a resend of what
                # DynamoDB left unprocessed (none here).
                recorder.wrap(publisher.inbox, "put_batch", "BatchWriteItem")
            pids = {"iotnotify local": local_pid}
            emulator_pid = state.extra.get("emulatorPid")
            if emulator_pid:  # the emulator runs in a process of its own
                pids["emulator"] = int(emulator_pid)
            pids["proxy"] = proxy["pid"]
            print(
                f"iotnotify local pid {local_pid} (emulator pid {emulator_pid or 'the same'}); "
                f"proxy adds {args.latency_ms:g} ms to every "
                f"iot-data and DynamoDB request; Publisher concurrency {publisher.concurrency} "
                f"(HTTP pool {args.workers} per client)"
            )
            with publisher:
                return _run(args, publisher, recorder, pids)


def _run(
    args: argparse.Namespace,
    publisher: Publisher,
    recorder: CallRecorder,
    pids: dict[str, int],
) -> int:
    # Warm-up (connections, botocore's lazily loaded models), not measured.
    publisher.notify_many([f"warm-{n}" for n in range(50)], title="warm-up")
    publisher.notify("warm-0", title="warm-up")

    def naive(users: list[str]) -> int:
        for user in users:
            publisher.notify(user, title="Your turn", body="naive loop")
        return len(users)

    def fanout(users: list[str]) -> int:
        results = publisher.notify_many(users, title="Your turn", body="notify_many")
        if [r.user_id for r in results] != users:
            raise BenchError("notify_many did not return one result per user, in order")
        return sum(r.ok for r in results)

    naive_run = _measure(
        "naive loop", [f"naive-{n}" for n in range(args.naive_users)], naive, recorder, pids
    )
    print()
    print_run(naive_run, None)
    runs: list[Run] = []
    for count in args.user_counts:
        users = [f"player-{count}-{n}" for n in range(count)]
        run = _measure(f"notify_many x {count}", users, fanout, recorder, pids)
        runs.append(run)
        print_run(run, naive_run)
        _check_inboxes(publisher, users)
    print()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("targets")
    failures = 0
    for run in runs:
        failures += run.ok != run.users
        if run.users == 2000 or (len(runs) == 1 and run.users != TARGET_USERS):
            speedup = run.rate / naive_run.rate
            print(
                f"  notify_many x {run.users} >= {TARGET_SPEEDUP:.0f} x the naive loop: "
                f"{speedup:.1f} x   {_verdict(speedup >= TARGET_SPEEDUP)}"
            )
        if run.users == TARGET_USERS:
            print(
                f"  {TARGET_USERS} users in <= {TARGET_SECONDS:.0f} s: {run.seconds:.2f} s   "
                f"{_verdict(run.seconds <= TARGET_SECONDS)}"
            )
    if failures:
        print(f"  {failures} run(s) had failed deliveries")
    return 1 if failures else 0


def _check_inboxes(publisher: Publisher, users: list[str]) -> None:
    """Every sampled recipient has the notification in its inbox (catch-up works)."""
    inbox = publisher.inbox
    if inbox is None:
        return
    sample = users[:: max(1, len(users) // 20)]
    missing = [user for user in sample if not inbox.since(user).notifications]
    if missing:
        raise BenchError(f"inbox items missing for {len(missing)} sampled users: {missing[:3]}")


if __name__ == "__main__":
    sys.exit(main())
