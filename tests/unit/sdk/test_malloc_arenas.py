"""The tray runs itself again with one glibc malloc arena (iotnotify.malloc_arenas)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

import pytest

from iotnotify.malloc_arenas import limit_malloc_arenas


class RecordingExecve:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], dict[str, str]]] = []

    def __call__(self, path: str, argv: list[str], env: Mapping[str, str]) -> None:
        self.calls.append((path, argv, dict(env)))


def test_on_glibc_the_command_runs_again_with_one_arena() -> None:
    environ = {"HOME": "/home/al", "DISPLAY": ":0"}
    execve = RecordingExecve()
    limit_malloc_arenas(environ=environ, execve=execve, glibc=True)
    # The same interpreter and command line, the same environment plus the limit
    [(path, argv, env)] = execve.calls
    assert path == sys.executable
    assert argv == sys.orig_argv
    assert env["MALLOC_ARENA_MAX"] == "1"
    assert {k: v for k, v in env.items() if k in environ} == environ
    # and this process's environment is left as it was (execve replaces it).
    assert environ == {"HOME": "/home/al", "DISPLAY": ":0"}


def test_the_process_started_with_the_limit_keeps_it_from_its_children() -> None:
    execve = RecordingExecve()
    first: dict[str, str] = {"HOME": "/home/al"}
    limit_malloc_arenas(environ=first, execve=execve, glibc=True)
    again = dict(execve.calls[0][2])
    # When the new process calls it, nothing runs again
    limit_malloc_arenas(environ=again, execve=execve, glibc=True)
    assert len(execve.calls) == 1
    # and the variable leaves its environment: the keyring helper, a browser
    # started from a pop-up, get glibc's default.
    assert again == {"HOME": "/home/al"}


@pytest.mark.parametrize(
    ("environ", "glibc"),
    [
        ({"MALLOC_ARENA_MAX": "4"}, True),  # the user's own setting wins
        ({}, False),  # musl, macOS, Windows: nothing to set
    ],
)
def test_nothing_runs_again_when_the_user_set_it_or_there_is_no_glibc(
    environ: dict[str, str], glibc: bool
) -> None:
    execve = RecordingExecve()
    before = dict(environ)
    limit_malloc_arenas(environ=environ, execve=execve, glibc=glibc)
    assert execve.calls == []
    assert environ == before


def test_a_real_process_is_replaced_once_and_runs_with_the_limit() -> None:
    # A stand-in command that calls it first, as `iotnotify tray` does, then
    # reports what glibc started it with and what its own environment holds.
    code = (
        "import os, sys\n"
        "from iotnotify.malloc_arenas import limit_malloc_arenas\n"
        "print('start', flush=True)\n"
        "limit_malloc_arenas()\n"
        "started = open('/proc/self/environ', 'rb').read().split(b'\\0')\n"
        "print(b'MALLOC_ARENA_MAX=1' in started, os.environ.get('MALLOC_ARENA_MAX'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # Two starts (the second is the replacement), one process, the limit applied
    assert done.stdout.splitlines() == ["start", "start", "True None"]


@pytest.mark.parametrize(
    ("argv", "limited"),
    [
        (["iotnotify", "tray", "--user", "alice"], True),
        (["iotnotify", "tray"], True),
        (["iotnotify", "tray", "--help"], False),
        (["iotnotify", "listen", "--user", "alice"], False),
        (["iotnotify", "send", "--user", "alice", "--title", "tray"], False),
    ],
)
def test_only_the_tray_console_command_limits_its_arenas(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], limited: bool
) -> None:
    import iotnotify.cli
    import iotnotify.malloc_arenas

    calls: list[str] = []
    monkeypatch.setattr(iotnotify.malloc_arenas, "limit_malloc_arenas", lambda: calls.append("x"))
    monkeypatch.setattr(iotnotify.cli, "cli", lambda: calls.append("cli"))
    monkeypatch.setattr(sys, "argv", argv)
    iotnotify.cli.main()
    assert calls == (["x", "cli"] if limited else ["cli"])
