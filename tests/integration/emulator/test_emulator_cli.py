"""``python -m iotnotify_emulator`` starts, prints its endpoints as JSON and stops on SIGINT."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request


def test_module_entry_point_serves_and_stops() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "iotnotify_emulator", "--no-tls", "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        while not lines or lines[-1] != "}":
            line = process.stdout.readline()
            assert line, "the emulator exited before printing its endpoints"
            lines.append(line.rstrip("\n"))
        info = json.loads("\n".join(lines))
        assert info["wss_url"] is None
        with urllib.request.urlopen(info["data_url"] + "/_emulator/stats", timeout=10) as response:
            assert json.load(response)["connections_current"] == 0
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
