"""The fixed-load table of ``bench/emulator_bench.py`` prints the medians the
verdicts compare, so the README's figures can be read off its output."""

from __future__ import annotations

import argparse
import importlib
import re
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
