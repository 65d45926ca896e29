"""The IoT emulator in a process of its own inside ``iotnotify local``.

Why: ``iotnotify local`` runs moto's server threads, the HTTP API, the SQS
poller, the data directory's autosave and the Lambda handlers that topic
rules invoke. In a thread of that process the emulator shared their GIL, and
every millisecond one of them held it was a millisecond no message was
delivered. Measured with ``bench/emulator_bench.py --only fixed-load``
(10,000 msg/s, 1,400 connections) and a loop-lag probe: the presence events
of a connect storm (topic rule -> presence Lambda -> DynamoDB in moto, about
20 s of GIL time for 1,400 CONNECTs) and each autosave (pickling moto's
state, 110-130 ms every 30 s) stalled the emulator's loop for 100-300 ms,
which was the whole p99. Here the emulator has its own interpreter
(``multiprocessing`` "spawn": the parent has threads, so no fork) and, on a
machine with a core to spare, its own core.

What crosses the process boundary, and how it stays what AWS does:

* **Credentials** stay where moto is. The child asks the parent for each
  access key it has not seen (:class:`PipeCredentialStore`), and keeps the
  answer until IAM changes (and the parent pushes each role session its
  store honours as it is issued, so a session's first connect asks nobody):
  the parent counts IAM writes
  (:func:`iotnotify_emulator.moto_credentials.count_iam_changes`) in a
  shared counter that the child compares on every lookup, so a deactivated
  key, a deleted user or a changed policy counts from the next request on,
  as in the thread, without a round trip per request.
* **Topic rules**: the child runs the rules engine (SQL, statistics,
  republish), so ``GET /_emulator/stats`` and docs/emulator-rules.md hold
  unchanged; the actions that need the stack (the Lambda handlers, the SQS
  error actions on moto's queues) run in the parent (:class:`RuleBridge`),
  and the child's worker thread waits for the outcome, so a failing action
  is counted and sent to the rule's error action as before. On AWS the rules
  engine invokes Lambda asynchronously, from another service: the hop is
  faithful.
* **Lifetime**: the child ignores Ctrl-C (the parent stops it in order),
  stops on SIGTERM, and stops by itself when the parent is gone (its end of
  the control pipe closes), so killing ``iotnotify local`` by pid, even with
  SIGKILL, leaves nothing behind. The other way round, the parent watches
  the child (:meth:`EmulatorProcess.on_exit`), and ``iotnotify local``
  stops with an error when its emulator dies.

:class:`EmulatorProcess` has the attributes of
:class:`~iotnotify_emulator.server.EmulatorThread` that the stack uses.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import threading
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from iotnotify_emulator.credentials import Credential, CredentialStore
from iotnotify_emulator.rules import RepublishAction, Rule, RuleAction, RulesEngine
from iotnotify_emulator.rules_sql import MessageContext
from iotnotify_emulator.server import EmulatorConfig

__all__ = [
    "EmulatorProcess",
    "EmulatorProcessError",
    "PipeCredentialStore",
    "RemoteAction",
    "RemoteActionError",
    "RuleBridge",
]

_START_TIMEOUT: Final = 60.0
_UNKNOWN_ONCE_KEPT: Final = 1024
_STOP_TIMEOUT: Final = 30.0
# How long a rule action may run in the parent before the child gives up on it
# (Lambda's own limit is 15 minutes; the stack's handlers take milliseconds).
_ACTION_TIMEOUT: Final = 60.0


class EmulatorProcessError(RuntimeError):
    """The emulator process did not start, is not running, or a lookup failed in the parent."""


# --- credentials -----------------------------------------------------------------------


class PipeCredentialStore:
    """The child's store: lookups answered by the parent's store, cached until IAM changes.

    ``generation`` is a shared counter the parent bumps after every IAM write
    (``count_iam_changes``); a cached answer older than the counter is asked
    again. Unknown keys are never cached (a key may be minted a moment later).

    Requests are pipelined: each is written at once and a reader thread
    matches the answers in order (the parent answers one at a time, in the
    order asked), so several lookups can be on the wire together.
    :meth:`prefetch` is what the server awaits before it verifies a
    signature: the event loop goes on serving while the parent answers, and
    the verification then finds the key in the cache. A connect storm made
    the synchronous round trip the limit: the loop sat in ``recv`` 45% of
    the time, and 1,000 role-session subscribers connected at 200-290/s
    (``bench/emulator_bench.py --only fixed-load``, 18:31 UTC), while the
    parent ran the presence Lambda for each. :meth:`lookup` of a key not
    cached still waits for its answer (iot-data, tests).

    Raises :class:`EmulatorProcessError` when the parent's lookup raised or
    the parent is gone (the emulator then refuses the request, as for any
    store error).
    """

    def __init__(self, connection: Connection, generation: Any) -> None:
        self._connection = connection
        self._generation = generation  # multiprocessing RawValue("Q")
        # Sending and queueing a waiter happen under one lock, so the order
        # of the waiters is the order of the requests on the wire.
        self._lock = threading.Lock()
        self._waiting: collections.deque[tuple[str, int, Future[Credential | None]]] = (
            collections.deque()
        )
        # One request per key at a time: a connect storm of one user's
        # devices asks once.
        self._in_flight: dict[str, Future[Credential | None]] = {}
        self._gone: str | None = None
        self._cache: dict[str, tuple[int, Credential]] = {}
        self._cached_generation = 0
        # Keys a prefetch just learnt are unknown, for the lookup of the same
        # request that follows (unknown keys are not cached: a key may be
        # minted a moment later); without it a flood of made-up keys would
        # make the loop wait on a second round trip for each.
        self._unknown_once: set[str] = set()
        # Reads from the start: the parent pushes sessions before any lookup,
        # and a pipe nobody reads would fill and hold up the parent's sender.
        self._reader = threading.Thread(target=self._read, name="credential-answers", daemon=True)
        self._reader.start()

    def _follow_generation(self, generation: int) -> None:
        if generation != self._cached_generation:
            # Whatever IAM change it was, every cached answer may be stale.
            self._cache.clear()
            self._cached_generation = generation

    def _cached(self, access_key_id: str) -> Credential | None:
        self._follow_generation(int(self._generation.value))
        hit = self._cache.get(access_key_id)
        return None if hit is None else hit[1]

    def _remember(self, access_key_id: str, credential: Credential, generation: int) -> None:
        """Cache an answer or a push made at ``generation``, unless IAM has changed since."""
        if generation != int(self._generation.value):
            return
        self._follow_generation(generation)
        self._cache[access_key_id] = (generation, credential)

    def lookup(self, access_key_id: str) -> Credential | None:
        hit = self._cached(access_key_id)
        if hit is not None:
            return hit
        if access_key_id in self._unknown_once:
            self._unknown_once.discard(access_key_id)
            return None
        return self._ask(access_key_id).result()

    async def prefetch(self, access_key_id: str) -> None:
        """Have ``access_key_id``'s answer in the cache (or known unknown) without
        blocking the event loop; errors surface in the :meth:`lookup` that follows."""
        if self._cached(access_key_id) is not None:
            return
        try:
            answer = await asyncio.wrap_future(self._ask(access_key_id))
        except Exception:  # the lookup that follows asks again and reports it
            return
        if answer is None:
            if len(self._unknown_once) >= _UNKNOWN_ONCE_KEPT:
                self._unknown_once.clear()
            self._unknown_once.add(access_key_id)

    def _ask(self, access_key_id: str) -> Future[Credential | None]:
        with self._lock:
            pending = self._in_flight.get(access_key_id)
            if pending is not None:
                return pending
            future: Future[Credential | None] = Future()
            if self._gone is not None:
                future.set_exception(EmulatorProcessError(self._gone))
                return future
            try:
                self._connection.send(access_key_id)
            except (OSError, ValueError) as exc:
                future.set_exception(
                    EmulatorProcessError(f"credential lookup failed in iotnotify local: {exc!r}")
                )
                return future
            self._waiting.append((access_key_id, int(self._generation.value), future))
            self._in_flight[access_key_id] = future
        return future

    def _read(self) -> None:
        while True:
            try:
                message = self._connection.recv()
            except (EOFError, OSError) as exc:
                self._fail_all(f"iotnotify local stopped answering credential lookups: {exc!r}")
                return
            if message[0] == "push":
                # A session the parent honoured as it was issued; kept while
                # IAM is unchanged since, like any answer.
                _, access_key_id, credential, generation = message
                self._remember(access_key_id, credential, generation)
                continue
            status, value = message
            with self._lock:
                access_key_id, generation, future = self._waiting.popleft()
                self._in_flight.pop(access_key_id, None)
            if status != "ok":
                future.set_exception(
                    EmulatorProcessError(f"credential lookup failed in iotnotify local: {value}")
                )
                continue
            result: Credential | None = value
            if result is not None:
                self._remember(access_key_id, result, generation)
            future.set_result(result)

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            self._gone = reason
            waiting = list(self._waiting)
            self._waiting.clear()
            self._in_flight.clear()
        for _, _, future in waiting:
            future.set_exception(EmulatorProcessError(reason))


class _LookupServer:
    """Parent side of the credentials pipe: answers the child's lookups, in the
    order asked, and pushes the role sessions the store honours as they are
    issued (:meth:`push`), so the child knows a session before its first
    connect and that connect waits on nobody. The child tells a push from an
    answer by its first field.

    One thread writes the pipe (:meth:`send`), from one queue: answers and
    pushes go out in the order they were queued, and :meth:`push`, called on
    the thread answering AssumeRole, never waits on the pipe.
    """

    def __init__(self, store: CredentialStore, connection: Connection, generation: Any) -> None:
        self._store = store
        self._connection = connection
        self._generation = generation
        self._outgoing: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()

    def serve(self) -> None:
        """Answer the child's lookups until its end of the pipe closes."""
        while True:
            try:
                access_key_id = self._connection.recv()
            except (EOFError, OSError):
                return
            try:
                reply: tuple[Any, ...] = ("ok", self._store.lookup(access_key_id))
            except Exception as exc:  # the child reports it; this thread must live on
                reply = ("error", repr(exc))
            self._outgoing.put(reply)

    def push(self, access_key_id: str, credential: Credential) -> None:
        """Tell the child about a session honoured at issue (a store's issue
        listener); returns at once."""
        self._outgoing.put(("push", access_key_id, credential, int(self._generation.value)))

    def send(self) -> None:
        """Write what is queued until :meth:`close` or the pipe closes."""
        while (message := self._outgoing.get()) is not None:
            try:
                self._connection.send(message)
            except (OSError, ValueError):
                return

    def close(self) -> None:
        self._outgoing.put(None)


# --- topic rules -----------------------------------------------------------------------


class RemoteActionError(Exception):
    """A rule action failed in the parent; the subclass is named after the parent's error.

    The rules engine reports a failure as ``"<ExceptionType>: <message>"`` in
    the error action's ``errorMessage``; naming the subclass after the
    original type keeps that text what it was in one process.
    """


_ERROR_TYPES: dict[str, type[RemoteActionError]] = {}


def _remote_error(type_name: str, message: str) -> RemoteActionError:
    cls = _ERROR_TYPES.get(type_name)
    if cls is None:
        cls = type(type_name, (RemoteActionError,), {"__module__": __name__})
        _ERROR_TYPES[type_name] = cls
    return cls(message)


class _ActionCaller:
    """Child side: sends action calls to the parent and waits for their outcome."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, Future[None]] = {}
        self._waiting_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="rule-replies", daemon=True)
        self._reader.start()

    def call(
        self, rule: str, slot: int, output: dict[str, Any] | bytes, ctx: MessageContext
    ) -> None:
        call_id = next(self._ids)
        future: Future[None] = Future()
        with self._waiting_lock:
            self._waiting[call_id] = future
        try:
            with self._send_lock:
                self._connection.send((call_id, rule, slot, output, ctx))
        except OSError as exc:
            with self._waiting_lock:
                self._waiting.pop(call_id, None)
            raise EmulatorProcessError("iotnotify local is gone") from exc
        future.result(timeout=_ACTION_TIMEOUT)

    def _read(self) -> None:
        while True:
            try:
                call_id, error = self._connection.recv()
            except (EOFError, OSError):
                break
            with self._waiting_lock:
                future = self._waiting.pop(call_id, None)
            if future is None:
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(_remote_error(*error))
        with self._waiting_lock:
            waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            future.set_exception(EmulatorProcessError("iotnotify local is gone"))


@dataclass(frozen=True, slots=True)
class RemoteAction:
    """A rule action that runs in the parent (``kind`` and ``resource`` as the original's)."""

    kind: str
    resource: str
    rule: str
    slot: int  # index in the rule's actions; -1 for its error action
    caller: Any  # _ActionCaller

    def run(self, output: dict[str, Any] | bytes, ctx: MessageContext) -> None:
        self.caller.call(self.rule, self.slot, output, ctx)


def _describe(action: RuleAction, rule: str, slot: int) -> tuple[Any, ...]:
    if isinstance(action, RepublishAction):
        # Publishing is the broker's own job: it stays in the child.
        return ("republish", action.topic, action.qos)
    return ("remote", action.kind, action.resource, rule, slot)


def _rebuild(description: tuple[Any, ...], caller: _ActionCaller) -> RuleAction:
    if description[0] == "republish":
        return RepublishAction(description[1], description[2])
    _, kind, resource, rule, slot = description
    return RemoteAction(kind, resource, rule, slot, caller)


class RuleBridge:
    """Parent side of the topic rules: describes them to the child, runs their actions.

    ``rules`` are the stack's real rules (Lambda handlers, SQS clients); the
    child rebuilds each with the same name and SQL and actions that call
    back here. ``max_workers`` bounds the actions running at once, as the
    engine's own worker pool does in one process.
    """

    def __init__(self, rules: Sequence[Rule], *, max_workers: int = 4) -> None:
        self._rules = {rule.name: rule for rule in rules}
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rule")
        self._send_lock = threading.Lock()

    def description(self) -> list[dict[str, Any]]:
        """Picklable: name, SQL, enabled and each action (kind, resource) of every rule."""
        described = []
        for rule in self._rules.values():
            error = rule.error_action
            described.append(
                {
                    "name": rule.name,
                    "sql": rule.statement.sql,
                    "enabled": rule.enabled,
                    "actions": [
                        _describe(action, rule.name, slot)
                        for slot, action in enumerate(rule.actions)
                    ],
                    "error_action": None if error is None else _describe(error, rule.name, -1),
                }
            )
        return described

    def serve(self, connection: Connection) -> None:
        """Run the child's action calls until its end of the pipe closes."""
        while True:
            try:
                call = connection.recv()
            except (EOFError, OSError):
                return
            try:
                self._executor.submit(self._run, connection, *call)
            except RuntimeError:  # shut down: the stack is stopping
                return

    def _run(
        self,
        connection: Connection,
        call_id: int,
        rule_name: str,
        slot: int,
        output: dict[str, Any] | bytes,
        ctx: MessageContext,
    ) -> None:
        error: tuple[str, str] | None = None
        try:
            rule = self._rules[rule_name]
            action = rule.error_action if slot < 0 else rule.actions[slot]
            if action is None:
                raise LookupError(f"rule {rule_name} has no error action")
            action.run(output, ctx)
        except Exception as exc:  # reported to the child, which counts it as AWS would
            error = (type(exc).__name__, str(exc))
        with contextlib.suppress(OSError), self._send_lock:
            connection.send((call_id, error))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _engine_from(description: list[dict[str, Any]], caller: _ActionCaller) -> RulesEngine:
    rules = []
    for item in description:
        error = item["error_action"]
        rules.append(
            Rule.create(
                item["name"],
                item["sql"],
                [_rebuild(action, caller) for action in item["actions"]],
                error_action=None if error is None else _rebuild(error, caller),
                enabled=item["enabled"],
            )
        )
    return RulesEngine(rules)


# --- the child ---------------------------------------------------------------------------


def _serve(
    config: EmulatorConfig,
    lookups: Connection,
    generation: Any,
    control: Connection,
    actions: Connection,
) -> None:
    """Child process entry point: serve until SIGTERM or until the parent is gone."""
    # Ctrl-C reaches the whole process group; the parent stops us in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from iotnotify_emulator.runtime import run, tune_gc_for_serving
    from iotnotify_emulator.server import start_emulator

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError):  # Windows: terminate() kills outright
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        store = PipeCredentialStore(lookups, generation)
        async with start_emulator(config, credentials=store) as emulator:
            tune_gc_for_serving()
            control.send(
                {
                    "pid": os.getpid(),
                    "ws_port": emulator.ws_port,
                    "wss_port": emulator.wss_port,
                    "ws_url": emulator.ws_url,
                    "wss_url": emulator.wss_url,
                    "data_url": emulator.data_url,
                    "ca_file": str(emulator.ca_file) if emulator.ca_file else None,
                    "admin_secret": emulator.admin_secret,
                }
            )
            engines: list[RulesEngine] = []

            def install(description: list[dict[str, Any]]) -> None:
                engine = _engine_from(description, _ActionCaller(actions))
                engines.append(engine)
                emulator.install_rules(engine)

            def listen() -> None:
                # The parent sends the rules once; EOF means it is gone.
                with contextlib.suppress(EOFError, OSError):
                    while True:
                        message = control.recv()
                        done = asyncio.run_coroutine_threadsafe(_call(install, message), loop)
                        done.result()
                        control.send("installed")
                loop.call_soon_threadsafe(stop.set)

            threading.Thread(target=listen, name="parent-watch", daemon=True).start()
            await stop.wait()
            for engine in engines:
                engine.close()

    run(main())


async def _call(func: Callable[[Any], None], argument: Any) -> None:
    func(argument)


# --- the parent --------------------------------------------------------------------------


class EmulatorProcess:
    """Start/stop the emulator in a child process; attributes mirror ``EmulatorThread``.

    ``generation`` is the shared IAM change counter the child's credential
    cache follows (:func:`~iotnotify_emulator.moto_credentials.count_iam_changes`
    bumps it); None means the store never changes behind the child's back.
    """

    def __init__(
        self,
        config: EmulatorConfig,
        *,
        credentials: CredentialStore,
        generation: Any = None,
    ) -> None:
        self.config = config
        self._credentials = credentials
        self._context = multiprocessing.get_context("spawn")
        self.generation: Any = (
            generation if generation is not None else self._context.RawValue("Q", 0)
        )
        self._process: Any = None
        self._pipes: list[Connection] = []
        self._control: Connection | None = None
        self._actions: Connection | None = None
        self._threads: list[threading.Thread] = []
        self._bridge: RuleBridge | None = None
        self._info: dict[str, Any] = {}
        self._stopping = False
        self._unlisten: Callable[[], None] | None = None
        self._lookup_server: _LookupServer | None = None

    def start(self) -> EmulatorProcess:
        """Start the child and return once its ports are bound (at most 60 s).

        Raises :class:`EmulatorProcessError` if it exits or does not start in time.
        """
        context = self._context
        self._stopping = False
        lookups, child_lookups = context.Pipe()
        control, child_control = context.Pipe()
        actions, child_actions = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(self.config, child_lookups, self.generation, child_control, child_actions),
            name="iotnotify-emulator",
            daemon=True,  # never outlives iotnotify local
        )
        self._process.start()
        for end in (child_lookups, child_control, child_actions):
            end.close()
        self._pipes = [lookups, control, actions]
        self._control, self._actions = control, actions
        server = _LookupServer(self._credentials, lookups, self.generation)
        self._spawn_thread(server.serve, (), "emulator-credentials")
        self._spawn_thread(server.send, (), "emulator-credential-writer")
        self._lookup_server = server
        add_listener = getattr(self._credentials, "add_issue_listener", None)
        if add_listener is not None:  # MotoCredentialStore: sessions pushed as issued
            self._unlisten = add_listener(server.push)
        if not control.poll(_START_TIMEOUT):
            self.stop()
            raise EmulatorProcessError(f"the emulator did not start within {_START_TIMEOUT:.0f} s")
        try:
            self._info = control.recv()
        except EOFError as exc:
            # The pipe closes as the child exits, a moment before it can be
            # reaped: join it first, or its exit code still reads None.
            self._process.join(_STOP_TIMEOUT)
            code = self._process.exitcode
            self.stop()
            raise EmulatorProcessError(
                f"the emulator process exited at start-up (exit code {code})"
            ) from exc
        return self

    def _spawn_thread(self, target: Callable[..., None], args: tuple[Any, ...], name: str) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def on_exit(self, callback: Callable[[int | None], None]) -> None:
        """Call ``callback(exit code)`` on a thread of its own if the child exits
        before :meth:`stop` was asked (killed, out of memory, a crash).

        ``iotnotify local`` stops on it: otherwise the page, the API and moto
        would go on answering with nothing behind the IoT endpoints. The
        callback must not call :meth:`stop` itself (it runs on the thread
        :meth:`stop` waits for); it should hand over to another thread.
        """
        process = self._process
        if process is None:
            raise EmulatorProcessError("EmulatorProcess is not started")

        def watch() -> None:
            # The sentinel is readable once the child has exited; waiting on
            # it reaps nothing, so stop() stays the one that joins it.
            multiprocessing.connection.wait([process.sentinel])
            if self._stopping:
                return
            process.join(_STOP_TIMEOUT)
            callback(process.exitcode)

        self._spawn_thread(watch, (), "emulator-watch")

    def install_rules(self, rules: Sequence[Rule]) -> None:
        """Run ``rules`` on every message the child accepts; their actions run here."""
        control, actions = self._control, self._actions
        if control is None or actions is None:
            raise EmulatorProcessError("EmulatorProcess is not started")
        bridge = RuleBridge(rules)
        self._bridge = bridge
        self._spawn_thread(bridge.serve, (actions,), "emulator-rules")
        control.send(bridge.description())
        if not control.poll(_START_TIMEOUT):
            raise EmulatorProcessError("the emulator did not install the topic rules")
        control.recv()

    def stop(self) -> None:
        """SIGTERM (the emulator closes every connection as on shutdown), then SIGKILL."""
        self._stopping = True
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        if self._lookup_server is not None:
            self._lookup_server.close()
            self._lookup_server = None
        process = self._process
        if process is not None and process.is_alive():
            process.terminate()
            process.join(_STOP_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join(_STOP_TIMEOUT)
        for connection in self._pipes:
            connection.close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(_STOP_TIMEOUT)
        if self._bridge is not None:
            self._bridge.close()
        self._pipes, self._threads = [], []
        self._control = self._actions = self._bridge = None

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
        """The child's process id."""
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
