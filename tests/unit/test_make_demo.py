"""``make demo``'s recipe: Ctrl-C stops the stack and the game and ends quietly.

Ctrl-C in a terminal ended ``make demo`` with ``make: *** [Makefile:87: demo]
Error 1`` (the recipe's trap failed under the Makefile's ``-e``), while
``make run`` ends with the stack's "stopping...". The recipe runs here with
stand-ins for ``iotnotify local`` and the game server (``BIN=``), with
``setup`` taken as done (``-o setup``), so no port is opened.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")

# `iotnotify local` in the background: stops on SIGTERM, which the recipe's
# trap sends (a background job of a non-interactive shell ignores SIGINT).
FAKE_STACK = """#!/bin/sh
trap 'echo stack-stopped; exit 0' TERM
while :; do sleep 0.05; done
"""

# examples/turns/turns.py in the foreground: ends with status 0 on Ctrl-C.
FAKE_GAME = """#!/bin/sh
trap 'echo game-stopped; exit 0' INT
echo game-ready
while :; do sleep 0.05; done
"""


def _stand_ins(folder: Path) -> Path:
    for name, text in (("iotnotify", FAKE_STACK), ("python", FAKE_GAME)):
        path = folder / name
        path.write_text(text)
        path.chmod(0o755)
    return folder


def test_ctrl_c_ends_make_demo_with_status_0_and_no_make_error(tmp_path: Path) -> None:
    bin_dir = _stand_ins(tmp_path)
    out = tmp_path / "out.txt"
    with out.open("wb") as sink:
        make = subprocess.Popen(
            ["make", "--no-print-directory", "-o", "setup", "demo", f"BIN={bin_dir}"],
            cwd=REPO,
            # Not the flags of a `make test` that runs this test (-n, -j, ...).
            env={k: v for k, v in os.environ.items() if k not in _MAKE_VARIABLES},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's job
            # A terminal's job gets Ctrl-C with SIGINT's default disposition.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            deadline = time.monotonic() + 30
            while b"game-ready" not in out.read_bytes():
                assert make.poll() is None, out.read_text()
                assert time.monotonic() < deadline, out.read_text()
                time.sleep(0.05)
            # When Ctrl-C reaches the whole job, as a terminal sends it
            os.killpg(make.pid, signal.SIGINT)
            status = make.wait(timeout=30)
        finally:
            if make.poll() is None:
                os.killpg(make.pid, signal.SIGKILL)
                make.wait()

    # Then the game and the stack are stopped and make reports no error: it
    # ends as `make run` does on Ctrl-C, by the SIGINT it got itself
    text = out.read_text()
    assert "game-stopped" in text
    assert "stack-stopped" in text
    assert "make: ***" not in text
    assert status == -signal.SIGINT, text
