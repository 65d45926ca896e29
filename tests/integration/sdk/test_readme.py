"""Every code block of the README runs, as written, against ``iotnotify local``.

Issue 12 item 9: newcomers follow the README word for word, and its Python
snippets used to go to real AWS (and retry forever in silence). Each block
runs in a fresh directory laid out like the one ``make run`` was started in:
``.iotnotify/local.json`` (the running stack's state file) and ``.venv``.
Two shell lines are not run because the test stands in for them:
``make run`` is the running stack itself and ``make test`` is this suite.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iotnotify.publisher import Publisher
from tests.integration.sdk.conftest import REPO, RunningStack

README = REPO / "README.md"
STANDS_IN = frozenset({"make run", "make test"})
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


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
    argv = (
        ["bash", "-euo", "pipefail", "-c", code] if lang == "sh" else [sys.executable, "-c", code]
    )
    done = subprocess.run(
        argv, cwd=started_here, capture_output=True, text=True, timeout=120, check=False
    )
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
