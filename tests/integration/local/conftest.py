"""Run the real ``iotnotify local`` command as a subprocess for these tests."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.local_process import LocalProcess, start_local


def start_stack(state_file: Path, *args: str) -> LocalProcess:
    """Start the command and wait until it is ready; fail with its output if it is not."""
    stack = start_local(state_file, *args)
    if not stack.wait_ready():
        output = stack.stop()
        raise RuntimeError(
            f"iotnotify local did not become ready (exit code {stack.process.returncode}):\n"
            + output[-4000:]
        )
    return stack


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalProcess]:
    state_file = tmp_path_factory.mktemp("local") / "state.json"
    stack = start_stack(state_file, "--port", "0")
    try:
        yield stack
    finally:
        stack.stop()


def four_free_ports() -> int:
    """A port P such that P..P+3 are free now (the stack uses four in a row).

    Chosen below the kernel's ephemeral range, as a fixed port like the
    default 8700 is: ports in that range are handed out to other programs'
    connections at any moment, and one could take P+1 between two runs.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10_000, low - 4)
        try:
            with ExitStack() as held:
                for port in range(base, base + 4):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no four consecutive free ports")
