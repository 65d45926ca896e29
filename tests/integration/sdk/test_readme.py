"""Every code block of the README runs, as written, against ``iotnotify local``.

Issue 12 item 9: newcomers follow the README word for word, and its Python
snippets used to go to real AWS (and retry forever in silence). Each block
runs in a fresh directory laid out like the one ``make run`` was started in:
``.iotnotify/local.json`` (the running stack's state file) and ``.venv``.
Two shell lines are not run because the test stands in for them:
``make run`` is the running stack itself and ``make test`` is this suite.
A line that runs until stopped (``iotnotify listen``: "terminal 2" in the
quick start) runs as its own terminal would: started first, waited for
until it says it is connected, then it must print what the block's
``iotnotify send`` sent, and is stopped with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotnotify.publisher import Publisher
from tests.integration.sdk.conftest import REPO, RunningStack

README = REPO / "README.md"
STANDS_IN = frozenset({"make run", "make test"})
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
# A command that runs until stopped: the README gives it a terminal of its own.
_RUNS_UNTIL_STOPPED = re.compile(r"^\S*iotnotify listen\b")
_SENT_TITLE = re.compile(r"iotnotify send .*--title (?:\"([^\"]+)\"|'([^']+)'|(\S+))")


def _command(line: str) -> str:
    return line.split("#", 1)[0].strip()


def _own_terminals(code: str) -> tuple[list[str], str]:
    """The lines of a shell block that run until stopped, and the rest."""
    lines = code.splitlines()
    apart = [line for line in lines if _RUNS_UNTIL_STOPPED.match(_command(line))]
    rest = [line for line in lines if line not in apart]
    return [_command(line) for line in apart], "\n".join(rest)


@contextlib.contextmanager
def _terminal(command: str, cwd: Path) -> Iterator[queue.Queue[str]]:
    """``command`` running in a terminal of its own: its output lines (stdout
    and stderr), once it says it is connected; stopped with SIGINT after."""
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", f"exec {command}"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in iter(process.stdout.readline, ""):
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    try:
        _wait_for(lines, "iotnotify: connected")
        yield lines
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as the README says
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for(lines: queue.Queue[str], needle: str) -> str:
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            raise AssertionError(f"no {needle!r} within 60 s; it printed {seen}") from None
        seen.append(line)
        if needle in line:
            return line
        assert "Traceback" not in line, seen


def _runnable(lang: str, code: str) -> str:
    if lang != "sh":
        return code
    kept = [line for line in code.splitlines() if line.split("#", 1)[0].strip() not in STANDS_IN]
    return "\n".join(kept).strip()


def readme_blocks() -> list[tuple[str, str]]:
    blocks = [(lang, _runnable(lang, code)) for lang, code in _BLOCK.findall(README.read_text())]
    return [(lang, code) for lang, code in blocks if code]


BLOCKS = readme_blocks()


def test_the_readme_blocks_are_found_and_are_shell_or_python() -> None:
    languages = [lang for lang, _ in _BLOCK.findall(README.read_text())]
    assert set(languages) <= {"sh", "python"}, languages
    assert [lang for lang, _ in BLOCKS].count("python") >= 2
    assert any("iotnotify send" in code for _, code in BLOCKS)


@pytest.fixture
def started_here(local_stack: RunningStack, tmp_path: Path) -> Path:
    """A directory like the one `make run` was started in."""
    (tmp_path / ".iotnotify").mkdir()
    shutil.copy(local_stack.state_file, tmp_path / ".iotnotify" / "local.json")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1], target_is_directory=True)
    # The subscriber example reads alice's inbox: make sure it is not empty.
    with Publisher.from_state_file(local_stack.state_file) as publisher:
        alice = local_stack.user("alice")["sub"]
        publisher.notify(alice, title="waiting in the inbox")
    return tmp_path


@pytest.mark.parametrize(
    ("lang", "code"), BLOCKS, ids=[f"{i}-{lang}" for i, (lang, _) in enumerate(BLOCKS)]
)
def test_readme_block_runs_against_iotnotify_local(
    lang: str, code: str, started_here: Path
) -> None:
    apart, code = _own_terminals(code) if lang == "sh" else ([], code)
    argv = (
        ["bash", "-euo", "pipefail", "-c", code] if lang == "sh" else [sys.executable, "-c", code]
    )
    with contextlib.ExitStack() as terminals:
        outputs = [terminals.enter_context(_terminal(line, started_here)) for line in apart]
        done = subprocess.run(
            argv, cwd=started_here, capture_output=True, text=True, timeout=120, check=False
        )
        # What the block sent shows in the terminal that listens ("terminal 2 prints it")
        titles = [next(t for t in match if t) for match in _SENT_TITLE.findall(code)]
        for lines in outputs:
            for title in titles:
                _wait_for(lines, title)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip(), done.stderr  # every block shows something
    assert '"error"' not in done.stdout
    assert "Traceback" not in done.stderr


def _markdown_files() -> list[Path]:
    return [
        path
        for path in REPO.rglob("*.md")
        if not {"node_modules", ".venv", ".build", "cdk.out"} & set(path.parts)
    ]


def test_docs_name_only_make_targets_that_exist() -> None:
    # infra/README said `make -C web build`; web/ has no Makefile.
    calls = [
        (path, directory, target)
        for path in _markdown_files()
        for directory, target in re.findall(r"make -C (\S+) ([\w-]+)", path.read_text())
    ]
    for path, directory, target in calls:
        makefile = REPO / directory / "Makefile"
        assert makefile.exists(), f"{path}: make -C {directory}: no Makefile"
        assert re.search(rf"^{re.escape(target)}:", makefile.read_text(), re.MULTILINE), path


def test_docs_do_not_install_iotnotify_from_pypi() -> None:
    # iotnotify is not published: `pip install 'iotnotify[tray]'` fails.
    offenders = [
        str(path.relative_to(REPO))
        for path in _markdown_files()
        if re.search(r"pip install\s+['\"]?iotnotify\[", path.read_text())
    ]
    assert offenders == []
