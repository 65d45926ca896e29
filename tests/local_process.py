"""Start and stop the real ``iotnotify local`` command for tests.

One launcher for every suite that needs the whole stack (integration/local,
integration/sdk, e2e). The command's output goes to a log file through a
reader thread, so a chatty stack can never block on a full pipe, and
"ready." on stderr (printed once the state file is written and everything
listens) is an event to wait on rather than a file to poll.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any, Final, TypeVar, overload

IOTNOTIFY: Final = str(Path(sys.executable).with_name("iotnotify"))
START_TIMEOUT_S: Final = 120.0
STOP_TIMEOUT_S: Final = 30.0


class LocalProcess:
    """A running ``iotnotify local``: its process, state file and log."""

    def __init__(
        self, process: subprocess.Popen[bytes], state_file: Path, log: Path, sink: IO[bytes]
    ) -> None:
        self.process = process
        self.state_file = state_file
        self.log = log
        self.state: dict[str, Any] = {}
        self._ready = threading.Event()
        self._done = threading.Event()
        # The child's stdout shares this open file, so both streams land in one log.
        self._sink = sink
        assert process.stderr is not None
        self._pump = threading.Thread(
            target=self._copy, args=(process.stderr,), name="iotnotify-local-log", daemon=True
        )
        self._pump.start()

    def _copy(self, stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            self._sink.write(line)
            self._sink.flush()
            if line.startswith(b"ready."):
                self._ready.set()
                self._done.set()
        self._done.set()

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> bool:
        """True once the stack is ready; False if it exited or timed out first."""
        self._done.wait(timeout)
        if self._ready.is_set():
            self.state = json.loads(self.state_file.read_text(encoding="utf-8"))
        return self._ready.is_set()

    def user(self, name: str) -> dict[str, Any]:
        """A demo user of the state file by short name (alice, bob)."""
        return next(u for u in self.state["users"] if u["name"] == name)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> str:
        """Ctrl-C, as a user would; killed by pid only if it does not exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._pump.join(timeout=10)
        self._sink.close()
        return self.output()


P = TypeVar("P", bound=LocalProcess)


# Two signatures rather than a default of LocalProcess for ``type[P]``, which
# mypy refuses (P may be a subclass the default is not): without ``kind`` the
# answer is a LocalProcess, with it an instance of ``kind``.
@overload
def start_local(state_file: Path, *args: str, cwd: Path | None = None) -> LocalProcess: ...


@overload
def start_local(state_file: Path, *args: str, cwd: Path | None = None, kind: type[P]) -> P: ...


def start_local(
    state_file: Path,
    *args: str,
    cwd: Path | None = None,
    kind: type[LocalProcess] = LocalProcess,
) -> LocalProcess:
    """``iotnotify local --state-file F ARGS`` with stdout and stderr in ``F.log``.

    Unless ARGS name one, the data directory is ``F.data`` beside the state
    file, so a test never reads or writes the checkout's ``.iotnotify/data``
    and two stacks never share one. ``kind`` lets a suite wrap the process in
    its own subclass (extra helpers).
    """
    if "--data-dir" not in args:
        args = (*args, "--data-dir", str(state_file.with_suffix(".data")))
    log = state_file.with_suffix(".log")
    sink = log.open("wb")
    process = subprocess.Popen(
        [IOTNOTIFY, "local", "--state-file", str(state_file), *args],
        stdout=sink,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "COLUMNS": "200"},
        cwd=cwd,
    )
    return kind(process, state_file, log, sink)
