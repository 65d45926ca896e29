"""bench/fanout_latency.py runs end to end on tiny counts (behaviour only, no timing).

It starts ``iotnotify local`` and the latency proxy, runs the naive loop and
``notify_many`` through the proxy, checks every result and a sample of
inboxes, prints where the time went and the target lines, and stops its
children.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_fanout_bench_quick_run_delivers_to_everyone_and_prints_its_figures() -> None:
    # Given the fan-out bench with small counts
    command = [sys.executable, str(ROOT / "bench" / "fanout_latency.py"), "--quick"]
    command += ["--users", "60", "--naive-users", "5", "--workers", "8"]

    # When it runs (bounded)
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)

    # Then every user got a result, all ok, and each phase printed its calls
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"^naive loop: 5 users in .* 5/5 ok$", out, re.MULTILINE), out
    assert re.search(r"^notify_many x 60: 60 users in .* 60/60 ok$", out, re.MULTILINE), out
    assert re.search(r"^ +BatchWriteItem +3 calls +0 failed", out, re.MULTILINE), out
    assert re.search(r"^ +Publish +60 calls +0 failed", out, re.MULTILINE), out
    assert re.search(r"Publisher concurrency 8 \(HTTP pool 8 per client\)", out), out
    assert re.search(r"x the naive loop: .* (PASS|MISS)$", out, re.MULTILINE), out
