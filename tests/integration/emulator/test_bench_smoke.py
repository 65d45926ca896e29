"""The benchmark runs end to end on tiny counts and prints every figure row.

Behaviour only (bench/ prints timings; tests never assert them): the three
processes start and stop, every SigV4 subscriber connects and subscribes,
every message is delivered, and the table has its rows and verdicts. The
fixed-load mode runs against the emulator as ``iotnotify local`` runs it,
with role sessions and a publisher user minted in that stack's moto.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_bench_quick_run_prints_every_row(tmp_path: Path) -> None:
    # Given the bench with tiny counts and no mosquitto (not needed for a smoke run)
    command = [sys.executable, str(ROOT / "bench" / "emulator_bench.py"), "--quick"]
    command += ["--no-mosquitto", "--subscribers", "5", "--messages", "50", "--idle", "20"]
    command += ["--settle", "0.2", "--fixed-rate", "100", "--fixed-publishers", "5"]
    command += ["--fixed-duration", "1", "--dump-deliveries", str(tmp_path)]
    # every run counts as disturbed by other work: each is measured twice
    command += ["--max-other", "-1", "--retries", "1"]

    # When it runs
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)

    # Then it succeeds and prints both measurements and the targets it can judge
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"^  emulator run 1 +50/50 ", out, re.MULTILINE), out
    assert re.search(r"^  emulator run 1 +20 ", out, re.MULTILINE), out
    assert "the emulator reported 20 connections and 20 subscriptions" in out
    assert re.search(r"idle RSS <= 20 KB per connection .* (PASS|MISS)$", out, re.MULTILINE)
    assert re.search(r"SigV4 connect\+subscribe >= 1000/s .* (PASS|MISS)$", out, re.MULTILINE)
    assert "delivered msg/s >= 0.5 x mosquitto: NOT MEASURED" in out
    # and the fixed load, through iotnotify local's emulator: 5 publishers at
    # 20/s each, every message of the measured second delivered
    assert re.search(r"by 5 publishers \(20/s each\) -> 5 WebSocket subscribers", out), out
    assert re.search(r"^  emulator run 1 +100/100 ", out, re.MULTILINE), out
    # sent by the generator's own publishers' process, whose lag behind the
    # schedule is reported beside the latency it is part of
    assert re.search(
        r"^  emulator run 1 +load generator's send lag behind schedule: p50 [0-9.]+ ms, "
        r"p90 [0-9.]+ ms, p99 [0-9.]+ ms \(counted in the latency above\); "
        r"latency from the actual send: p50 [0-9.]+ ms, p99 [0-9.]+ ms$",
        out,
        re.MULTILINE,
    ), out
    # and the latency at the subscriber's socket, from the kernel's receive
    # timestamp of every delivery
    assert re.search(
        r"^  emulator run 1 +at the subscriber's socket \(kernel receive timestamp, 100 "
        r"stamped\), from the actual send: p50 [0-9.]+ ms, p90 [0-9.]+ ms, p99 [0-9.]+ ms, "
        r"p99.9 [0-9.]+ ms$",
        out,
        re.MULTILINE,
    ), out
    # whose stamps (dumped per delivery) fall between the send and the read
    dumps = sorted(tmp_path.glob("fixed-emulator-*.json"))
    assert dumps, out
    deliveries = json.loads(dumps[-1].read_text())
    assert len(deliveries) == 100
    assert all(sent <= kernel <= read for sent, kernel, read in deliveries)
    assert re.search(r"emulator p50 <= 1 ms .* (PASS|MISS)$", out, re.MULTILINE), out
    assert "p99 <= 2 x mosquitto: NOT MEASURED" in out
    # and the fixed load again with the broker's threads real-time, judged
    # as information only (no PASS/MISS of its own)
    assert "fixed load again, every thread of each broker's process SCHED_FIFO 1" in out
    assert re.search(
        r"^  informative, brokers real-time \(SCHED_FIFO 1\), the same comparisons:\n"
        r"  fixed load: emulator p50 <= 1 ms .* \((within|over)\)$",
        out,
        re.MULTILINE,
    ), out
    assert len(re.findall(r"^  emulator run 1 +100/100 ", out, re.MULTILINE)) == 2, out
    # and every run, disturbed, was set aside once, measured again, and listed
    for phase in ("fan-out", "idle", "fixed-load", "fixed-load-realtime"):
        assert f"{phase} against emulator, run 1/1 (measured again, attempt 2) ..." in out
        assert re.search(
            rf"^  {phase} against emulator, run 1: other work [0-9.]+ cores; [0-9]+/s, p50 ",
            out,
            re.MULTILINE,
        ), out
    assert out.count("disturbed: other work used") == 4
    # and the fixed load's subscribers, moto role sessions, connected at a printed rate
    assert re.search(r"its 5 subscribers connected and subscribed at [0-9]+/s", out), out
    assert "runs set aside (other work over --max-other cores" in out
