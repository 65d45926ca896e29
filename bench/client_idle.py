"""What an idle subscriber costs: RSS, CPU and wake-ups, measured against ``iotnotify local``.

Starts the local stack (or uses a running one with ``--state-file``), starts
a subscriber for demo user alice in a child process, lets it connect and
catch up, then watches it for ``--seconds`` (60 by default) without sending
anything. Linux only: figures come from ``/proc``.

Printed figures:

* RSS of the subscriber process (MiB) at the end of the window;
* CPU time used during the window and as a percentage of one core;
* wake-ups per hour: context switches of all its threads (kernel view),
  the subscriber's own network-loop iterations, and PINGREQs sent; the
  last two are also given as the steady-state rate the keepalive implies,
  since a 60 s window can hold no ping at all at a 600 s keepalive.

    .venv/bin/python bench/client_idle.py [--seconds 60] [--keepalive 600]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _context_switches(pid: int) -> dict[str, int]:
    """Context switches per thread; a thread that ends drops out of the next snapshot."""
    counts: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            lines = (task / "status").read_text().splitlines()
        except FileNotFoundError:
            continue  # the thread ended while we looked
        counts[task.name] = sum(
            int(line.split()[1])
            for line in lines
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"))
        )
    return counts


def _switches_between(before: dict[str, int], after: dict[str, int]) -> int:
    return sum(count - before.get(tid, 0) for tid, count in after.items())


def _child(state_file: Path, keepalive: int | None, seconds: float) -> None:
    """The measured process: a plain subscriber, as ``iotnotify listen`` runs it."""
    import threading

    from iotnotify.api_client import ApiClient
    from iotnotify.auth import CognitoAuth, CognitoSession
    from iotnotify.contract import new_notification_id
    from iotnotify.state_file import LocalState
    from iotnotify.subscriber import ConnectionState, StateChange, Subscriber

    state = LocalState.read(state_file)
    alice = state.user("alice")
    auth = CognitoAuth(
        client_id=state.userPoolClientId, region=state.region, endpoint_url=state.awsEndpointUrl
    )
    session = CognitoSession(auth, username=alice["username"], password=alice["password"])
    caught_up = threading.Event()

    def on_state(change: StateChange) -> None:
        if change.state is ConnectionState.CAUGHT_UP:
            caught_up.set()

    sub = Subscriber(
        tokens=ApiClient(api_url=state.apiUrl, id_tokens=session),
        on_message=lambda note: None,
        on_state=on_state,
        since=new_notification_id(),
        keepalive=keepalive,
        device_id="bench-idle",
    ).start()
    if not caught_up.wait(60):
        raise SystemExit("the subscriber did not connect")
    start = sub.stats.loop_wakeups, sub.stats.pings_sent
    print("ready", flush=True)
    sys.stdin.readline()  # the parent says when the window ends
    print(
        json.dumps(
            {
                "loop_wakeups": sub.stats.loop_wakeups - start[0],
                "pings_sent": sub.stats.pings_sent - start[1],
                "keepalive": keepalive or 600,
                "connects": sub.stats.connects,
            }
        ),
        flush=True,
    )
    sub.stop()


def _start_stack(state_file: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "iotnotify"),
            *("local", "--port", "0", "--state-file", str(state_file)),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("ready."):
            return proc
    raise SystemExit("iotnotify local did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--keepalive", type=int, default=None)
    parser.add_argument("--state-file", type=Path, default=None, help="use a running stack")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.state_file, args.keepalive, args.seconds)
        return

    stack = None
    with tempfile.TemporaryDirectory() as tmp:
        state_file = args.state_file
        if state_file is None:
            state_file = Path(tmp) / "state.json"
            stack = _start_stack(state_file)
        child_args = [sys.executable, __file__, "--child", "--state-file", str(state_file)]
        if args.keepalive is not None:
            child_args += ["--keepalive", str(args.keepalive)]
        child = subprocess.Popen(
            child_args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
        )
        try:
            assert child.stdout is not None
            assert child.stdin is not None
            if child.stdout.readline().strip() != "ready":
                raise SystemExit("the subscriber did not become ready")
            cpu0, switches0, t0 = _cpu_seconds(child.pid), _context_switches(child.pid), time.time()
            time.sleep(args.seconds)  # the measurement window itself
            cpu1, switches1, t1 = _cpu_seconds(child.pid), _context_switches(child.pid), time.time()
            rss = _rss_mib(child.pid)
            child.stdin.write("done\n")
            child.stdin.flush()
            stats: dict[str, Any] = json.loads(child.stdout.readline())
            child.wait(30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            if stack is not None:
                stack.send_signal(signal.SIGINT)
                stack.wait(30)

    window = t1 - t0
    per_hour = 3600 / window
    keepalive = int(stats["keepalive"])
    print(f"idle subscriber, {window:.0f} s window, keepalive {keepalive} s")
    print(f"  RSS                      {rss:8.1f} MiB")
    cpu = cpu1 - cpu0
    print(f"  CPU                      {cpu:8.3f} s  ({100 * cpu / window:.3f} % of one core)")
    switches = _switches_between(switches0, switches1)
    print(f"  context switches/hour    {switches * per_hour:8.0f}  (all threads)")
    print(f"  loop wake-ups/hour       {stats['loop_wakeups'] * per_hour:8.0f}  (measured)")
    print(f"  PINGREQs/hour            {stats['pings_sent'] * per_hour:8.0f}  (measured)")
    print(f"  PINGREQs/hour, steady    {3600 / keepalive:8.0f}  (one per keepalive)")


if __name__ == "__main__":
    main()
