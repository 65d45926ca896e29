"""Publish notifications to users through AWS IoT Core's ``iot-data`` API.

Used by Lambda functions and Python game servers. Every send is QoS 0 (IoT
meters QoS 1 acks too and subscribers catch up from the inbox anyway) and,
unless the caller marks it ephemeral, the notification is written to the
user's inbox *before* it is published, so anything a client sees live is
also there when it catches up: no gaps.

Fan-out (:meth:`Publisher.notify_many`) is built for AWS's round trip
(10-20 ms per call from outside the region, a few ms from Lambda), not for
CPU: inbox items go out in BatchWriteItem calls of 25 running in parallel,
and each batch, once stored, releases the publishes of its 25 recipients,
all on one bounded thread pool (boto3 clients are thread-safe). The pool is
no larger than the clients' HTTP connection pools (botocore keeps 10
connections per client unless ``max_pool_connections`` says otherwise; a
thread beyond that would open and drop a connection per call), and it lives
as long as the publisher, as do the clients. One result per recipient
instead of failing the whole batch on one error.

Offline users (``skip_offline=True``, DESIGN.md "Presence"): the inbox is
written as always, then the presence table (:mod:`iotnotify.presence`) is
read and the live publish is skipped for a user with no live connection, so
no IoT message is billed for someone who is away; they read it at their next
catch-up. The inbox write comes *before* the presence read, which is what
makes a connect racing the send safe (see :mod:`iotnotify.presence`). A
presence read that fails publishes anyway: a billed message is cheaper than a
late one.
"""

from __future__ import annotations

import builtins
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
except ModuleNotFoundError as exc:
    # The core install is what a subscriber needs; publishing is the [aws]
    # extra. Same exception type and ``name``, so callers that handle a
    # missing module still do; the message says what to install.
    missing = (exc.name or "boto3").partition(".")[0]
    raise ModuleNotFoundError(
        f"iotnotify.publisher needs the [aws] extra ({missing} is not installed): "
        "pip install 'iotnotify[aws]'",
        name=missing,
    ) from exc

from iotnotify.contract import Notification, Topic, TopicScheme, validate_user_id
from iotnotify.dynamodb_batch import FastBatchWrite
from iotnotify.endpoints import IotEndpoint
from iotnotify.errors import (
    ContractError,
    InvalidArgument,
    InvalidUserId,
    IotNotifyError,
    PublishError,
    Throttled,
)
from iotnotify.games import Game, GameRegistry
from iotnotify.inbox import BATCH_WRITE_LIMIT, Inbox
from iotnotify.iot_data import FastPublish
from iotnotify.presence import PresenceError, PresenceTable, UserPresence

__all__ = ["DEFAULT_FANOUT_WORKERS", "DeliveryResult", "Publisher", "delivery_report"]

# AWS calls in flight during a fan-out. At a 15 ms round trip, 128 calls in
# flight allow about 8,500 calls/s, beyond what one Python process can sign
# and parse (about 5,000 publishes/s at 0.2 ms of CPU each through
# signed_http), so the round trip never sets the pace; 64 did once publishes
# got that cheap (bench/fanout_latency.py, 10,000 users: 4.7-5.6 s at 64,
# 4.3-4.6 s at 128 on the same busy machine, the same CPU per user).
# create() sizes both clients' HTTP connection pools to match.
DEFAULT_FANOUT_WORKERS: Final = 128
_THROTTLING_CODES: Final = frozenset(
    {"ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"}
)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What happened to one recipient of a fan-out."""

    user_id: str
    ok: bool
    notification_id: str | None = None
    error: str | None = None
    # False when ``skip_offline`` found no connection: stored, not published.
    live: bool = True
    # True when the user's inbox holds it: a failed live publish is then
    # still shown, at the client's next catch-up.
    stored: bool = False


def delivery_report(results: Sequence[DeliveryResult]) -> dict[str, Any]:
    """A fan-out's results as ``POST /notify`` answers them (and ``iotnotify
    send --json`` prints them): ``{"id", "results": [{"userId", "ok"}, ...]}``,
    with ``"error"`` and ``"stored"`` (whether the inbox holds it) for a user
    not reached; ``id`` is None for no results."""
    return {
        "id": results[0].notification_id if results else None,
        "results": [
            {
                "userId": r.user_id,
                "ok": r.ok,
                **({"error": r.error, "stored": r.stored} if r.error else {}),
            }
            for r in results
        ],
    }


def _translate(exc: Exception, what: str) -> IotNotifyError:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _THROTTLING_CODES:
            return Throttled(f"{what}: throttled ({code})")
    return PublishError(f"{what}: {exc}")


class Publisher:
    """Sends notifications to users, games and everyone in one deployment.

    ``iot_data`` is a boto3 ``iot-data`` client whose endpoint is the
    account's ``iot:Data-ATS`` host (or the local emulator); ``inbox`` is
    optional so a game server without table access can still publish
    ephemeral notifications. ``games`` (the games table) is needed by
    :meth:`register_game`; ``presence`` by ``skip_offline=True`` (else
    ``ValueError``).
    """

    def __init__(
        self,
        *,
        scheme: TopicScheme,
        iot_data: Any,
        inbox: Inbox | None = None,
        max_workers: int = DEFAULT_FANOUT_WORKERS,
        games: GameRegistry | None = None,
        presence: PresenceTable | None = None,
        skip_offline: bool = False,
    ) -> None:
        if max_workers < 1:
            raise InvalidArgument(f"max_workers must be at least 1, not {max_workers!r}")
        if skip_offline and presence is None:
            raise InvalidArgument("skip_offline needs the presence table (presence=...)")
        self._scheme = scheme
        self._iot_data = iot_data
        self._inbox = inbox
        self._games = games
        self._presence_table = presence
        self._presence = presence if skip_offline else None
        self._counter_lock = threading.Lock()
        self._skipped_offline = 0
        # More threads than pooled connections only churns connections
        # (urllib3 opens one per extra caller and discards it afterwards).
        pools = [_pool_size(iot_data)]
        if inbox is not None:
            pools.append(_pool_size(inbox.client))
        self._concurrency = min([max_workers, *(size for size in pools if size)])
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    @property
    def inbox(self) -> Inbox | None:
        return self._inbox

    @property
    def iot_data(self) -> Any:
        """The iot-data client publishes go through (``FastPublish`` from :meth:`create`)."""
        return self._iot_data

    @property
    def concurrency(self) -> int:
        """AWS calls a fan-out keeps in flight at most: ``max_workers``, capped
        by the smallest HTTP connection pool of the clients it was given."""
        return self._concurrency

    @property
    def scheme(self) -> TopicScheme:
        return self._scheme

    @property
    def skip_offline(self) -> bool:
        return self._presence is not None

    @property
    def skipped_offline(self) -> int:
        """Live publishes this publisher left out because the user was offline."""
        return self._skipped_offline

    def _reachable(self, user_id: str) -> bool:
        """Whether to publish live: always, unless ``skip_offline`` finds the user away."""
        if self._presence is None:
            return True
        try:
            reachable = self._presence.reachable(user_id)
        except PresenceError:
            return True  # fail open: a billed message beats a late one
        if not reachable:
            with self._counter_lock:
                self._skipped_offline += 1
        return reachable

    def presence(self, user_ids: Iterable[str]) -> dict[str, UserPresence]:
        """Who of ``user_ids`` has a live connection now (a game's lobby, its player list).

        Raises :class:`~iotnotify.errors.InvalidArgument` (a ``ValueError``)
        when this publisher has no presence table and
        :class:`~iotnotify.presence.PresenceError` if DynamoDB fails.
        """
        if self._presence_table is None:
            raise InvalidArgument("this publisher has no presence table (presence_table=...)")
        table = self._presence_table
        return {user_id: table.of(user_id) for user_id in dict.fromkeys(user_ids)}

    def register_game(self, game_id: str, players: Iterable[str]) -> Game:
        """Register a game (or replace its players) so players can get its channel.

        After this, ``GET /token?games={game_id}`` grants each player
        subscribe + receive on the game topic; :meth:`notify_game` reaches
        them there. Raises :class:`~iotnotify.games.InvalidGame` for a bad id
        or player list, :class:`~iotnotify.games.GameStoreError` if DynamoDB
        fails, :class:`~iotnotify.errors.InvalidArgument` when this publisher has
        no games table.
        """
        if self._games is None:
            raise InvalidArgument("this publisher has no games table (games_table=...)")
        return self._games.register(game_id, players)

    def publish(self, topic: Topic, note: Notification) -> None:
        """Publish one envelope to one topic, QoS 0."""
        self._publish_payload(topic, note.to_json())  # PayloadTooLarge before any AWS call

    def _publish_payload(self, topic: Topic, payload: bytes) -> None:
        try:
            self._iot_data.publish(topic=topic.value, qos=0, payload=payload)
        except (BotoCoreError, ClientError) as exc:
            raise _translate(exc, f"publish to {topic.value}") from exc

    def notify(
        self,
        user_id: str,
        *,
        title: str,
        body: str = "",
        type: str = "notification",
        data: Mapping[str, Any] | None = None,
        ephemeral: bool = False,
    ) -> Notification:
        """Send one notification to one user; returns what was sent."""
        topic = self._scheme.user_notifications(user_id)
        note = Notification.create(title=title, body=body, type=type, data=data)
        if not ephemeral and self._inbox is not None:
            self._inbox.put(user_id, note)
        # After the inbox write, never before (module docstring).
        if self._reachable(user_id):
            self.publish(topic, note)
        return note

    def notify_many(
        self,
        user_ids: Iterable[str],
        *,
        title: str,
        body: str = "",
        type: str = "notification",
        data: Mapping[str, Any] | None = None,
        ephemeral: bool = False,
    ) -> list[DeliveryResult]:
        """Send the same notification to many users concurrently.

        Returns one :class:`DeliveryResult` per recipient, in the order given;
        duplicates are sent once. Invalid user ids fail alone; a user whose
        inbox item could not be written fails and is not published to, as
        with :meth:`notify` (a BatchWriteItem call that fails outright fails
        its 25 users). At most :attr:`concurrency` AWS calls
        are in flight. Raises :class:`~iotnotify.errors.PayloadTooLarge`
        before any AWS call when the envelope is over 128 KB.
        """
        if isinstance(user_ids, str | bytes):
            # A str is an Iterable[str] too: each character would be a "user".
            raise InvalidUserId(
                f"user_ids must be a list of user ids, not one {builtins.type(user_ids).__name__} "
                "(notify() sends to one user)"
            )
        note = Notification.create(title=title, body=body, type=type, data=data)
        payload = note.to_json()  # PayloadTooLarge before any AWS call; encoded once
        recipients = list(dict.fromkeys(user_ids))
        results: dict[str, DeliveryResult] = {}
        valid: list[str] = []
        for user_id in recipients:
            try:
                validate_user_id(user_id)
            except ContractError as exc:
                results[user_id] = DeliveryResult(user_id, ok=False, error=str(exc))
            else:
                valid.append(user_id)
        if not valid:
            return [results[user_id] for user_id in recipients]

        # send() runs only for users whose inbox write succeeded (or none was due).
        stored = not ephemeral and self._inbox is not None

        def send(user_id: str) -> DeliveryResult:
            if not self._reachable(user_id):
                return DeliveryResult(
                    user_id, ok=True, notification_id=note.id, live=False, stored=stored
                )
            try:
                self._publish_payload(self._scheme.user_notifications(user_id), payload)
            except IotNotifyError as exc:
                return DeliveryResult(
                    user_id, ok=False, notification_id=note.id, error=str(exc), stored=stored
                )
            return DeliveryResult(user_id, ok=True, notification_id=note.id, stored=stored)

        inbox = None if ephemeral else self._inbox
        # 25 publishes follow each batch write, so a quarter of the workers
        # writing keeps the publishes fed.
        work = _FanoutWork(keep_writing=max(1, self._concurrency // 4))
        if inbox is None:
            work.publishes.extend(valid)
        else:
            for start in range(0, len(valid), BATCH_WRITE_LIMIT):
                work.batches.append(valid[start : start + BATCH_WRITE_LIMIT])
            work.writes_left = len(work.batches)

        def write(batch: list[str]) -> list[str]:
            """Store one batch; returns the users to publish to (stored ones only)."""
            assert inbox is not None
            not_stored = inbox.put_batch([(user_id, note) for user_id in batch])
            for user_id, reason in not_stored.items():
                results[user_id] = DeliveryResult(
                    user_id, ok=False, notification_id=note.id, error=reason
                )
            return [user_id for user_id in batch if user_id not in not_stored]

        def worker() -> None:
            # One loop per worker thread rather than one future per user: a
            # future costs more CPU than the decision it carries.
            while True:
                task = work.next()
                if task is None:
                    return
                if isinstance(task, list):
                    stored: list[str] = []
                    try:
                        stored = write(task)
                    finally:
                        # A batch's publishes start as soon as its items are
                        # stored, so nothing is live without being in the
                        # inbox for catch-up.
                        work.written(stored)
                else:
                    results[task] = send(task)

        pool = self._pool()
        workers = [
            pool.submit(work.guard, worker) for _ in range(min(self._concurrency, len(valid)))
        ]
        for running in workers:
            running.result()
        return [results[user_id] for user_id in recipients]

    def _pool(self) -> ThreadPoolExecutor:
        """The fan-out pool, created on first use and kept (threads cost ~ms to start)."""
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._concurrency, thread_name_prefix="iotnotify-fanout"
                )
            return self._executor

    def broadcast(
        self,
        *,
        title: str,
        body: str = "",
        type: str = "broadcast",
        data: Mapping[str, Any] | None = None,
    ) -> Notification:
        """Send to everyone subscribed to the deployment's broadcast topic.

        Broadcasts are not written to every inbox: that would cost one write
        per user for a message that is usually only interesting live.
        """
        note = Notification.create(title=title, body=body, type=type, data=data)
        self.publish(self._scheme.broadcast(), note)
        return note

    def notify_game(
        self,
        game_id: str,
        *,
        title: str,
        body: str = "",
        type: str = "game",
        data: Mapping[str, Any] | None = None,
    ) -> Notification:
        """Send to a per-game topic (all players of one game)."""
        note = Notification.create(title=title, body=body, type=type, data=data)
        self.publish(self._scheme.game(game_id), note)
        return note

    @classmethod
    def create(
        cls,
        *,
        app: str,
        stage: str,
        region: str | None = None,
        endpoint: str = "",
        inbox_table: str = "",
        inbox_ttl_days: int = 7,
        session: boto3.session.Session | None = None,
        max_workers: int = DEFAULT_FANOUT_WORKERS,
        dynamodb_endpoint_url: str | None = None,
        games_table: str = "",
        presence_table: str = "",
        skip_offline: bool = False,
    ) -> Publisher:
        """A publisher wired to AWS (or to whatever the endpoints point at).

        ``endpoint`` is the data endpoint as a host (``xyz-ats.iot...``, used
        over https) or a full URL (the local emulator's ``http://...``); when
        empty it is discovered once with DescribeEndpoint, unless the standard
        ``AWS_ENDPOINT_URL_IOT_DATA_PLANE`` setting already points boto3 at it.
        Both clients are built here, once, with ``max_pool_connections`` equal
        to ``max_workers`` (botocore's default is 10); publishes go through
        :class:`~iotnotify.iot_data.FastPublish` over the iot-data client.
        ``games_table`` enables :meth:`register_game`; ``presence_table`` with
        ``skip_offline`` skips live publishes to offline users.
        """
        session = session or boto3.session.Session(region_name=region)
        client = _iot_data_client(session, endpoint, _client_config(max_workers))
        # The same requests, signer, hooks and HTTP pool as the boto3 client,
        # at about half its CPU per call (iot_data.py says what is skipped).
        iot_data = FastPublish(client, session.get_credentials)
        dynamodb: Any = None
        if inbox_table or games_table or presence_table:
            dynamodb = session.resource(
                "dynamodb",
                endpoint_url=dynamodb_endpoint_url,
                config=_client_config(max_workers),
            )
        inbox = None
        if inbox_table:
            # The fan-out's BatchWriteItem calls skip the resource's per-item
            # serialisation (dynamodb_batch.py says what that costs).
            writer = FastBatchWrite(dynamodb.meta.client, session.get_credentials)
            inbox = Inbox(
                dynamodb.Table(inbox_table), ttl_days=inbox_ttl_days, batch_write=writer.write
            )
        games = GameRegistry(dynamodb.Table(games_table)) if games_table else None
        presence = PresenceTable(dynamodb.Table(presence_table)) if presence_table else None
        return cls(
            scheme=TopicScheme(app, stage),
            iot_data=iot_data,
            inbox=inbox,
            max_workers=max_workers,
            games=games,
            presence=presence,
            skip_offline=skip_offline,
        )

    @classmethod
    def from_state_file(
        cls, path: str | Path | None = None, *, skip_offline: bool = False
    ) -> Publisher:
        """A publisher for a running ``iotnotify local`` (its state file, default
        ``.iotnotify/local.json``), signing as the stack's publisher identity,
        with its inbox, games and presence tables.

        Raises ``StateFileError`` when the stack is not running.
        """
        from iotnotify.sending import publisher_for_local

        return publisher_for_local(Path(path) if path else None, skip_offline=skip_offline)[0]

    def close(self) -> None:
        """Stop the fan-out pool's threads (idle ones; a running fan-out finishes first)."""
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _FanoutWork:
    """What a fan-out's workers take next (thread-safe).

    Publishes come first as soon as a stored batch releases them (the sooner
    a user is reached, the better), but while inbox batches are left at least
    ``keep_writing`` workers write them, so writes go on beside the publishes
    rather than all before them; a worker with nothing else to do writes a
    batch, and one that finds nothing at all while batches are still being
    written waits for them. Measured against ``iotnotify local`` with its
    emulator in a process of its own (bench/fanout_latency.py, 10,000 users,
    same busy machine): 4.8 s with a quarter of the workers kept writing,
    5.2 s with every batch first. (While the emulator shared moto's
    interpreter lock, the overlap cost more CPU than it saved.)
    """

    def __init__(self, *, keep_writing: int) -> None:
        self.batches: deque[list[str]] = deque()
        self.publishes: deque[str] = deque()
        self.writes_left = 0
        self._keep_writing = keep_writing
        self._writing = 0
        self._failed = False
        self._ready = threading.Condition()

    def next(self) -> list[str] | str | None:
        """A batch to write, a user to publish to, or None when all is done."""
        with self._ready:
            while True:
                if self._failed:
                    return None
                if self.batches and (self._writing < self._keep_writing or not self.publishes):
                    self._writing += 1
                    return self.batches.popleft()
                if self.publishes:
                    return self.publishes.popleft()
                if not self.writes_left:
                    return None
                self._ready.wait()

    def written(self, stored: list[str]) -> None:
        with self._ready:
            self._writing -= 1
            self.writes_left -= 1
            self.publishes.extend(stored)
            if self.writes_left:
                self._ready.notify(len(stored))  # a waiting worker per new publish
            else:
                self._ready.notify_all()  # the last write: waiting workers may finish

    def guard(self, worker: Callable[[], None]) -> None:
        """Run ``worker``; if it raises, stop the others too, then re-raise."""
        try:
            worker()
        except BaseException:
            with self._ready:
                self._failed = True
                self._ready.notify_all()
            raise


def _client_config(max_workers: int) -> Config:
    return Config(max_pool_connections=max_workers)


def _pool_size(client: Any) -> int | None:
    """A botocore client's ``max_pool_connections``; None for anything else."""
    config = getattr(getattr(client, "meta", None), "config", None)
    size = getattr(config, "max_pool_connections", None)
    return size if isinstance(size, int) and size > 0 else None


def _iot_data_client(session: boto3.session.Session, endpoint: str, config: Config) -> Any:
    if endpoint:
        url = endpoint if endpoint.startswith(("http://", "https://")) else f"https://{endpoint}"
        return session.client("iot-data", endpoint_url=url, config=config)
    client = session.client("iot-data", config=config)
    # botocore honours AWS_ENDPOINT_URL_IOT_DATA_PLANE / AWS_ENDPOINT_URL; only
    # when it fell back to the generic regional host do we ask for the
    # account's own ATS endpoint.
    if urlsplit(client.meta.endpoint_url).hostname != _generic_data_host(session):
        return client
    host = IotEndpoint(iot_client=session.client("iot")).host()
    return session.client("iot-data", endpoint_url=f"https://{host}", config=config)


def _generic_data_host(session: boto3.session.Session) -> str:
    return f"data-ats.iot.{session.region_name}.amazonaws.com"
