"""What the bench's three processes share: the key file, topic names, /proc readings.

The orchestrator (``emulator_bench.py``) writes one JSON key file; the
emulator launcher (``bench_server.py``) seeds its credential store from it and
the load generator (``bench_loadgen.py``) presigns its URLs with the same keys.
Subscriber ``i`` is user ``u{i}``: a role session with the product's
subscriber ceiling policy AND its per-user session policy, as the
token-vending Lambda hands out; the publisher is an IAM user with the
publisher policy plus ``iot:Connect`` for its one client id.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import signal
import string
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from iotnotify.contract import TopicScheme, iot_arn
from iotnotify.policies import (
    publisher_policy,
    subscriber_ceiling_policy,
    subscriber_session_policy,
)
from iotnotify_emulator.credentials import Credential, policies_from

__all__ = [
    "ACCOUNT",
    "IOTNOTIFY",
    "PUBLISHER_CLIENT_ID",
    "REGION",
    "SCHEME",
    "BenchKey",
    "KeyFile",
    "client_id",
    "cpu_seconds",
    "local_stack",
    "machine_busy_seconds",
    "make_realtime",
    "raise_fd_limit",
    "rss_kb",
    "run_delay_seconds",
    "topic",
    "user_id",
]

SCHEME: Final = TopicScheme("iotnotify", "bench")
REGION: Final = "us-east-1"
ACCOUNT: Final = "123456789012"
PUBLISHER_CLIENT_ID: Final = "bench-publisher"


def user_id(index: int) -> str:
    return f"u{index}"


def client_id(index: int) -> str:
    return f"{user_id(index)}.bench"  # the product's {userId}.{suffix} rule


def topic(index: int) -> str:
    return str(SCHEME.user_notifications(user_id(index)))


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass(frozen=True, slots=True)
class BenchKey:
    access_key_id: str
    secret_access_key: str
    session_token: str | None

    @classmethod
    def mint(cls, *, with_token: bool) -> BenchKey:
        upper = string.ascii_uppercase + string.digits
        return cls(
            access_key_id=("ASIA" if with_token else "AKIA") + _random(upper, 16),
            secret_access_key=_random(string.ascii_letters + string.digits, 40),
            session_token=_random(string.ascii_letters + string.digits, 64) if with_token else None,
        )

    def bare_credential(self) -> Credential:
        """Enough of a Credential for ``presign_url`` (which only signs)."""
        return Credential(
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            principal_id="bench",
            identity_policies=(),
            session_token=self.session_token,
        )


@dataclass(frozen=True, slots=True)
class KeyFile:
    publisher: BenchKey
    subscribers: tuple[BenchKey, ...]

    @classmethod
    def mint(cls, subscribers: int) -> KeyFile:
        return cls(
            publisher=BenchKey.mint(with_token=False),
            subscribers=tuple(BenchKey.mint(with_token=True) for _ in range(subscribers)),
        )

    def write(self, path: Path) -> None:
        data = {
            "publisher": _key_json(self.publisher),
            "subscribers": [_key_json(key) for key in self.subscribers],
        }
        path.write_text(json.dumps(data))

    @classmethod
    def read(cls, path: Path) -> KeyFile:
        data = json.loads(path.read_text())
        return cls(
            publisher=BenchKey(**data["publisher"]),
            subscribers=tuple(BenchKey(**item) for item in data["subscribers"]),
        )

    def credentials(self) -> list[Credential]:
        """The store's view: who each key is and what it may do (IAM, as on AWS)."""
        ceiling = policies_from(
            [subscriber_ceiling_policy(SCHEME, region=REGION, account=ACCOUNT)],
            prefix="identity",
        )
        publisher_connect = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "iot:Connect",
                    "Resource": iot_arn(REGION, ACCOUNT, "client", PUBLISHER_CLIENT_ID),
                }
            ],
        }
        result = [
            Credential(
                access_key_id=self.publisher.access_key_id,
                secret_access_key=self.publisher.secret_access_key,
                principal_id="AIDABENCHPUBLISHER",
                identity_policies=policies_from(
                    [publisher_policy(SCHEME, region=REGION, account=ACCOUNT), publisher_connect],
                    prefix="identity",
                ),
            )
        ]
        for index, key in enumerate(self.subscribers):
            session = subscriber_session_policy(
                SCHEME, user_id(index), region=REGION, account=ACCOUNT
            )
            result.append(
                Credential(
                    access_key_id=key.access_key_id,
                    secret_access_key=key.secret_access_key,
                    principal_id=f"AROABENCH:{user_id(index)}",
                    identity_policies=ceiling,
                    session_policies=policies_from([session], prefix="session"),
                    session_token=key.session_token,
                )
            )
        return result


def _key_json(key: BenchKey) -> dict[str, Any]:
    return {
        "access_key_id": key.access_key_id,
        "secret_access_key": key.secret_access_key,
        "session_token": key.session_token,
    }


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; returns the new soft limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rss_kb(pid: int) -> int:
    """VmRSS of a process, in KB (``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


_TICKS: Final = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat``)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def run_delay_seconds(pid: int) -> tuple[float, int, int]:
    """How a process's main thread has waited for a CPU so far.

    ``(seconds, slices, preemptions)``: the time spent runnable but waiting
    on a runqueue and the number of times it got a CPU (the second and
    third fields of ``/proc/<pid>/task/<pid>/schedstat``, proc(5)), and how
    often it was taken off a CPU while it still had work
    (``nonvoluntary_ctxt_switches`` in ``/proc/<pid>/task/<pid>/status``).
    The wait counts each wake-up's short delay as well as the long ones,
    when another task holds the CPU the thread is queued on. The main
    thread is the one that matters here: a broker's event loop (mosquitto's,
    the emulator's); messages that arrive while it waits wait too, whatever
    its code does, so the bench prints these beside the latency. Zeros
    where the kernel has no schedstat.
    """
    task = Path(f"/proc/{pid}/task/{pid}")
    try:
        fields = (task / "schedstat").read_text().split()
        status = (task / "status").read_text()
        preempted = status.split("nonvoluntary_ctxt_switches:", 1)[1].split()[0]
        return int(fields[1]) / 1e9, int(fields[2]), int(preempted)
    except (OSError, IndexError, ValueError):
        return 0.0, 0, 0


def make_realtime(pid: int, priority: int = 1) -> int:
    """Run every thread of process ``pid`` under ``SCHED_FIFO`` at ``priority``.

    Returns how many threads were moved. A thread started later by one of
    them inherits the policy (pthreads' default ``PTHREAD_INHERIT_SCHED``).
    What it is for: on a small machine a task outside the benchmark (here a
    nice -10 thread of the sandbox, about 11 ms a second) that lands on the
    CPU of a broker's event loop holds that loop for its whole run, and the
    broker's p99 then measures where that task landed. A real-time thread is
    not made to wait behind ordinary ones, so a run with every broker's
    threads at ``SCHED_FIFO`` 1 measures the broker's own latency; the
    kernel's real-time throttling (``/proc/sys/kernel/sched_rt_runtime_us``,
    95 % by default) still leaves the rest of the machine its share.
    sched(7). Raises ``PermissionError`` without ``CAP_SYS_NICE`` (or an
    ``RLIMIT_RTPRIO`` of at least ``priority``), ``FileNotFoundError`` when
    ``pid`` is gone.
    """
    moved = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setscheduler(int(tid), os.SCHED_FIFO, os.sched_param(priority))
        except ProcessLookupError:
            continue  # that thread ended meanwhile
        moved += 1
    return moved


def machine_busy_seconds() -> float:
    """CPU time every core of the machine has spent busy so far (``/proc/stat``).

    Minus the broker's and the load generator's own CPU time, it shows how
    much else ran during a measurement (other work on a shared machine skews
    every figure, so the bench reports it).
    """
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICKS


IOTNOTIFY: Final = str(Path(sys.executable).with_name("iotnotify"))


@contextmanager
def local_stack(
    state_file: Path | None, *, prefix: str, extra_args: Sequence[str] = ()
) -> Iterator[Path]:
    """The state file of a running ``iotnotify local``: ``state_file`` as given,
    or a fresh stack on free ports (its own temporary data directory, named
    with ``prefix``; ``extra_args`` such as ``--tls`` added to its command)
    that is stopped with Ctrl-C afterwards."""
    if state_file is not None:
        yield state_file
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        path = Path(tmp) / "state.json"
        proc = subprocess.Popen(
            [
                IOTNOTIFY,
                "local",
                "--port",
                "0",
                "--state-file",
                str(path),
                "--data-dir",
                tmp,
                *extra_args,
            ],
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                if line.startswith("ready."):
                    break
            else:
                raise SystemExit("iotnotify local did not start")
            # Keep draining its log so it never blocks on a full pipe.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            yield path
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
