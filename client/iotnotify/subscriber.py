"""The subscriber: stay connected for weeks, deliver every notification once, in order.

One supervisor thread owns the MQTT connection (paho-mqtt 2.x over
WebSockets) and drives paho's ``loop()`` itself rather than ``loop_forever``,
so that it can

* sleep exactly until the next thing that is due (a PINGREQ, the watchdog,
  the planned reconnect) instead of waking every second: an idle client
  wakes a few times an hour;
* detect a dead server within 1.5 x keepalive from the last inbound byte
  (paho alone notices only after 2 x);
* fetch a fresh token (new credentials, new presigned URL) before every
  connect. Credentials may expire on an open connection (AWS does not close
  it); only a new connection needs new ones, so there is no refresh timer;
* reconnect before AWS closes WebSockets at 24 h (at a random age, with
  the new token fetched while the old connection still serves), and after
  any failure with exponential backoff and full jitter, forever.

After every (re)connect the subscriber subscribes first, then reads
``GET /notifications?since=<bound>`` page by page while live messages are
buffered, and merges both in id order (ids are ULIDs, so string order is
time order) without duplicates. The bound is not the newest id delivered
but the smallest id of a look-back window before it (60 s by default,
``catch_up_lookback``): an id's time is when it was *made*, and an inbox
can receive an id older than one already shown (``notify_many`` makes one
id and spends seconds writing it to thousands of inboxes; publisher hosts'
clocks differ), which ``since=<newest id>`` would never return. What the
window returns again is dropped by id: the subscriber keeps the ids it
delivered that a later catch-up could return. Only the user's own topic is
in the inbox; broadcast messages are delivered as they come and tracked separately. If
the inbox cannot be read (a page over Lambda's 6 MB response limit is a 502
on AWS), the subscriber asks for smaller pages, then stays live, reports
``CATCH_UP_FAILED`` and retries the read with backoff on the same
connection (a 403 from the inbox too; a 401 that a renewed ID token does
not cure means signed out, and ends the subscriber): a failed catch-up never
causes a reconnect loop, and the next
catch-up starts a look-back window before where the failed one stopped,
so nothing is skipped.

Notifications reach the caller on one dispatcher thread (``on_message``) or
through ``async for note in sub.notifications``; a slow consumer never
blocks the network loop. State changes (``on_state``) go through the same
thread, so CAUGHT_UP is seen after the notifications it covers.

Typical use, signed in with Cognito::

    auth = CognitoAuth(client_id=APP_CLIENT_ID, region="eu-west-1")
    session = CognitoSession(auth, username="you@example.com", password=PASSWORD)
    api = ApiClient(api_url=API_URL, id_tokens=session)
    Subscriber(tokens=api, on_message=lambda note: print(note.title)).run_forever()
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import heapq
import logging
import math
import os
import queue
import random
import secrets
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from iotnotify.api_client import ConnectionToken, InboxReader, TokenProvider
from iotnotify.backoff import Backoff
from iotnotify.contract import (
    DEFAULT_KEEPALIVE_SECONDS,
    Notification,
    client_id_for,
    id_floor,
    id_lower_bound,
    id_millis,
    is_notification_id,
    own_notifications_topic,
    validate_client_suffix,
    validate_notification_id,
)
from iotnotify.errors import (
    AuthError,
    ConnectionLost,
    ContractError,
    Forbidden,
    InvalidArgument,
    IotNotifyError,
    SessionTakenOver,
    SubscriptionRefused,
    Throttled,
)
from iotnotify.tls import client_context

if TYPE_CHECKING:  # pragma: no cover
    # asyncio is imported where the async API is used: it is ~4 MiB of RSS
    # that a callback-style subscriber (`iotnotify listen`, the tray) never needs.
    import asyncio

__all__ = [
    "DEFAULT_CATCH_UP_LOOKBACK",
    "DEFAULT_KEEPALIVE",
    "IOT_KEEPALIVE_MAX",
    "IOT_KEEPALIVE_MIN",
    "SINCE_NOW",
    "ConnectionState",
    "StateChange",
    "Subscriber",
    "SubscriberStats",
    "clamp_keepalive",
    "device_suffix",
]

log = logging.getLogger("iotnotify.subscriber")

IOT_KEEPALIVE_MIN: Final = 30
IOT_KEEPALIVE_MAX: Final = 1200
# Why 50 s (below NAT, proxy and load-balancer idle timeouts; PINGREQ is
# not billed): see iotnotify.contract.DEFAULT_KEEPALIVE_SECONDS.
DEFAULT_KEEPALIVE: Final = DEFAULT_KEEPALIVE_SECONDS
# AWS closes WebSocket connections after 24 h; leave well before that so the
# reconnect happens on our schedule (with catch-up) rather than as a drop.
DEFAULT_MAX_CONNECTION_AGE: Final = 23.5 * 3600
# Each connection is replaced at a random age in the last 5 % before the
# maximum (22.3-23.5 h by default), not at the maximum itself: clients that
# connected together (after an outage of the endpoint, a deploy, a laptop
# fleet waking at 9:00) would otherwise all reconnect together again every
# 23.5 h, forever, and each reconnect is a GET /token (Lambda, STS
# AssumeRole) plus a CONNECT, all under per-second quotas. Jitter spreads
# such a wave; it is the planned-reconnect form of the full-jitter backoff
# (apache/pulsar-client-go issue 556, coder/coder pull request 24096).
_PLANNED_AGE_JITTER: Final = 0.05
# A planned reconnect gets its token before it closes the connection it
# replaces: with the token API down (or throttling a wave of reconnects),
# the old connection keeps delivering and the fetch is retried, with the
# reconnect backoff's delays, until this long before AWS IoT's 24 h
# WebSocket limit (then the connection is given up as before).
_WEBSOCKET_LIFETIME: Final = 24 * 3600.0
_LIFETIME_MARGIN: Final = 300.0
_PREFETCH_POLL: Final = 0.1  # how often the loop looks at a token fetch in flight
# ``since=SINCE_NOW``: start after the newest notification sent before the
# first connect, by the *server's* clock (the token response's Date header).
SINCE_NOW: Final = "now"
_WATCHDOG_FACTOR: Final = 1.5
_INBOX_PAGE: Final = 100
# A failed catch-up is retried on the same connection, never by reconnecting:
# a page the API cannot serve (over Lambda's 6 MB response limit it is a 502
# on AWS) fails the same way after every reconnect, and live messages would
# wait behind it. Smaller pages first (100, 25, 6, 1: one envelope is at most
# 128 KB), then retries with these delays.
_PAGE_SHRINK: Final = 4
_CATCH_UP_RETRY_INITIAL: Final = 5.0
_CATCH_UP_RETRY_CAP: Final = 300.0
_RECENT_IDS: Final = 4096  # broadcast ids remembered, to drop a duplicate
# How far behind its cursor (the newest id delivered) a catch-up reads again.
# Ids are made when a send starts, not when it reaches an inbox: notify_many
# takes one id for all its users, and the README measures a 10,000-user
# fan-out at 3.2 s (target <= 5 s), so its last inboxes get an id up to ~5 s
# older than a notification another sender delivered meanwhile; publisher
# hosts' clocks add their skew (NTP keeps them within milliseconds, a host
# without it drifts seconds). 60 s covers a fan-out 12 times the target
# (about 180,000 users at the measured rate) plus that skew, and costs
# little: a reconnect re-reads one minute of the user's inbox (usually
# nothing, or one page) and drops what it already delivered, by id.
DEFAULT_CATCH_UP_LOOKBACK: Final = 60.0
# Forbidden right after fetching a fresh token is rarely transient; give up
# after this many in a row instead of retrying a misconfiguration forever.
_MAX_FORBIDDEN_STREAK: Final = 3
_SLACK: Final = 0.02  # wake this much after a deadline so paho sees it as due
# select() timeouts do not run during suspend; waking at least this often
# notices a resume (and a connection that died meanwhile) within 5 minutes.
_MAX_SLEEP: Final = 300.0
_STABLE_AFTER: Final = 30.0  # seconds subscribed before the backoff starts over
# How long run_forever waits for its threads after Ctrl-C: enough for the
# clean DISCONNECT of an open connection (_close gives it 1 s), not for an
# HTTP call hanging on a dead network (urllib's timeouts are 15-20 s).
_INTERRUPT_JOIN: Final = 2.0


def _boot_clock() -> float:
    # CLOCK_BOOTTIME keeps counting while a laptop sleeps (CLOCK_MONOTONIC does
    # not), so after a long suspend the watchdog sees the silence at once.
    return time.clock_gettime(time.CLOCK_BOOTTIME)


_clock: Callable[[], float] = _boot_clock if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic


def clamp_keepalive(seconds: int | None, *, floor: int = IOT_KEEPALIVE_MIN) -> int:
    """Keepalive (seconds) as AWS IoT applies it: 0 or over 1200 become 1200,
    1..29 become 30 (AWS general reference, "AWS IoT Core endpoints and
    quotas", message broker limits:
    https://docs.aws.amazon.com/general/latest/gr/iot-core.html#message-broker-limits);
    None is :data:`DEFAULT_KEEPALIVE`.

    Raises :class:`~iotnotify.errors.InvalidArgument` (a ``ValueError``) for
    a negative ``seconds``: MQTT's Keep Alive is an unsigned field (MQTT 3.1.1
    section 3.1.2.10), so no server applies one; it is a caller's mistake,
    not a request for 1200. ``floor`` exists only so tests can run a
    keepalive of a few seconds against a fake server; real IoT Core would
    raise it to 30 anyway.
    """
    if not 1 <= floor <= IOT_KEEPALIVE_MIN:
        raise InvalidArgument(f"keepalive floor must be 1..{IOT_KEEPALIVE_MIN}")
    if seconds is None:
        return DEFAULT_KEEPALIVE
    if seconds < 0:
        raise InvalidArgument(
            f"keepalive must be a number of seconds >= 0 (0 means AWS IoT's maximum, "
            f"{IOT_KEEPALIVE_MAX}), not {seconds!r}"
        )
    if seconds == 0 or seconds > IOT_KEEPALIVE_MAX:
        return IOT_KEEPALIVE_MAX
    return max(int(seconds), floor)


def _os_user() -> str:
    """The OS user's name, as ``getpass.getuser()`` finds it (the LOGNAME,
    USER, LNAME and USERNAME variables, then the password database), without
    importing getpass: it loads termios for its prompt, about 80 KB that
    stayed resident in the always-on listen and tray (issue 11 §2)."""
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        if user := os.environ.get(name):
            return user
    try:
        import pwd  # POSIX only

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError, OSError):
        return "user"


def device_suffix(tag: str = "sdk") -> str:
    """A new client-id suffix: ``{tag}-{machine}-{random}``, unique per call.

    A :class:`Subscriber` draws one when it is built and keeps it for all its
    reconnects, so a reconnect takes over its own old session instead of
    leaving a ghost. Unique per process (per Subscriber, in fact), because AWS
    IoT keeps only the newest connection per client id: two ``iotnotify
    listen`` of one user on one machine that shared an id kicked each other
    off in a loop (DUPLICATE_CLIENTID). The machine part (a hash of host
    name and OS user) only helps a human reading lifecycle
    events; the 8 random hex digits make it unique.
    """
    seed = f"{socket.gethostname()}|{_os_user()}"
    machine = hashlib.sha256(seed.encode()).hexdigest()[:8]
    return f"{tag}-{machine}-{secrets.token_hex(4)}"


class ConnectionState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"  # subscribed; catch-up may still be running
    CAUGHT_UP = "caught-up"  # everything missed while offline was delivered
    # Live, but the inbox could not be read (``error`` says why): live messages
    # flow, what was missed follows when a retry (``retry_in``) succeeds.
    CATCH_UP_FAILED = "catch-up-failed"
    DISCONNECTED = "disconnected"  # will retry after ``retry_in`` seconds
    STOPPED = "stopped"  # for good: stop() or a fatal error


@dataclass(frozen=True, slots=True)
class StateChange:
    state: ConnectionState
    error: IotNotifyError | None = None
    retry_in: float | None = None
    client_id: str | None = None
    # Topics of the token the server refused (kept out of every later SUBSCRIBE).
    refused: tuple[str, ...] = ()

    def describe(self) -> str:
        text = self.state.value
        if self.client_id and self.state is ConnectionState.CONNECTED:
            text += f" as {self.client_id}"
        if self.refused:
            text += f" (not authorised to subscribe to {', '.join(self.refused)})"
        if self.error is not None:
            text += f": {self.error}"
        if self.retry_in is not None:
            text += f" (retrying in {self.retry_in:.1f} s)"
        return text


@dataclass
class SubscriberStats:
    """Counters for tests and ``bench/client_idle.py``; read, never reset."""

    connects: int = 0
    token_fetches: int = 0
    loop_wakeups: int = 0
    pings_sent: int = 0
    delivered: int = 0
    catch_up_fetched: int = 0
    dead_server_detections: int = 0
    # Seconds after its connect at which the newest connection is replaced
    # (``max_connection_age`` less a random part of its last 5 %).
    planned_age: float = 0.0


# How far ahead of the server's clock an id may be made and still become the
# catch-up cursor (seconds): publisher clocks that are minutes off, not more.
_FUTURE_ID_ALLOWANCE: Final = 300.0


class _Sequencer:
    """Merges live messages and catch-up pages into one ordered, duplicate-free stream.

    A catch-up asks for the ids after :meth:`begin`'s bound: the look-back
    window's start before the cursor (``last_user_id``), never below
    ``since`` (the caller already has everything up to it). Every own-topic
    id delivered is remembered until no later catch-up can return it again,
    that is until it is at or below the next catch-up's bound; while a
    catch-up runs or a failed one waits for its retry, nothing is forgotten.
    """

    def __init__(
        self,
        *,
        since: str | None,
        emit: Callable[[Notification], None],
        lookback: float = DEFAULT_CATCH_UP_LOOKBACK,
        shown: Iterable[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._emit = emit
        self._lookback = lookback
        self._clock = clock  # seconds; the server's clock when known
        self.last_user_id = since
        # Without ``shown`` the caller has everything up to ``since`` and no
        # catch-up asks below it; with it, the caller says which ids of the
        # window before ``since`` it has, and the first catch-up looks back too.
        self._floor = since if shown is None else None
        self.last_broadcast_id: str | None = None
        self._catching_up = False
        self._generation = 0
        self._started_from: str | None = None  # the bound of the running catch-up
        self._buffer: dict[str, Notification] = {}
        self._recent: OrderedDict[str, None] = OrderedDict()  # broadcast ids
        # Own-topic ids delivered that a later catch-up may return again: a
        # set to look them up, a heap (oldest first) to forget them in order.
        self._delivered: set[str] = set(shown or ())
        self._delivered_heap: list[str] = sorted(self._delivered)  # a sorted list is a heap
        # Where an abandoned catch-up stopped: the next one starts there, not at
        # the newest live id, so nothing in between is skipped.
        self._resume_from: tuple[str | None] | None = None

    def resumable(self, note_id: str) -> bool:
        """Whether a catch-up may start after ``note_id``: a ULID made at most
        :data:`_FUTURE_ID_ALLOWANCE` seconds ahead of the (server's) clock."""
        return (
            is_notification_id(note_id)
            and id_millis(note_id) <= (self._clock() + _FUTURE_ID_ALLOWANCE) * 1000
        )

    def start_after(self, since: str) -> None:
        """Nothing up to ``since`` is wanted (``since="now"``, by the server's clock)."""
        with self._lock:
            self.last_user_id = since
            self._floor = since

    def delivered_own(self, note_id: str) -> bool:
        """Whether ``note_id`` was delivered from the own topic and is still remembered."""
        with self._lock:
            return note_id in self._delivered

    @property
    def delivered_remembered(self) -> int:
        """How many own-topic ids are kept to drop a catch-up's repeats (for tests)."""
        return len(self._delivered)

    def _seen(self, note_id: str) -> bool:
        if note_id in self._recent:
            return True
        self._recent[note_id] = None
        if len(self._recent) > _RECENT_IDS:
            self._recent.popitem(last=False)
        return False

    def _window_start(self) -> str | None:
        """The ``since=`` of the next catch-up when none is pending: the look-back bound."""
        cursor = self.last_user_id
        if cursor is None:
            return None
        bound = self._lower_bound(cursor)
        if self._floor is not None and self._floor > bound:
            return self._floor
        return bound

    def _lower_bound(self, note_id: str) -> str:
        try:
            return id_lower_bound(note_id, lookback_seconds=self._lookback)
        except ContractError:
            # Not a ULID: cursors always are (resumable()), but a page's
            # ``next`` is the server's word. No time to look back from:
            # resume strictly after it, as ``since=`` always did.
            return note_id

    def begin(self) -> tuple[int, str | None]:
        """A new connection is about to subscribe: buffer own-topic messages from now."""
        with self._lock:
            self._generation += 1
            self._catching_up = True
            resume = self._resume_from
            since = resume[0] if resume is not None else self._window_start()
            self._started_from = since
            return self._generation, since

    def give_up(self, generation: int, stopped_after: str | None) -> bool:
        """Catch-up failed: deliver the buffer, go live, remember where to resume.

        ``stopped_after`` is the ``next`` of the last page delivered (None if
        none was): the retry starts a look-back window before it, or where
        this catch-up started, whichever is later. False when a newer
        connection took over.
        """
        with self._lock:
            if generation != self._generation:
                return False
            resume = self._started_from
            if stopped_after is not None:
                bound = self._lower_bound(stopped_after)
                if resume is None or bound > resume:
                    resume = bound
            # Set before delivering: with a retry pending nothing is forgotten.
            self._resume_from = (resume,)
            if self._catching_up:
                self._catching_up = False
                self._deliver_own(sorted(self._buffer.values(), key=lambda n: n.id))
                self._buffer.clear()
            return True

    def skip_catch_up(self) -> None:
        """No inbox to read: deliver the buffer and go live."""
        with self._lock:
            self._catching_up = False
            self._deliver_own(sorted(self._buffer.values(), key=lambda n: n.id))
            self._buffer.clear()

    def live(self, note: Notification, *, own: bool) -> None:
        with self._lock:
            if not own:
                if not self._seen(note.id):
                    if self.last_broadcast_id is None or note.id > self.last_broadcast_id:
                        self.last_broadcast_id = note.id
                    self._emit(note)
                return
            if self._catching_up:
                self._buffer[note.id] = note
                return
            self._deliver_own([note])

    def page(self, generation: int, notes: Iterable[Notification], *, last: bool) -> bool:
        """Deliver one catch-up page; False when a newer connection took over."""
        with self._lock:
            if generation != self._generation:
                return False
            batch = {note.id: note for note in notes}
            if last:
                batch.update(self._buffer)
                self._buffer.clear()
                self._catching_up = False
                self._resume_from = None
            elif batch:
                # Buffered live messages older than this page's newest must go
                # out with it, or they would be delivered out of order later.
                newest = max(batch)
                for note_id in [i for i in self._buffer if i <= newest]:
                    batch[note_id] = self._buffer.pop(note_id)
            self._deliver_own(sorted(batch.values(), key=lambda n: n.id))
            return True

    def _deliver_own(self, notes: list[Notification]) -> None:
        for note in notes:
            if note.id in self._delivered:
                continue  # the look-back window returned it again
            self._delivered.add(note.id)
            heapq.heappush(self._delivered_heap, note.id)
            # A message older than the cursor that we never saw (a fan-out's
            # id, concurrent publishers, clock skew) is still delivered: a gap
            # is worse than a late message. The cursor never moves back.
            # An id that is not a ULID (a sender outside this SDK publishing
            # to the topic directly) is delivered but never becomes the
            # cursor: the inbox holds only ULIDs and GET /notifications
            # refuses any other since= with a 400, so every later catch-up
            # failed (and "zzz" sorts after every real id).
            # Nor does an id made further ahead of the server's clock than
            # clock skew explains (_FUTURE_ID_ALLOWANCE): every real id sorts
            # below it, so as the cursor it made every later catch-up ask for
            # nothing and what came while away was never shown. A cursor that
            # lags only re-reads more, and repeats are dropped by id.
            if (self.last_user_id is None or note.id > self.last_user_id) and self.resumable(
                note.id
            ):
                self.last_user_id = note.id
            self._emit(note)
        self._forget()

    def _forget(self) -> None:
        """Drop the ids no later catch-up can return (at or below its bound)."""
        if self._catching_up or self._resume_from is not None:
            return  # the running or pending catch-up may start lower
        bound = self._window_start()
        if bound is None:
            return
        heap = self._delivered_heap
        while heap and heap[0] <= bound:
            self._delivered.discard(heapq.heappop(heap))


@dataclass
class _Connection:
    """What the paho callbacks of one connection attempt report to the supervisor."""

    client_id: str
    keepalive: int
    own_topic: str | None
    started: float
    last_in: float
    last_out: float
    connected: bool = False
    subscribed: bool = False
    subscribed_at: float | None = None
    # SUBSCRIBE packet id -> its one topic, in the order sent.
    pending_topics: dict[int, str] = field(default_factory=dict)
    granted: list[str] = field(default_factory=list)
    error: IotNotifyError | None = None
    closed: bool = False
    gone: threading.Event = field(default_factory=threading.Event)  # set once closed
    # The last socket error paho logged; none means the server closed cleanly.
    socket_error: str | None = None


_STOP: Final = object()


class _TokenFetch:
    """``GET /token`` for the planned reconnect, run beside the network loop,
    so that the connection being replaced keeps being served meanwhile."""

    def __init__(self, fetch: Callable[[], ConnectionToken]) -> None:
        self.done = threading.Event()
        self.token: ConnectionToken | None = None
        self.error: BaseException | None = None
        threading.Thread(
            target=self._run, args=(fetch,), name="iotnotify-token", daemon=True
        ).start()

    def _run(self, fetch: Callable[[], ConnectionToken]) -> None:
        try:
            self.token = fetch()
        except Exception as exc:
            self.error = exc
        finally:
            self.done.set()


class Subscriber:
    """Receives a user's notifications over MQTT, reconnecting forever.

    ``tokens`` is called for every (re)connect (usually an
    :class:`~iotnotify.api_client.ApiClient`); ``inbox`` reads missed
    notifications (defaults to ``tokens`` when it can). Use it either way::

        sub = Subscriber(tokens=api, on_message=print)
        sub.run_forever()            # or start() ... stop()

        async with Subscriber(tokens=api) as sub:
            async for note in sub.notifications:
                ...

    ``since`` is the id of the last notification the caller already has
    (None: everything still in the inbox; :data:`SINCE_NOW`: only what is
    sent from the first connect on, by the server's clock, so a wrong local
    clock neither skips notifications nor replays old ones); no catch-up
    asks for anything at or below it. ``catch_up_lookback`` (seconds, >= 0,
    default :data:`DEFAULT_CATCH_UP_LOOKBACK`) is how far behind the newest
    id it delivered a reconnect's catch-up reads again, so that a
    notification with an older id that reached the inbox later (a
    ``notify_many`` fan-out's id, publisher clock skew) is not skipped; what
    it returns again is dropped by id, so nothing is delivered twice by one
    Subscriber. ``shown_ids`` carries such a record across runs of an app:
    the ids its ``on_message`` handled among those made up to
    ``catch_up_lookback`` before ``since`` (``since`` itself included; the
    tray keeps it in its settings). Given, the first catch-up looks back from
    ``since`` as well and skips them, instead of treating ``since`` as a
    hard limit. (The app keeps the record, not the Subscriber: after
    :meth:`stop` notifications already queued are never handed over.)
    ``keepalive`` (seconds) overrides the
    token's recommendation and is clamped to IoT's 30..1200 s as
    :func:`clamp_keepalive` says (0 means 1200); a negative one raises
    :class:`~iotnotify.errors.InvalidArgument` here;
    ``keepalive_floor`` is for tests only (see :func:`clamp_keepalive`).
    ``device_id`` is the client id's suffix (:func:`device_suffix` when not
    given). ``max_connection_age`` (seconds, default 23.5 h, below AWS
    IoT's 24 h WebSocket limit) is when a connection is replaced by a fresh
    one, at a random age within its last 5 %, so that clients which
    connected together do not all reconnect together again.
    Raises :class:`~iotnotify.errors.InvalidClientId` for a
    ``device_id`` and :class:`~iotnotify.errors.InvalidEnvelope` for a
    ``since`` that no client id or notification id can be, here rather than
    at the first connect, and :class:`~iotnotify.errors.InvalidArgument` (a
    ``ValueError``) for a ``connect_timeout`` or
    ``max_connection_age`` (seconds) that is not above 0.
    """

    def __init__(
        self,
        *,
        tokens: TokenProvider,
        inbox: InboxReader | None = None,
        on_message: Callable[[Notification], None] | None = None,
        on_state: Callable[[StateChange], None] | None = None,
        since: str | None = None,
        catch_up: bool = True,
        catch_up_lookback: float = DEFAULT_CATCH_UP_LOOKBACK,
        shown_ids: Iterable[str] | None = None,
        keepalive: int | None = None,
        keepalive_floor: int = IOT_KEEPALIVE_MIN,
        client_id: str | None = None,
        device_id: str | None = None,
        ca_file: str | None = None,
        connect_timeout: float = 10.0,
        max_connection_age: float = DEFAULT_MAX_CONNECTION_AGE,
        backoff: Backoff | None = None,
    ) -> None:
        clamp_keepalive(keepalive, floor=keepalive_floor)  # validate the floor now
        # Checked now, not after sign-in and GET /token at the first connect.
        if device_id is not None:
            validate_client_suffix(device_id)
        if since is not None and since != SINCE_NOW:
            validate_notification_id(since)
        # 0 or less timed out every connect, or reconnected at once after each
        # one (a connect storm, and every CONNECT is billed on AWS).
        if not (math.isfinite(connect_timeout) and connect_timeout > 0):
            raise InvalidArgument(
                f"connect_timeout must be a finite number of seconds > 0, not {connect_timeout!r}"
            )
        if not max_connection_age > 0:  # also NaN; inf: only the server's 24 h limit
            raise InvalidArgument(
                f"max_connection_age must be a number of seconds > 0, not {max_connection_age!r}"
            )
        if not math.isfinite(catch_up_lookback) or catch_up_lookback < 0:
            raise InvalidArgument(
                f"catch_up_lookback must be a finite number of seconds >= 0, "
                f"not {catch_up_lookback!r}"
            )
        self._tokens = tokens
        if inbox is None and catch_up and isinstance(tokens, InboxReader):
            inbox = tokens
        self._inbox = inbox if catch_up else None
        self._on_message = on_message
        self._on_state = on_state
        self._keepalive = keepalive
        self._keepalive_floor = keepalive_floor
        self._client_id = client_id
        self._device_id = device_id or device_suffix()
        self._ca_file = ca_file
        self._connect_timeout = connect_timeout
        self._max_age = max_connection_age
        self._rand = random.Random().random  # noqa: S311 - spreading load, not secrecy
        # The token a planned reconnect fetched before closing the old connection.
        self._next_token: ConnectionToken | None = None
        self._backoff = backoff or Backoff()
        self._refused: list[str] = []
        self._nothing_granted = False
        self.stats = SubscriberStats()
        self._since_now = since == SINCE_NOW
        # The server's clock minus ours, from each token answer's time.
        self._clock_offset = 0.0
        self._sequencer = _Sequencer(
            since=None if self._since_now else since,
            lookback=catch_up_lookback,
            emit=self._enqueue,
            shown=None if shown_ids is None else list(shown_ids),
            clock=lambda: time.time() + self._clock_offset,
        )
        self._deliveries: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._stop_called = threading.Event()  # by the caller, not by a fatal error
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._conn: _Connection | None = None
        self._threads: list[threading.Thread] = []
        self._catch_up_thread: threading.Thread | None = None
        self._last_conn: _Connection | None = None
        self._fatal: IotNotifyError | None = None
        self._state: ConnectionState | None = None
        self._aqueue: asyncio.Queue[object] | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None

    # --- public API ----------------------------------------------------------------

    @property
    def last_id(self) -> str | None:
        """The newest notification id delivered from the user's own topic."""
        return self._sequencer.last_user_id

    @property
    def last_broadcast_id(self) -> str | None:
        return self._sequencer.last_broadcast_id

    def resumable(self, note_id: str) -> bool:
        """Whether ``note_id`` can be a resume point (``since=``) for a later
        catch-up: a ULID made at most 5 minutes ahead of the server's clock.
        Anything else (a sender's own id, a publisher clock far ahead) is
        never in the inbox's past: a catch-up after it finds nothing."""
        return self._sequencer.resumable(note_id)

    def is_own(self, note: Notification) -> bool:
        """Whether ``note`` came from the user's own topic, the one the inbox mirrors.

        False for broadcast and channel (game, room) notes, which are not in
        the inbox, so they must never move a saved catch-up cursor. Answered
        from the ids kept for the catch-up look-back
        (``catch_up_lookback``): for a note handed to ``on_message`` longer
        ago than that window the answer is False, the safe side for a cursor.
        """
        return self._sequencer.delivered_own(note.id)

    @property
    def state(self) -> ConnectionState | None:
        return self._state

    @property
    def error(self) -> IotNotifyError | None:
        """The fatal error that stopped the subscriber, if one did."""
        return self._fatal

    def start(self) -> Subscriber:
        """Connect in the background; returns at once."""
        with self._lock:
            if self._threads:
                raise RuntimeError("this Subscriber was already started")
            self._threads = [
                threading.Thread(target=self._supervise, name="iotnotify-mqtt", daemon=True),
                threading.Thread(target=self._dispatch, name="iotnotify-dispatch", daemon=True),
            ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Disconnect and wait for the threads to end, at most ``timeout`` seconds in
        all. Safe to call twice, from any thread.

        No ``on_message`` call starts after this, even for notifications already queued.
        """
        if not self._stopped.is_set():
            # After a fatal error ended it (run_forever then calls stop()), what
            # was queued before the error is still delivered.
            self._stop_called.set()
        self._stopping.set()
        with self._lock:
            client = self._client
        if client is not None:
            # Queues DISCONNECT and wakes the supervisor out of select().
            with contextlib.suppress(Exception):
                client.disconnect()
        current = threading.current_thread()
        # One deadline for all threads, not ``timeout`` each.
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread is not current and thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def run_forever(self) -> None:
        """Start and block until :meth:`stop` (from a callback or another thread).

        Raises the fatal error (:class:`AuthError`, :class:`Forbidden`...) if
        one ended it. Ctrl-C stops and re-raises ``KeyboardInterrupt`` within
        about :data:`_INTERRUPT_JOIN` seconds: an open connection still ends
        with a DISCONNECT, but a token fetch or sign-in stuck on a dead
        network (a DNS lookup, a connect that gets no answer) is not waited
        for; its daemon thread ends with the process.
        """
        if not self._threads:
            self.start()
        interrupted = False
        try:
            self._stopped.wait()
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            self.stop(_INTERRUPT_JOIN if interrupted else 10.0)
        if self._fatal is not None:
            raise self._fatal

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def __enter__(self) -> Subscriber:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Subscriber:
        import asyncio

        self._aloop = asyncio.get_running_loop()
        self._aqueue = asyncio.Queue()
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        import asyncio

        await asyncio.get_running_loop().run_in_executor(None, self.stop)

    @property
    def notifications(self) -> AsyncIterator[Notification]:
        """Notifications in order; ends after stop(), raises a fatal error."""
        if self._aqueue is None:
            raise RuntimeError("use `async with Subscriber(...) as sub` to iterate notifications")
        return self._aiter(self._aqueue)

    async def _aiter(self, aqueue: asyncio.Queue[object]) -> AsyncIterator[Notification]:
        while True:
            item = await aqueue.get()
            if item is _STOP:
                aqueue.put_nowait(_STOP)  # a second iterator ends too
                if self._fatal is not None:
                    raise self._fatal
                return
            assert isinstance(item, Notification)
            yield item

    # --- delivery ------------------------------------------------------------------

    def _enqueue(self, note: Notification) -> None:
        self._deliveries.put(note)

    def _dispatch(self) -> None:
        # State changes travel through the same queue as notifications, so a
        # caller sees CAUGHT_UP only after every caught-up notification.
        while True:
            item = self._deliveries.get()
            if isinstance(item, StateChange):
                if self._on_state is not None:
                    try:
                        self._on_state(item)
                    except Exception:
                        log.exception("on_state raised; continuing")
                continue
            if item is not _STOP:
                assert isinstance(item, Notification)
                if self._stop_called.is_set():
                    # stop() means no more callbacks, even for notifications a
                    # catch-up batch had already queued (a callback that stops
                    # after one must see one).
                    continue
                self.stats.delivered += 1
                if self._on_message is not None:
                    try:
                        self._on_message(item)
                    except Exception:
                        # The caller's bug must not stop notifications for weeks.
                        log.exception("on_message raised; continuing")
            if self._aqueue is not None and self._aloop is not None:
                with contextlib.suppress(RuntimeError):  # the loop already closed
                    self._aloop.call_soon_threadsafe(self._aqueue.put_nowait, item)
            if item is _STOP:
                return

    def _set_state(self, change: StateChange) -> None:
        self._state = change.state
        log.info("%s", change.describe())
        self._deliveries.put(change)

    # --- supervisor ------------------------------------------------------------------

    def _supervise(self) -> None:
        forbidden_streak = 0
        try:
            while not self._stopping.is_set():
                self._set_state(StateChange(ConnectionState.CONNECTING))
                error: IotNotifyError | None = None
                self._last_conn = None
                try:
                    self._connection_once()
                except (ConnectionLost, Throttled) as exc:
                    error = exc
                except SubscriptionRefused as exc:
                    # Recorded in self._refused: the next connection leaves the
                    # topic out, so this is progress, not a refusal streak.
                    error = exc
                except Forbidden as exc:
                    forbidden_streak += 1
                    # Every topic refused is permanent for this deployment:
                    # retrying would only be refused again (and cost messages).
                    if self._nothing_granted or forbidden_streak >= _MAX_FORBIDDEN_STREAK:
                        self._fatal = exc
                        break
                    error = exc
                except IotNotifyError as exc:
                    self._fatal = exc
                    break
                except Exception as exc:
                    # Whatever a flaky network throws at paho (ssl, socket,
                    # select errors) must lead to a reconnect, never to a
                    # silently dead subscriber.
                    log.debug("unexpected connection failure", exc_info=True)
                    error = ConnectionLost(f"connection failed: {exc!r}")
                last = self._last_conn
                if last is not None and last.subscribed_at is not None:
                    forbidden_streak = 0
                    # Only a connection that stayed up a while resets the delay:
                    # a server that accepts and drops at once (or another copy
                    # of this app with the same client id) must not cause a
                    # reconnect storm.
                    if _clock() - last.subscribed_at >= _STABLE_AFTER:
                        self._backoff.reset()
                if self._stopping.is_set():
                    break
                if error is None:
                    continue  # planned reconnect: at once, catch-up covers the gap
                delay = self._backoff.next_delay()
                self._set_state(
                    StateChange(ConnectionState.DISCONNECTED, error=error, retry_in=delay)
                )
                self._stopping.wait(delay)
        finally:
            self._stopping.set()
            self._set_state(StateChange(ConnectionState.STOPPED, error=self._fatal))
            if self._catch_up_thread is not None:
                self._catch_up_thread.join(self._connect_timeout)
            self._deliveries.put(_STOP)
            self._stopped.set()

    def _connection_once(self) -> None:
        """One connection from token to close.

        Returns normally for stop() and the planned reconnect; raises the
        translated error otherwise.
        """
        token, self._next_token = self._next_token, None
        if token is None:
            self.stats.token_fetches += 1
            token = self._tokens.token()
        if token.server_time is not None:
            self._clock_offset = token.server_time - time.time()
        if self._stopping.is_set():
            return
        try:
            parts = urlsplit(token.url)
            port_given = parts.port  # ValueError: out of 0..65535, or not a number
        except ValueError as exc:
            # Permanent for this token source, like a wrong scheme: not a
            # network failure to retry for ever.
            raise AuthError(f"the token's URL is not usable: {exc}") from exc
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise AuthError(f"the token's URL is not a ws:// or wss:// URL: {parts.scheme!r}")
        tls = parts.scheme == "wss"
        port = port_given or (443 if tls else 80)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        client_id = self._client_id_of(token)
        keepalive = clamp_keepalive(
            self._keepalive if self._keepalive is not None else token.keepalive,
            floor=self._keepalive_floor,
        )
        now = _clock()
        conn = _Connection(
            client_id=client_id,
            keepalive=keepalive,
            own_topic=_own_topic(token),
            started=now,
            last_in=now,
            last_out=now,
        )
        client = self._new_client(conn, path=path, tls=tls)
        if self._since_now:
            self._since_now = False
            self._sequencer.start_after(id_floor(_server_now(token)))
        generation, since = self._sequencer.begin()
        with self._lock:
            if self._stopping.is_set():
                return
            self._client, self._conn = client, conn
        self._last_conn = conn
        try:
            self.stats.connects += 1
            try:
                client.connect(parts.hostname, port, keepalive=keepalive)
            except (OSError, ssl.SSLError, mqtt.WebsocketConnectionError) as exc:
                # paho reports an HTTP refusal of the upgrade (a bad
                # signature's 403) and a refused TCP connect alike.
                raise ConnectionLost(
                    f"cannot connect to {parts.hostname}:{port}: {exc or type(exc).__name__}"
                ) from exc
            self._serve(client, conn, token, generation, since)
        finally:
            with self._lock:
                self._client, self._conn = None, None
            self._close(client, conn)

    def _serve(
        self,
        client: mqtt.Client,
        conn: _Connection,
        token: ConnectionToken,
        generation: int,
        since: str | None,
    ) -> None:
        keepalive = conn.keepalive
        connack_by = conn.started + self._connect_timeout
        suback_by = 0.0
        subscribe_sent = False
        catch_up_started = False
        planned_age = self._max_age * (1.0 - _PLANNED_AGE_JITTER * self._rand())
        self.stats.planned_age = planned_age
        planned_at = conn.started + planned_age
        # Past this the old connection is given up even without a new token.
        last_at = conn.started + max(planned_age, _WEBSOCKET_LIFETIME - _LIFETIME_MARGIN)
        fetch: _TokenFetch | None = None
        fetch_retry: Backoff | None = None
        while True:
            if self._stopping.is_set():
                return
            if conn.error is not None:
                raise conn.error
            now = _clock()
            if conn.connected and not subscribe_sent:
                self._subscribe(client, conn, token)
                subscribe_sent = True
                suback_by = now + self._connect_timeout
            if conn.subscribed and not catch_up_started:
                catch_up_started = True
                conn.subscribed_at = now
                self._set_state(
                    StateChange(
                        ConnectionState.CONNECTED,
                        client_id=conn.client_id,
                        refused=self.refused_topics,
                    )
                )
                self._begin_catch_up(client, conn, generation, since)
            if not conn.connected and now >= connack_by:
                raise ConnectionLost("no CONNACK from the server in time")
            if subscribe_sent and not conn.subscribed and now >= suback_by:
                raise ConnectionLost("no SUBACK from the server in time")
            silent_for = now - conn.last_in
            if silent_for >= _WATCHDOG_FACTOR * keepalive:
                self.stats.dead_server_detections += 1
                raise ConnectionLost(
                    f"server silent for {silent_for:.1f} s (keepalive {keepalive} s): "
                    "assuming the connection is dead"
                )
            if now >= planned_at and fetch is None:
                if now >= last_at:
                    log.info("planned reconnect before the 24 h WebSocket limit, without a token")
                    return
                self.stats.token_fetches += 1
                fetch = _TokenFetch(self._tokens.token)
            if fetch is not None and fetch.done.is_set():
                if fetch.token is not None:
                    self._next_token = fetch.token
                    log.info("planned reconnect before the 24 h WebSocket limit")
                    return
                error = fetch.error
                if isinstance(error, IotNotifyError) and not isinstance(
                    error, ConnectionLost | Throttled
                ):
                    raise error  # a refusal (signed out, forbidden): as at any reconnect
                if fetch_retry is None:
                    base = self._backoff
                    fetch_retry = Backoff(initial=base.initial, cap=base.cap, rand=base.rand)
                delay = fetch_retry.next_delay()
                log.warning(
                    "no token for the planned reconnect (%s); keeping this connection, "
                    "retrying in %.1f s",
                    error,
                    delay,
                )
                planned_at = min(now + delay, last_at)
                fetch = None
            due = [
                conn.last_in + _WATCHDOG_FACTOR * keepalive,
                # paho sends PINGREQ when either direction was quiet for keepalive.
                min(conn.last_in, conn.last_out) + keepalive,
                planned_at if fetch is None else now + _PREFETCH_POLL,
            ]
            if not conn.connected:
                due.append(connack_by)
            elif subscribe_sent and not conn.subscribed:
                due.append(suback_by)
            timeout = min(max(0.0, min(due) - now) + _SLACK, _MAX_SLEEP)
            self.stats.loop_wakeups += 1
            rc = client.loop(timeout=timeout)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS and not self._stopping.is_set():
                if conn.error is not None:
                    raise conn.error
                raise ConnectionLost(f"connection lost ({mqtt.error_string(rc)})")

    def _begin_catch_up(
        self, client: mqtt.Client, conn: _Connection, generation: int, since: str | None
    ) -> None:
        inbox = self._inbox
        if inbox is None:
            self._sequencer.skip_catch_up()
            self._set_state(StateChange(ConnectionState.CAUGHT_UP, client_id=conn.client_id))
            return

        def run() -> None:
            cursor = since
            # The ``next`` of the last page delivered: a retry resumes near it.
            delivered_up_to: str | None = None
            limit = _INBOX_PAGE
            retry = Backoff(initial=_CATCH_UP_RETRY_INITIAL, cap=_CATCH_UP_RETRY_CAP)
            while not self._stopping.is_set() and not conn.gone.is_set():
                try:
                    page = inbox.notifications(since=cursor, limit=limit)
                except AuthError as exc:
                    # The API refused the ID token even after a renewal
                    # (ApiClient retries a 401 once): signed out, which ends
                    # the subscriber as it would at the next token fetch.
                    conn.error = exc
                    break
                except Exception as exc:
                    # A 403 (Forbidden) lands here too: the inbox refusing a
                    # read is no reason to drop a connection that delivers,
                    # and a reconnect (GET /token, CONNECT, SUBSCRIBE: billed)
                    # would only meet the same 403 again, in a loop paced by
                    # the reconnect backoff; the retry waits 5 s to 5 min.
                    if isinstance(exc, ConnectionLost) and limit > 1:
                        limit = max(1, limit // _PAGE_SHRINK)
                        continue
                    error = (
                        exc
                        if isinstance(exc, IotNotifyError)
                        else ConnectionLost(f"catch-up failed: {exc!r}")
                    )
                    if not self._sequencer.give_up(generation, delivered_up_to):
                        return
                    delay = retry.next_delay()
                    self._set_state(
                        StateChange(
                            ConnectionState.CATCH_UP_FAILED,
                            error=error,
                            retry_in=delay,
                            client_id=conn.client_id,
                        )
                    )
                    if conn.gone.wait(delay):
                        return
                    limit = _INBOX_PAGE
                    continue
                self.stats.catch_up_fetched += len(page.notifications)
                last = page.next is None
                if not self._sequencer.page(generation, page.notifications, last=last):
                    return
                if last:
                    self._set_state(
                        StateChange(ConnectionState.CAUGHT_UP, client_id=conn.client_id)
                    )
                    return
                cursor = delivered_up_to = page.next
            if conn.error is not None and not conn.closed:
                with contextlib.suppress(Exception):
                    client.disconnect()  # wakes the supervisor to act on the error

        previous = self._catch_up_thread
        if previous is not None and previous.is_alive():
            previous.join(self._connect_timeout)
        self._catch_up_thread = threading.Thread(target=run, name="iotnotify-catchup", daemon=True)
        self._catch_up_thread.start()

    def _subscribe(self, client: mqtt.Client, conn: _Connection, token: ConnectionToken) -> None:
        """One SUBSCRIBE per topic the token names, pipelined, minus refused ones.

        Only topics the token names are asked for: on MQTT 3.1.1 AWS IoT
        answers an unauthorised SUBSCRIBE by closing the connection (AWS IoT
        developer guide, "MQTT 5 vs MQTT 3": "...disconnects the client" for
        3.1.1; aws-iot-device-sdk-js issue 125). One topic per packet means
        a close names its culprit (the first topic without a SUBACK, since
        the server handles packets in order) and a SUBACK 0x80 refuses one
        topic, never its neighbours. A few topics per connect, so the extra
        packets stay far below IoT's 100 requests per second per connection.
        """
        topics = [topic for topic in token.topics if topic not in self._refused]
        if not topics:
            self._nothing_granted = True
            raise Forbidden(
                "not authorised to subscribe to any topic of the token: "
                + ", ".join(token.topics or ("(the token names none)",))
            )
        for topic in topics:
            rc, mid = client.subscribe(topic, 0)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
                raise ConnectionLost(f"SUBSCRIBE failed ({mqtt.error_string(rc)})")
            conn.pending_topics[mid] = topic

    @property
    def refused_topics(self) -> tuple[str, ...]:
        """Topics the server refused; the subscriber no longer asks for them."""
        return tuple(self._refused)

    def _refuse(self, topic: str) -> None:
        if topic not in self._refused:
            self._refused.append(topic)
            log.warning("not authorised to subscribe to %s; continuing without it", topic)

    def _client_id_of(self, token: ConnectionToken) -> str:
        if self._client_id is not None:
            if not self._client_id.startswith(token.client_id_prefix):
                raise Forbidden(
                    f"client id {self._client_id!r} does not start with {token.client_id_prefix!r}"
                    ": IoT would refuse it"
                )
            return self._client_id
        try:
            return client_id_for(token.user_id, self._device_id)
        except ContractError as exc:
            raise AuthError(f"cannot build a client id: {exc}") from exc

    def _new_client(self, conn: _Connection, *, path: str, tls: bool) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=conn.client_id,
            protocol=mqtt.MQTTv311,
            transport="websockets",
            clean_session=True,
            reconnect_on_failure=False,
        )
        client.connect_timeout = self._connect_timeout
        client.ws_set_options(path=path)
        if tls:
            try:
                # One shared context per CA setting (iotnotify.tls): paho's
                # tls_set() would parse the whole system CA bundle per client.
                client.tls_set_context(client_context(self._ca_file))
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise AuthError(f"cannot set up TLS with CA file {self._ca_file!r}: {exc}") from exc

        def on_log(_c: Any, _u: Any, level: int, text: str) -> None:
            # paho logs every packet it receives or sends; the watchdog and the
            # wake-up schedule need both times, which paho does not expose.
            if level == mqtt.MQTT_LOG_ERR:
                conn.socket_error = text
                return
            if level != mqtt.MQTT_LOG_DEBUG:
                return
            if text.startswith("Received "):
                conn.last_in = _clock()
            elif text.startswith("Sending "):
                conn.last_out = _clock()
                if text.startswith("Sending PINGREQ"):
                    self.stats.pings_sent += 1

        def on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
            if reason.is_failure:
                name = str(reason)
                # MQTT 3.1.1 return code 4 is bad credentials, 5 not authorised.
                if "user name or password" in name.lower():
                    conn.error = AuthError(f"the server refused the credentials: {name}")
                else:
                    conn.error = Forbidden(f"the server refused the connection: {name}")
                return
            conn.connected = True

        def on_subscribe(_c: Any, _u: Any, mid: int, reasons: list[Any], _props: Any) -> None:
            topic = conn.pending_topics.pop(mid, None)
            if topic is None:
                return
            if any(r.is_failure for r in reasons):
                self._refuse(topic)  # SUBACK 0x80: the connection stays; keep the rest
            else:
                conn.granted.append(topic)
            if conn.pending_topics:
                return
            if conn.granted:
                conn.subscribed = True
            else:
                self._nothing_granted = True
                conn.error = Forbidden(
                    "not authorised to subscribe to any topic of the token: "
                    + ", ".join(self._refused)
                )

        def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
            try:
                note = Notification.from_json(bytes(message.payload))
            except ContractError as exc:
                log.warning("ignoring a message on %s: %s", message.topic, exc)
                return
            self._sequencer.live(note, own=message.topic == conn.own_topic)

        def on_disconnect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
            if conn.error is not None or self._stopping.is_set():
                return
            conn.error = _disconnect_error(conn, reason)
            if isinstance(conn.error, SubscriptionRefused):
                for topic in conn.error.topics:
                    self._refuse(topic)

        client.on_log = on_log
        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.on_disconnect = on_disconnect
        return client

    def _close(self, client: mqtt.Client, conn: _Connection) -> None:
        conn.closed = True
        conn.gone.set()  # ends a catch-up retry waiting on this connection
        try:
            if conn.connected and conn.error is None:
                # A clean DISCONNECT tells IoT this was intended (no last-will,
                # CLIENT_INITIATED_DISCONNECT in the lifecycle event).
                client.disconnect()
                deadline = time.monotonic() + 1.0
                while client.is_connected() and time.monotonic() < deadline:
                    if client.loop(timeout=0.1) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        break
        except Exception:
            log.debug("error while disconnecting", exc_info=True)
        sock = client.socket()
        if sock is not None:
            with contextlib.suppress(Exception):
                sock.close()


# MQTT 5 DISCONNECT reason 0x8E; AWS IoT sends it to an MQTT 5 client whose
# client id another connection took (AWS IoT developer guide, "MQTT 5
# reason codes"; lifecycle disconnectReason DUPLICATE_CLIENTID).
_SESSION_TAKEN_OVER: Final = 0x8E


def _disconnect_error(conn: _Connection, reason: Any) -> ConnectionLost | Forbidden:
    """Why a connection ended that we did not end, in words a user can act on.

    MQTT 3.1.1 has no server DISCONNECT, so paho can only say "Unspecified
    error". When the server closed the stream cleanly (no socket error, no
    watchdog) on an established connection, the usual cause on AWS IoT is
    another connection with the same client id: IoT keeps only the newest
    (DUPLICATE_CLIENTID). MQTT 5 says so explicitly (reason 0x8E).
    """
    code = getattr(reason, "value", None)
    if conn.connected and conn.pending_topics and conn.socket_error is None:
        # AWS IoT closes an MQTT 3.1.1 connection on an unauthorised SUBSCRIBE;
        # it handles packets in order, so the culprit is the oldest unanswered.
        topic = next(iter(conn.pending_topics.values()))
        return SubscriptionRefused(
            f"the server closed the connection on SUBSCRIBE to {topic}: not authorised "
            "(AWS IoT closes MQTT 3.1.1 connections on an unauthorised SUBSCRIBE); "
            "reconnecting without it",
            (topic,),
        )
    if code == _SESSION_TAKEN_OVER or (conn.connected and conn.socket_error is None):
        return SessionTakenOver(
            f"the server closed the connection of client id {conn.client_id!r}: "
            "another connection with the same client id took over (DUPLICATE_CLIENTID: AWS IoT "
            "keeps only the newest), or the server shut down"
        )
    detail = conn.socket_error or str(reason)
    return ConnectionLost(f"connection of {conn.client_id!r} lost: {detail}")


def _server_now(token: ConnectionToken) -> float:
    if token.server_time is not None:
        return token.server_time
    log.warning("the token response has no server time; --since now uses the local clock")
    return time.time()


def _own_topic(token: ConnectionToken) -> str | None:
    """The user's own notifications topic among the token's topics."""
    return own_notifications_topic(token.topics, token.user_id)
