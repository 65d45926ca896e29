"""How the ``iotnotify`` command line writes to the terminal: the one place
that formats its warning lines, and what it does when its reader goes away.

Every warning or progress line a command prints on stderr reads
``iotnotify: <text>``, whether the command writes it itself (:func:`warn`) or
the SDK logs it (``log.warning("ignoring a message on %s: %s", ...)`` in the
subscriber), which :func:`log_to_stderr` routes to stderr in the same form.
An error that ends a command reads ``iotnotify: error: <text>`` (:func:`error`,
:class:`CommandError`; ``iotnotify local`` prints its own the same way).
Only click's usage errors keep click's form (``Usage: ...``, ``Error: ...``),
since they come with the usage line they refer to.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Final

import click

__all__ = [
    "INTERRUPTED_EXIT_STATUS",
    "PREFIX",
    "CommandError",
    "FilePath",
    "error",
    "log_to_stderr",
    "on_stdout_reader_gone",
    "sdk_log_lines",
    "silence_stdout",
    "stdout_reader_gone",
    "warn",
]

PREFIX = "iotnotify:"
# Exit status of a command Ctrl-C ended: 128 + SIGINT, what a shell reports
# for a process the signal ended (bash manual, "Exit Status").
INTERRUPTED_EXIT_STATUS: Final = 130


def warn(text: str) -> None:
    """Print ``iotnotify: text`` on stderr: one warning or progress line."""
    click.echo(f"{PREFIX} {text}", err=True)


def error(text: str) -> None:
    """Print ``iotnotify: error: text`` on stderr: why a command failed."""
    click.echo(f"{PREFIX} {click.style('error:', fg='red')} {text}", err=True)


class CommandError(click.ClickException):
    """A command's own failure: shown as one :func:`error` line, exit status 1
    (click's ``ClickException`` prints ``Error: ...``, unlike every other line)."""

    def show(self, file: IO[Any] | None = None) -> None:
        if file is None:
            error(self.format_message())
        else:
            click.echo(f"{PREFIX} error: {self.format_message()}", file=file)


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


def stdout_reader_gone(exc: BaseException) -> bool:
    """Whether ``exc`` is stdout's reader having gone (``iotnotify rooms | head -1``):
    an ``EPIPE`` while stdout is a pipe (or socket) that nobody reads any more.

    A broken pipe from elsewhere (a socket to the API) is not: for a pipe
    without readers poll(2) reports ``POLLERR`` on the write end, which this
    asks without writing; where poll is missing, any ``EPIPE`` counts.
    """
    if not isinstance(exc, OSError) or exc.errno != errno.EPIPE:
        return False
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # io.UnsupportedOperation is an OSError
        return False
    import select

    if not hasattr(select, "poll"):
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def on_stdout_reader_gone(callback: Callable[[], None]) -> None:
    """Call ``callback`` once, on a daemon thread, when stdout is a pipe (or
    socket) whose reader has gone, whether or not anything is written:
    ``iotnotify listen | grep -m1 turn`` ends when grep does, not at the next
    notification (as GNU ``tail -f`` does since coreutils 8.28).

    poll(2) reports ``POLLERR`` (``POLLHUP`` for a socket) on the write end
    even when no event is asked for, so the thread sleeps in the kernel until
    then: no wake-ups, no CPU while idle. Does nothing for a terminal or a
    file (they have no reader to lose) or where poll is missing.
    """
    import stat

    try:
        fd = sys.stdout.fileno()
        mode = os.fstat(fd).st_mode
    except (AttributeError, ValueError, OSError):  # no stdout, or not a real file
        return
    import select

    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)) or not hasattr(select, "poll"):
        return
    import threading

    gone = select.POLLERR | select.POLLHUP | select.POLLNVAL

    def watch() -> None:
        poller = select.poll()
        poller.register(fd, 0)
        while not any(events & gone for _, events in poller.poll()):
            pass
        callback()

    threading.Thread(target=watch, name="stdout-reader", daemon=True).start()


def silence_stdout() -> None:
    """Point stdout at ``os.devnull``, so that nothing more (Python's flush at
    exit included) writes into a pipe whose reader has gone: otherwise Python
    prints "Exception ignored ... BrokenPipeError" on the way out. The recipe
    of the signal module's docs, "Note on SIGPIPE"
    (https://docs.python.org/3/library/signal.html#note-on-sigpipe).
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return  # not a real file (click's test runner): nothing is flushed at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
