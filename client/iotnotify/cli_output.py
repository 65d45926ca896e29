"""How the ``iotnotify`` command line writes to the terminal: the one place
that formats its warning lines.

Every warning or progress line a command prints on stderr reads
``iotnotify: <text>``, whether the command writes it itself (:func:`warn`) or
the SDK logs it (``log.warning("ignoring a message on %s: %s", ...)`` in the
subscriber), which :func:`log_to_stderr` routes to stderr in the same form.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

__all__ = ["PREFIX", "FilePath", "log_to_stderr", "sdk_log_lines", "warn"]

PREFIX = "iotnotify:"


def warn(text: str) -> None:
    """Print ``iotnotify: text`` on stderr: one warning or progress line."""
    click.echo(f"{PREFIX} {text}", err=True)


class _WarningLines(logging.Handler):
    """A log record as one :func:`warn` line (its message only: no level, no logger)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # click.echo looks sys.stderr up at each call, so a redirected
            # stderr (click's test runner, a caller's) gets the line.
            warn(self.format(record))
        except Exception:  # logging's contract: report, never raise
            self.handleError(record)


def log_to_stderr(level: int = logging.WARNING) -> Callable[[], None]:
    """Print the ``iotnotify`` package's log records at ``level`` and above on
    stderr as ``iotnotify: ...`` lines, from now on; returns what undoes it.

    Without it, a record reached stderr through logging's last-resort handler,
    bare (``ignoring a message on ...``), unlike every other line of the CLI.
    """
    handler = _WarningLines(level)
    package_log = logging.getLogger("iotnotify")
    previous = package_log.level
    package_log.addHandler(handler)
    if package_log.getEffectiveLevel() > level:
        package_log.setLevel(level)

    def undo() -> None:
        package_log.removeHandler(handler)
        package_log.setLevel(previous)

    return undo


@contextmanager
def sdk_log_lines(level: int = logging.WARNING) -> Iterator[None]:
    """:func:`log_to_stderr` while the block runs, undone afterwards (so a
    command called in-process, e.g. by click's test runner, leaves no handler)."""
    undo = log_to_stderr(level)
    try:
        yield
    finally:
        undo()


class FilePath(click.Path):
    """A ``--state-file``/``--settings`` path: a regular file, or none yet.

    A FIFO or a device (``/dev/stdin``) is a usage error naming what it is,
    found by a stat before anything opens it: reading one blocked the command
    for ever. Values are :class:`pathlib.Path`; directories are refused too.
    """

    def __init__(self) -> None:
        super().__init__(dir_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = super().convert(value, param, ctx)
        from iotnotify.state_file import not_a_regular_file

        kind = not_a_regular_file(Path(os.fsdecode(path)))
        if kind is not None:
            self.fail(f"{click.format_filename(path)} is {kind}, not a regular file.", param, ctx)
        return path
