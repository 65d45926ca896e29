"""The IoT emulator in its own process inside ``iotnotify local``.

``iotnotify local`` runs moto's server threads, the HTTP API, the SQS poller
and the data directory's autosave in one Python process. In a thread of that
process the emulator shares their GIL: whenever one of them holds it (a moto
request, an autosave pickling moto's state), a delivery waits, and after
every wait for I/O the emulator's thread may wait up to the interpreter's
5 ms switch interval to run again. That is what set its p99 delivery
latency under load (``bench/emulator_bench.py --only fixed-load``). Here
the emulator gets its own interpreter (``multiprocessing``, "spawn": the
parent has threads, so no fork) and its own core when one is free, and
serves on uvloop (:mod:`iotnotify_emulator.runtime`).

Credentials stay where moto is: the child asks the parent for every access
key it must verify, over a pipe, and the parent answers with what its
:class:`~iotnotify_emulator.credentials.CredentialStore` (moto's STS and
IAM) says at that moment, so revoked keys and changed policies count at
once, as in the thread. :class:`EmulatorProcess` has the attributes of
:class:`~iotnotify_emulator.server.EmulatorThread` that the stack uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import threading
import urllib.request
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from iotnotify_emulator.credentials import Credential, CredentialStore
from iotnotify_emulator.server import EmulatorConfig

__all__ = ["EmulatorProcess", "PipeCredentialStore"]

_START_TIMEOUT: Final = 60.0
_STOP_TIMEOUT: Final = 30.0


class EmulatorProcessError(RuntimeError):
    """The emulator process did not start, or a credential lookup failed in the parent."""


class PipeCredentialStore:
    """The child's store: each lookup is answered by the parent's store, over a pipe.

    One lookup at a time (a lock), so answers cannot cross. Raises
    :class:`EmulatorProcessError` when the parent's lookup raised (the
    emulator then refuses the request, as for any store error).
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._lock = threading.Lock()

    def lookup(self, access_key_id: str) -> Credential | None:
        with self._lock:
            self._connection.send(access_key_id)
            status, value = self._connection.recv()
        if status != "ok":
            raise EmulatorProcessError(f"credential lookup failed in iotnotify local: {value}")
        result: Credential | None = value
        return result


def _answer_lookups(store: CredentialStore, connection: Connection) -> None:
    """Parent side: serve the child's lookups until its end of the pipe closes."""
    while True:
        try:
            access_key_id = connection.recv()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[str, Any] = ("ok", store.lookup(access_key_id))
        except Exception as exc:  # the child reports it; the parent's thread must live on
            reply = ("error", repr(exc))
        try:
            connection.send(reply)
        except (BrokenPipeError, OSError):
            return


def _serve(config: EmulatorConfig, lookups: Connection, control: Connection) -> None:
    """Child process entry point: serve until SIGTERM or until the parent is gone."""
    # Ctrl-C reaches the whole process group; the parent stops us in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from iotnotify_emulator.runtime import run, tune_gc_for_serving
    from iotnotify_emulator.server import start_emulator

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with start_emulator(config, credentials=PipeCredentialStore(lookups)) as emulator:
            tune_gc_for_serving()
            control.send(
                {
                    "pid": os.getpid(),
                    "ws_port": emulator.ws_port,
                    "wss_port": emulator.wss_port,
                    "ws_url": emulator.ws_url,
                    "wss_url": emulator.wss_url,
                    "data_url": emulator.data_url,
                    "data_url_tls": emulator.data_url_tls,
                    "ca_file": str(emulator.ca_file) if emulator.ca_file else None,
                    "admin_secret": emulator.admin_secret,
                }
            )

            def watch_parent() -> None:
                # The parent never writes here after start-up: EOF means it is gone.
                with contextlib.suppress(EOFError, OSError):
                    control.recv()
                loop.call_soon_threadsafe(stop.set)

            threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
            await stop.wait()

    run(main())


class EmulatorProcess:
    """Start/stop the emulator in a child process; attributes mirror ``EmulatorThread``."""

    def __init__(self, config: EmulatorConfig, *, credentials: CredentialStore) -> None:
        self.config = config
        self._credentials = credentials
        self._process: Any = None
        self._lookups: Connection | None = None
        self._control: Connection | None = None
        self._server: threading.Thread | None = None
        self._info: dict[str, Any] = {}

    def start(self) -> EmulatorProcess:
        """Start the child and return once its ports are bound (at most 60 s)."""
        context = multiprocessing.get_context("spawn")
        lookups, child_lookups = context.Pipe()
        control, child_control = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(self.config, child_lookups, child_control),
            name="iotnotify-emulator",
            daemon=True,  # never outlives iotnotify local
        )
        self._process.start()
        child_lookups.close()
        child_control.close()
        self._lookups, self._control = lookups, control
        self._server = threading.Thread(
            target=_answer_lookups,
            args=(self._credentials, lookups),
            name="emulator-credentials",
            daemon=True,
        )
        self._server.start()
        if not control.poll(_START_TIMEOUT):
            self.stop()
            raise EmulatorProcessError(f"the emulator did not start within {_START_TIMEOUT:.0f} s")
        try:
            self._info = control.recv()
        except EOFError as exc:
            self.stop()
            raise EmulatorProcessError(
                f"the emulator process exited at start-up ({self._process.exitcode})"
            ) from exc
        return self

    def stop(self) -> None:
        """SIGTERM (the emulator closes every connection as on shutdown), then SIGKILL."""
        process = self._process
        if process is not None and process.is_alive():
            process.terminate()
            process.join(_STOP_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join(_STOP_TIMEOUT)
        for connection in (self._lookups, self._control):
            if connection is not None:
                connection.close()
        if self._server is not None:
            self._server.join(_STOP_TIMEOUT)
        self._lookups = self._control = self._server = None

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _field(self, name: str) -> Any:
        if not self._info:
            raise EmulatorProcessError("EmulatorProcess is not started")
        return self._info[name]

    @property
    def pid(self) -> int:
        pid: int = self._field("pid")
        return pid

    @property
    def ws_url(self) -> str:
        url: str = self._field("ws_url")
        return url

    @property
    def wss_url(self) -> str | None:
        url: str | None = self._field("wss_url")
        return url

    @property
    def data_url(self) -> str:
        url: str = self._field("data_url")
        return url

    @property
    def admin_secret(self) -> str:
        """The per-start secret ``/_emulator/restart`` and the full stats ask for."""
        secret: str = self._field("admin_secret")
        return secret

    @property
    def data_url_tls(self) -> str | None:
        url: str | None = self._field("data_url_tls")
        return url

    @property
    def ca_file(self) -> Path | None:
        path = self._field("ca_file")
        return Path(path) if path else None

    @property
    def ws_port(self) -> int:
        port: int = self._field("ws_port")
        return port

    @property
    def wss_port(self) -> int | None:
        port: int | None = self._field("wss_port")
        return port

    def stats(self) -> dict[str, Any]:
        """The emulator's ``/_emulator/stats`` (counters, recent refusals), as JSON."""
        from iotnotify_emulator.server import ADMIN_HEADER

        request = urllib.request.Request(  # noqa: S310 - our own http:// endpoint
            f"{self.data_url}/_emulator/stats", headers={ADMIN_HEADER: self.admin_secret}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            data: dict[str, Any] = json.load(answer)
        return data
