"""mqtt.js (npm ``mqtt``) in Node over ws:// with a presigned URL.

The Node packages are installed by ``make setup`` (``npm ci`` from the
committed package-lock.json); a missing install fails here rather than
skipping, so the suite never silently loses this client.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from iotnotify_emulator.testing import Harness

NODE_DIR = Path(__file__).parent / "node"


def _read_event(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()  # the script exits on its own 20 s timeout
    assert line, f"mqtt.js script ended early: {process.stderr.read() if process.stderr else ''}"
    event: dict[str, Any] = json.loads(line)
    return event


def test_mqttjs_subscribes_and_receives(harness: Harness) -> None:
    node = shutil.which("node")
    assert node is not None, "node is required (installed by make setup)"
    assert (NODE_DIR / "node_modules" / "mqtt").is_dir(), "run make setup (npm ci)"
    url = harness.url(harness.subscriber("alice"))
    topic = harness.topic_of("alice")
    process = subprocess.Popen(
        [node, str(NODE_DIR / "subscribe.mjs"), url, "alice.node", topic],
        cwd=NODE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _read_event(process) == {"event": "connect"}
        assert _read_event(process) == {"event": "subscribed", "granted": [1]}
        harness.iot_data(harness.publisher()).publish(topic=topic, qos=0, payload=b"hello node")
        assert _read_event(process) == {"event": "message", "topic": topic, "payload": "hello node"}
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
