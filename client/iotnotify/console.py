"""The ``iotnotify`` console script: Ctrl-C handled before anything is imported.

The script pip generates runs ``from <module> import main`` and then
``main()``. With :mod:`iotnotify.cli` as that module, click and the CLI's
modules were imported by the script itself, before any of our code ran: a
Ctrl-C in those first tens of milliseconds (``iotnotify tray`` started and
stopped at once) ended in a ``KeyboardInterrupt`` traceback. This module
imports nothing but :mod:`sys` (already loaded by the interpreter), so
:func:`main` is on the stack before the first import of the CLI, and a
Ctrl-C that nothing later handles is one line, ``iotnotify: interrupted``,
with exit status 130 (128 + SIGINT, bash manual "Exit Status"), for every
command. A handler is not installed for this: Python's own SIGINT handler,
in place before any script runs, raises ``KeyboardInterrupt``, and catching
that here keeps every command's own Ctrl-C handling (``listen``'s
"stopped", ``local``'s clean-up) as it is.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

# 128 + SIGINT, as a shell reports a command that SIGINT ended.
_INTERRUPTED = 130


def main() -> None:
    """Run the ``iotnotify`` command line (:func:`iotnotify.cli.main`)."""
    try:
        from iotnotify.cli import main as run

        run()
    except KeyboardInterrupt:
        # click may not be imported yet: plain writes, the same line as
        # iotnotify.cli_output.warn prints.
        try:
            sys.stderr.write("iotnotify: interrupted\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # no stderr to say it on: the status says it
        raise SystemExit(_INTERRUPTED) from None
