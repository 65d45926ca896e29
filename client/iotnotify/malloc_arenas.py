"""Fewer glibc malloc arenas for the always-on tray (issue 11 §2).

glibc's malloc gives threads arenas of their own, up to 8 per CPU core on
64-bit systems, and keeps every arena for the life of the process: memory
freed in one arena serves only the threads using it, and the pages it has
touched stay resident. ``M_ARENA_MAX`` caps the number; it "can also be set
for the process at startup" with the environment variable
``MALLOC_ARENA_MAX`` (glibc manual, "Malloc Tunable Parameters",
https://www.gnu.org/software/libc/manual/html_node/Malloc-Tunable-Parameters.html;
mallopt(3)). The tray has pystray's loop on the main thread and, asleep
nearly always, the MQTT, dispatch, catch-up and pop-up threads: four
arenas, about 0.2 MiB of its resident memory (README, idle table).
``MALLOC_ARENA_MAX=1``: all threads share the main arena, so the space one
freed serves the next; being idle, they do not contend for its lock (2,
the main arena and one for the other threads, measured the same idle and
0.05 MiB more after a pop-up).

The limit is read when the process starts; changing it later takes
``mallopt()``, which from Python needs :mod:`ctypes`, and importing ctypes
costs about what the limit saves (0.3 MiB). So :func:`limit_malloc_arenas`
runs the same command again in the same process (``execve``: same pid,
same open files) with the variable set, once, before the command has done
anything. The new process removes the variable from its own environment,
so what it starts (the keyring helper, a browser) gets glibc's default.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, MutableMapping
from typing import Final

__all__ = ["ARENA_LIMIT", "limit_malloc_arenas"]

ARENA_LIMIT: Final = "1"
_VARIABLE: Final = "MALLOC_ARENA_MAX"
# Set for the re-executed process only: it applies the limit once, and
# tells the new process that the variable is ours, not the user's.
_MARK: Final = "IOTNOTIFY_MALLOC_ARENA_MAX_SET"

Execve = Callable[[str, list[str], Mapping[str, str]], object]


def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None  # "glibc 2.36"
    except (AttributeError, ValueError, OSError):  # not glibc (musl, macOS, Windows)
        return False


def limit_malloc_arenas(
    *,
    environ: MutableMapping[str, str] | None = None,
    execve: Execve | None = None,
    glibc: bool | None = None,
) -> None:
    """On glibc, replace this process with the same command line run with
    ``MALLOC_ARENA_MAX=1`` (:data:`ARENA_LIMIT`); returns when there is
    nothing to do: the limit is already applied (then the variable is
    removed from ``environ``, so children do not inherit it), the user set
    ``MALLOC_ARENA_MAX`` (kept as given), the C library is not glibc, or the
    interpreter's command line is unknown (an embedding app).

    Call it from a console script's entry point, before the command reads
    a password or opens anything the new process would not have, and never
    where the process is not the command's own (click's test runner, an
    embedding app): it replaces the process. ``environ`` (default
    ``os.environ``), ``execve`` (default ``os.execve``) and ``glibc``
    (default: detected) are for tests. Raises ``OSError`` if ``execve``
    fails (the interpreter cannot be run again).
    """
    env = os.environ if environ is None else environ
    if env.pop(_MARK, None) is not None:
        env.pop(_VARIABLE, None)
        return
    if _VARIABLE in env or not (_glibc() if glibc is None else glibc):
        return
    argv = list(getattr(sys, "orig_argv", ()))
    if not argv or not sys.executable:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    (execve or os.execve)(sys.executable, argv, {**env, _VARIABLE: ARENA_LIMIT, _MARK: "1"})
