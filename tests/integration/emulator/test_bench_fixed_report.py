"""The fixed-load table of ``bench/emulator_bench.py`` prints the medians the
verdicts compare, so the README's figures can be read off its output."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # The bench's scripts import each other (benchlib) from their folder.
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    return importlib.import_module("emulator_bench")


def _run(p99: float, socket_p99: float) -> dict[str, Any]:
    return {
        "sent": 100,
        "delivered": 100,
        "rate": 100.0,
        "p50_ms": 0.1,
        "p90_ms": 0.2,
        "p99_ms": p99,
        "p999_ms": p99 * 2,
        "max_ms": p99 * 3,
        "broker_cpu": 0.5,
        "loadgen_cpu": 0.4,
        "other_cpu": 0.0,
        "send_lag_p50_ms": 0.01,
        "send_lag_p90_ms": 0.02,
        "send_lag_p99_ms": 0.03,
        "broker_p50_ms": 0.1,
        "broker_p99_ms": p99 - 0.5,
        "socket_stamped": 100,
        "socket_p50_ms": 0.05,
        "socket_p90_ms": 0.09,
        "socket_p99_ms": socket_p99,
        "socket_p999_ms": socket_p99 * 2,
        "stalls": 0,
        "stalled_ms": 0.0,
        "max_stall_ms": 0.0,
        "seconds": 1.0,
    }


def test_the_fixed_table_prints_the_median_of_every_latency_it_judges(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _bench(monkeypatch)
    # Given three runs against the emulator
    runs = [_run(2.0, 1.0), _run(4.0, 3.0), _run(3.0, 2.0)]
    args = argparse.Namespace(fixed_rate=100.0, fixed_duration=1.0, fixed_publishers=5)
    args.subscribers, args.size = 5, 64

    # When the table is printed
    bench._fixed_table(args, {"emulator": runs}, {"emulator": "emulator"})
    out = capsys.readouterr().out

    # Then the medians of the actual-send and socket latencies are printed
    # beside the per-run lines, and the per-run stall line only per run
    assert re.search(r"^  emulator median .*actual send: p50 0\.10 ms, p99 2\.50 ms$", out, re.M)
    assert re.search(
        r"^  emulator median +at the subscriber's socket .* p99 2\.000 ms, p99\.9 4\.000 ms$",
        out,
        re.M,
    ), out
    assert len(re.findall(r"at the subscriber's socket", out)) == 4  # 3 runs + the median
    assert not re.search(r"^  emulator median +event-loop stalls", out, re.M)


def test_one_run_prints_no_separate_median_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _bench(monkeypatch)
    args = argparse.Namespace(fixed_rate=100.0, fixed_duration=1.0, fixed_publishers=5)
    args.subscribers, args.size = 5, 64
    bench._fixed_table(args, {"emulator": [_run(2.0, 1.0)]}, {"emulator": "emulator"})
    out = capsys.readouterr().out
    assert len(re.findall(r"at the subscriber's socket", out)) == 1


def test_each_run_says_how_the_brokers_event_loop_waited_for_a_cpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _bench(monkeypatch)
    # Given a run whose broker waited 30 ms over 1,000 turns and was preempted 7 times
    run = _run(2.0, 1.0) | {"broker_waited_ms": 30.0, "broker_slices": 1000, "broker_preempted": 7}
    args = argparse.Namespace(fixed_rate=100.0, fixed_duration=1.0, fixed_publishers=5)
    args.subscribers, args.size = 5, 64

    # When the table is printed
    bench._fixed_table(args, {"mosquitto": [run]}, {"mosquitto": "mosquitto"})
    out = capsys.readouterr().out

    # Then the run's line gives the total, the average per turn and the preemptions
    assert re.search(
        r"^  mosquitto run 1 +its event loop while measured: waited for a CPU 30 ms in all "
        r"over 1000 turns on a CPU \(30\.0 us each\), taken off a CPU with work left 7 times",
        out,
        re.M,
    ), out


def test_the_run_queue_wait_of_a_live_process_is_read_from_proc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    benchlib = importlib.import_module("benchlib")
    # Given this process, which has run
    # When its main thread's scheduler figures are read twice, with a yield between
    before = benchlib.run_delay_seconds(os.getpid())
    os.sched_yield()
    after = benchlib.run_delay_seconds(os.getpid())

    # Then they are counters that only grow, and this thread has had turns on a CPU
    assert before[1] > 0
    assert all(b >= a for a, b in zip(before, after, strict=True))
    # And a process that is gone reads as zeros rather than failing the bench
    assert benchlib.run_delay_seconds(2**22 + 1) == (0.0, 0, 0)


def test_real_time_scheduling_reaches_every_thread_of_a_broker_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    benchlib = importlib.import_module("benchlib")
    # Given a process with three threads, like a broker with helper threads
    code = (
        "import threading, sys\n"
        "gate = threading.Event()\n"
        "for _ in range(2): threading.Thread(target=gate.wait, daemon=True).start()\n"
        "print('up', flush=True); sys.stdin.readline()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "up"
        tids = [int(tid) for tid in os.listdir(f"/proc/{child.pid}/task")]
        assert len(tids) == 3
        # When the bench makes it real-time
        if os.geteuid() != 0:
            # (the bench says NOT MEASURED without CAP_SYS_NICE)
            with pytest.raises(PermissionError):
                benchlib.make_realtime(child.pid)
            return
        moved = benchlib.make_realtime(child.pid)

        # Then every one of its threads runs SCHED_FIFO at priority 1
        assert moved == 3
        for tid in tids:
            assert os.sched_getscheduler(tid) == os.SCHED_FIFO
            assert os.sched_getparam(tid).sched_priority == 1
    finally:
        child.kill()
        child.wait()
    # And a process that is gone is an error, not a silent no-op
    with pytest.raises(FileNotFoundError):
        benchlib.make_realtime(child.pid)


def test_the_real_time_comparison_is_informative_not_a_verdict(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _bench(monkeypatch)
    # Given real-time runs where the emulator is within 2 x on one latency and over on another
    fixed = {"emulator": [_run(2.0, 3.0)], "mosquitto": [_run(1.5, 1.0)]}

    # When the verdicts are printed for them, and for the same runs as the target's
    bench._fixed_verdicts(fixed, realtime=True)
    informative = capsys.readouterr().out
    bench._fixed_verdicts(fixed)
    target = capsys.readouterr().out

    # Then the real-time lines say within/over under their own heading, never PASS/MISS
    assert informative.startswith("  informative, brokers real-time (SCHED_FIFO 1)"), informative
    assert re.search(r"emulator p99 <= 2 x mosquitto's +1\.33 x .* \(within\)$", informative, re.M)
    assert re.search(r"at the subscriber's socket +3\.00 x .* \(over\)$", informative, re.M)
    assert "PASS" not in informative
    assert "MISS" not in informative
    # while the target's lines keep their verdicts
    assert re.search(r"emulator p99 <= 2 x mosquitto's +1\.33 x .* PASS$", target, re.M)
    assert re.search(r"at the subscriber's socket +3\.00 x .* MISS$", target, re.M)
