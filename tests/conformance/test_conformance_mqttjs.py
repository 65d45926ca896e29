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


def test_mqttjs_v5_gets_not_authorized_stays_and_receives_user_properties(
    harness: Harness,
) -> None:
    node = shutil.which("node")
    assert node is not None, "node is required (installed by make setup)"
    url = harness.url(harness.subscriber("alice"))
    topic = harness.topic_of("alice")
    process = subprocess.Popen(
        [
            node,
            str(NODE_DIR / "subscribe5.mjs"),
            url,
            "alice.node5",
            harness.topic_of("bob"),
            topic,
        ],
        cwd=NODE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Given a v5 CONNACK with AWS's topic alias maximum
        assert _read_event(process) == {"event": "connect", "reasonCode": 0, "topicAliasMaximum": 8}
        # When alice subscribes to bob's topic: Not authorized (0x87), connection kept
        assert _read_event(process) == {
            "event": "subscribed",
            "error": "Subscribe error: Not authorized",
            "reasonCodes": [0x87],
        }
        # And her own topic is then granted on the same connection
        assert _read_event(process) == {"event": "subscribed", "error": None, "reasonCodes": [1]}
        harness.iot_data(harness.publisher()).publish(
            topic=topic,
            qos=0,
            payload=b"hello node",
            contentType="text/plain",
            userProperties=[{"kind": "turn"}],
        )
        # Then the message arrives with its MQTT 5 properties
        assert _read_event(process) == {
            "event": "message",
            "topic": topic,
            "payload": "hello node",
            "userProperties": {"kind": "turn"},
            "contentType": "text/plain",
        }
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
