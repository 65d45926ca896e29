"""The page's pure logic (merge by id, backoff, Cognito calls, reconnect flow) and types.

Those tests are JavaScript (``web/test/*.test.js``, ``node --test``); this
runs them as part of ``make test`` so a broken merge or backoff fails CI
even before a browser starts.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "web"


def test_node_unit_tests_pass() -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js is required for the web page (see README)"
    tests = sorted(str(p.relative_to(WEB)) for p in (WEB / "test").glob("*.test.js"))
    assert tests, "no web/test/*.test.js found"
    result = subprocess.run(
        [node, "--test", *tests],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout


def test_page_source_type_checks() -> None:
    """``tsc --checkJs`` over web/src: the JSDoc types are checked, not decoration."""
    node = shutil.which("node")
    assert node is not None
    tsc = WEB / "node_modules" / "typescript" / "bin" / "tsc"
    assert tsc.is_file(), "web/node_modules is missing: run `make setup`"
    result = subprocess.run(
        [node, str(tsc), "-p", "."],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
