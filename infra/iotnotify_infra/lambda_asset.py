"""The Lambda code asset, built without Docker.

The asset is the two packages (``iotnotify`` and ``iotnotify_handlers``)
plus the pure-Python dependencies the Lambda runtime lacks. boto3 ships with
the runtime and Powertools comes from its public layer, so only what is left
is installed, with pip told to pick wheels for the *Lambda* platform
(manylinux aarch64, CPython 3.12) rather than for this machine.

Installing takes seconds and needs PyPI, so the result is kept in a cache
directory keyed by everything that goes into it: synthesising again (every
test module does) only copies the two small packages.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Final

__all__ = [
    "DONE_MARKER",
    "LAMBDA_PACKAGES",
    "LAMBDA_PLATFORM",
    "LAMBDA_PYTHON_VERSION",
    "LAMBDA_REQUIREMENTS",
    "REPO_ROOT",
    "LambdaAssetError",
    "stage_lambda_code",
]

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
LAMBDA_PYTHON_VERSION: Final = "3.12"
LAMBDA_PLATFORM: Final = "manylinux2014_aarch64"
# Source directories copied whole; their parents are on sys.path locally.
LAMBDA_PACKAGES: Final = (
    REPO_ROOT / "client" / "iotnotify",
    REPO_ROOT / "handlers" / "iotnotify_handlers",
)
# What the handlers import that neither the runtime (boto3) nor the
# Powertools layer provides. The contract's ULIDs come from python-ulid; the
# chat moderator's look-alike letters from confusable-homoglyphs.
LAMBDA_REQUIREMENTS: Final = ("python-ulid>=3.0,<4", "confusable-homoglyphs>=3.3,<4")

_IGNORE: Final = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".pytest_cache")
DONE_MARKER: Final = ".iotnotify-complete"


class LambdaAssetError(RuntimeError):
    """The Lambda code could not be staged (pip failed, a package is missing)."""


def _source_files(packages: Iterable[Path]) -> list[tuple[str, Path]]:
    """(path inside the asset, file) for every source file, in a stable order."""
    files: list[tuple[str, Path]] = []
    for package in packages:
        if not package.is_dir():
            raise LambdaAssetError(f"Lambda package {package} does not exist")
        files.extend(
            (f"{package.name}/{p.relative_to(package).as_posix()}", p)
            for p in sorted(package.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
        )
    return files


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:20]


def _atomic_build(final: Path, build: Callable[[Path], None]) -> Path:
    """Build into a sibling temp dir and rename, so a crash or a concurrent
    synthesis never sees a half-written directory."""
    if (final / DONE_MARKER).exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".", dir=final.parent))
    try:
        build(tmp)
        (tmp / DONE_MARKER).write_text("ok\n")
        try:
            tmp.rename(final)
        except OSError:
            # Someone else finished first; theirs is identical by construction.
            if not (final / DONE_MARKER).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _install_requirements(requirements: Sequence[str], target: Path) -> None:
    if not requirements:
        return
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(target),
        "--platform",
        LAMBDA_PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        LAMBDA_PYTHON_VERSION,
        "--only-binary=:all:",
        *requirements,
    ]
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        command, capture_output=True, text=True, check=False, env={**os.environ}
    )
    if result.returncode != 0:
        raise LambdaAssetError(
            "pip could not install the Lambda dependencies "
            f"{list(requirements)} for {LAMBDA_PLATFORM}/py{LAMBDA_PYTHON_VERSION}:\n"
            f"{result.stderr.strip()}"
        )
    # pip leaves a bin/ for console scripts; Lambda has no use for it.
    shutil.rmtree(target / "bin", ignore_errors=True)


def stage_lambda_code(
    *,
    cache_dir: Path | None = None,
    packages: Sequence[Path] = LAMBDA_PACKAGES,
    requirements: Sequence[str] = LAMBDA_REQUIREMENTS,
) -> Path:
    """A directory holding the complete Lambda code; built once per content.

    The directory's name is a digest of the sources and the requirement
    list, so a changed handler gives a new directory (and a new asset hash)
    while an unchanged tree is reused as is.
    """
    cache = cache_dir or REPO_ROOT / "infra" / ".build"
    req_key = _digest(
        [
            LAMBDA_PLATFORM.encode(),
            LAMBDA_PYTHON_VERSION.encode(),
            *(r.encode() for r in requirements),
        ]
    )
    deps = _atomic_build(
        cache / f"deps-{req_key}", lambda tmp: _install_requirements(requirements, tmp)
    )

    files = _source_files(packages)
    src_key = _digest(
        [req_key.encode()] + [part for name, f in files for part in (name.encode(), f.read_bytes())]
    )

    def build(tmp: Path) -> None:
        shutil.copytree(deps, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(DONE_MARKER))
        for package in packages:
            shutil.copytree(package, tmp / package.name, ignore=_IGNORE)

    code = _atomic_build(cache / f"lambda-{src_key}", build)
    _prune(cache, keep={code.name, deps.name})
    return code


def _prune(cache: Path, *, keep: set[str]) -> None:
    # Old code directories pile up with every edit of a handler; dependency
    # directories are few and slow to rebuild, so only code is pruned. The
    # age check spares a directory another synthesis is staging right now.
    cutoff = time.time() - 3600
    for old in cache.glob("lambda-*"):
        done = old / DONE_MARKER
        if old.name not in keep and done.exists() and done.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)
