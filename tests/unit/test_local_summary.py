"""The table ``iotnotify local`` prints: every address and path in full."""

from __future__ import annotations

import os
import re
from pathlib import Path

from rich.console import Console

from iotnotify.state_file import LocalState
from iotnotify_local.stack import _summary


def test_the_summary_shows_long_paths_whole_in_an_80_column_terminal(tmp_path: Path) -> None:
    # Given a checkout in a deep directory (a mktemp clone, a home folder)
    deep = tmp_path / ("checkout-" + "x" * 40) / ".iotnotify"
    ca_file = str(deep / "data" / "ca" / "ca.pem")
    state_file = deep / "local.json"
    state = LocalState(
        region="us-east-1",
        app="iotnotify",
        stage="local",
        apiUrl="http://127.0.0.1:8700",
        webUrl="http://127.0.0.1:8700/",
        iotWsUrl="ws://127.0.0.1:8702/mqtt",
        iotWssUrl="wss://127.0.0.1:8703/mqtt",
        iotDataUrl="http://127.0.0.1:8702",
        caFile=ca_file,
        awsEndpointUrl="http://127.0.0.1:8701",
        userPoolId="us-east-1_" + "a" * 32,
        userPoolClientId="c" * 26,
        users=[{"name": "alice", "username": "alice@example.com", "password": "Aa1!" + "p" * 14}],
        publisher={},
        pid=os.getpid(),
    )
    # When it is printed where a newcomer runs `make run` (80 columns)
    console = Console(width=80, record=True, color_system=None)
    console.print(_summary(state, state_file))
    shown = console.export_text()
    # Then the CA file and the state file can be copied from it: wrapped, not cut
    assert "\u2026" not in shown
    cells = "".join(re.sub(r"[\u2500-\u257f\s]", "", line) for line in shown.splitlines())
    assert ca_file.replace(" ", "") in cells
    assert str(state_file) in cells
