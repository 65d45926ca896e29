"""The MQTT 3.1.1 and 5 broker of the emulator, with AWS IoT Core's rules and limits.

Both versions share this module (IAM, limits, routing); what MQTT 5 adds
(CONNACK properties, topic aliases, subscription options, reason codes,
server DISCONNECT) lives in :mod:`iotnotify_emulator.session5`, and a
session's ``v5`` is None for a 3.1.1 connection. On MQTT 5 an unauthorised
SUBSCRIBE or PUBLISH gets reason 0x87 and the connection stays.

Hand-written for the same reason as :mod:`iotnotify_emulator.mqtt`: every
packet has to pass through IAM (:mod:`iotnotify_emulator.iam`) the way AWS
IoT Core evaluates it, and the refusals have to look like AWS's (a closed
connection without CONNACK for an unauthorised 3.1.1 CONNECT, SUBACK 0x80, a
closed connection for an unauthorised PUBLISH, no ack at all for QoS 2).
The transport (aiohttp WebSocket) lives in :mod:`iotnotify_emulator.server`;
this module only sees bytes in and out.

Design points:

* Routing uses a topic trie, so a publish costs the topic's depth, not the
  number of subscriptions.
* Each connection has an outbound queue bounded in bytes (a frame count would
  let 1,000 frames of 128 KB each pile up), drained by its own short-lived
  writer task: a subscriber that stops reading fills only its own queue, its
  excess deliveries are dropped and counted, and nobody else waits for it.
* Refusals are counted and kept (the last 100) in full, but logged at most
  ``refusal_log_rate`` per second: a client that provokes refusals in a loop
  must not make the broker spend its time writing logs.
* ``iot:Receive`` is evaluated on every delivery, as AWS does; the decision
  is cached per connection and topic because a connection's policies cannot
  change while it is open.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final, Protocol

from iotnotify.contract import (
    MAX_CLIENT_ID_BYTES,
    MAX_PAYLOAD_BYTES,
    Topic,
    TopicFilter,
    iot_arn,
)
from iotnotify.errors import InvalidTopic
from iotnotify_emulator import mqtt5
from iotnotify_emulator.credentials import Credential
from iotnotify_emulator.deadlines import Deadlines
from iotnotify_emulator.iam import Decision, evaluate
from iotnotify_emulator.mqtt import (
    SUBACK_FAILURE,
    Auth,
    Connack,
    ConnackCode,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    encode,
)
from iotnotify_emulator.mqtt5 import Properties, ReasonCode
from iotnotify_emulator.persistent import OfflineSessions
from iotnotify_emulator.ratelimit import OutboundLimiter
from iotnotify_emulator.rules import RulesEngine
from iotnotify_emulator.session5 import (
    NO_LOCAL,
    RETAIN_AS_PUBLISHED,
    ProtocolViolation,
    State5,
    check_publish,
    connack_properties,
    disconnect_reason,
    forwarded,
    retain_handling,
)
from iotnotify_emulator.shared import SharedSubscriptions, split_shared
from iotnotify_emulator.trie import SubscriptionTrie

__all__ = [
    "Broker",
    "BrokerSettings",
    "DisconnectReason",
    "MqttSession",
    "Stats",
    "Transport",
]

log = logging.getLogger("iotnotify_emulator")

# Lifecycle topics (AWS IoT developer guide, "Lifecycle events").
_CONNECTED_TOPIC: Final = "$aws/events/presence/connected/{}"
_DISCONNECTED_TOPIC: Final = "$aws/events/presence/disconnected/{}"
# Same page, "Connect attempt failure event".
_CONNECT_FAILED_TOPIC: Final = "$aws/events/presence/connect_failed/{}"
# Subscribe/Unsubscribe events (AWS IoT developer guide, "Lifecycle events").
_SUBSCRIPTION_TOPIC: Final = "$aws/events/subscriptions/{}/{}"
_RECEIVE_CACHE_SIZE: Final = 1024
_NO_DECISIONS: Final[dict[str, bool]] = {}  # MqttSession._receive_cache before its first entry
# One WebSocket frame may carry many MQTT packets; batching keeps fan-out
# from paying one frame (and one syscall) per small message.
_WRITE_BATCH_BYTES: Final = 64 * 1024


class DisconnectReason:
    """``disconnectReason`` values of AWS IoT lifecycle events."""

    AUTH_ERROR = "AUTH_ERROR"
    CLIENT_ERROR = "CLIENT_ERROR"
    CLIENT_INITIATED_DISCONNECT = "CLIENT_INITIATED_DISCONNECT"
    CONNECTION_LOST = "CONNECTION_LOST"
    API_INITIATED_DISCONNECT = "API_INITIATED_DISCONNECT"
    DUPLICATE_CLIENTID = "DUPLICATE_CLIENTID"
    MQTT_KEEP_ALIVE_TIMEOUT = "MQTT_KEEP_ALIVE_TIMEOUT"
    SERVER_INITIATED_DISCONNECT = "SERVER_INITIATED_DISCONNECT"
    WEBSOCKET_TTL_EXPIRATION = "WEBSOCKET_TTL_EXPIRATION"


class Transport(Protocol):
    """What a session needs from its connection (an aiohttp WebSocket in practice)."""

    def write_now(self, data: bytes) -> bool:
        """Write ``data`` at once if the connection takes it without waiting; False if not."""
        ...

    async def send(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """AWS IoT Core's defaults; tests shrink the timers."""

    region: str = "us-east-1"
    account_id: str = "123456789012"
    keepalive_min: int = 30
    keepalive_max: int = 1200
    keepalive_factor: float = 1.5
    websocket_ttl: float = 24 * 3600.0
    connect_timeout: float = 10.0
    max_subscriptions: int = 50
    max_filters_per_subscribe: int = 8
    # Bytes of frames waiting for one connection's socket; deliveries beyond
    # it are dropped and counted (``Stats.drops``). Not an AWS quota: AWS
    # does not document its buffer, this only bounds the emulator's memory.
    outbound_queue_bytes: int = 2 * 1024 * 1024
    # Refusal log lines per second (the records themselves are all kept).
    refusal_log_rate: float = 20.0
    # AWS IoT Core quotas (general reference, message broker): persistent
    # session expiry (default 1 h) and unacknowledged QoS 1 messages in flight
    # per connection (100).
    persistent_session_expiry: float = 3600.0
    max_inflight_qos1: int = 100
    # Outbound throughput per connection (AWS quota 512 KiB/s; None disables).
    # The outbound message rate is ``publish_rate_limit``, as on AWS.
    throughput_limit: float | None = 512 * 1024
    # AWS quota "connect requests per second per client ID" is 1. Off (None)
    # by default: tests and demos reconnect one client id faster than that;
    # set 1.0 to get AWS's behaviour (docs/fidelity.md).
    connect_rate_per_client_id: float | None = None
    # AWS IoT Core quota "publish requests per second per connection"; None disables.
    publish_rate_limit: float | None = 100.0
    # A resumed persistent session's stored messages go out at this many per
    # second, beside live traffic (developer guide, "Using MQTT persistent
    # sessions": "at a maximum rate of 10 messages per second"); None: at once.
    stored_message_rate: float | None = 10.0
    # Speak MQTT 5 (as AWS IoT Core does since 2022). Off: a v5 CONNECT gets
    # CONNACK 0x84 Unsupported Protocol Version in the v5 form.
    mqtt5: bool = True


@dataclass(slots=True)
class Stats:
    """Counters served at ``GET /_emulator/stats``."""

    connections_total: int = 0
    connections_current: int = 0
    connects_refused: int = 0
    handshakes_refused: int = 0
    publishes_mqtt: int = 0
    publishes_http: int = 0
    deliveries: int = 0
    drops: int = 0
    denials: int = 0
    denials_by_action: dict[str, int] = field(default_factory=dict)
    disconnects_by_reason: dict[str, int] = field(default_factory=dict)
    qos2_ignored: int = 0
    # MQTT 5 messages whose Message Expiry Interval ran out before delivery.
    expired: int = 0
    protocol_errors: int = 0
    throttled: int = 0
    throttled_outbound: int = 0
    # QoS 0 deliveries held back by the 512 KiB/s throughput quota, then sent.
    delayed_outbound: int = 0
    connects_throttled: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def effective_keepalive(requested: int, settings: BrokerSettings) -> int:
    """AWS clamps keepalive: 0 or above the max becomes the max, below the min the min."""
    if requested == 0 or requested > settings.keepalive_max:
        return settings.keepalive_max
    return max(requested, settings.keepalive_min)


class Broker:
    """Sessions, subscriptions, retained messages and authorisation."""

    def __init__(self, settings: BrokerSettings | None = None) -> None:
        self.settings = settings or BrokerSettings()
        self.stats = Stats()
        self.trie: SubscriptionTrie[MqttSession] = SubscriptionTrie()
        self.shared: SharedSubscriptions[MqttSession] = SharedSubscriptions()
        self.offline: OfflineSessions[MqttSession] = OfflineSessions(self._end_session)
        self.sessions: dict[str, MqttSession] = {}
        self.retained: dict[str, Publish] = {}
        # When a retained message with a Message Expiry Interval arrived
        # (time.monotonic()), so that it expires while retained (MQTT 5 3.3.2.3.3).
        self.retained_at: dict[str, float] = {}
        # MQTT 5 wills waiting out their Will Delay Interval, by client id.
        self._delayed_wills: dict[str, tuple[asyncio.TimerHandle, Publish]] = {}
        # Epoch milliseconds of each retained message (iot-data lastModifiedTime).
        self.retained_modified: dict[str, int] = {}
        self.refusals: deque[dict[str, Any]] = deque(maxlen=100)
        # Topic rules (rules.py): offered every accepted message; never raises.
        self.rules: RulesEngine | None = None
        self._versions: dict[str, int] = {}
        # Client id -> time of its last accepted CONNECT, oldest first (pruned).
        self._connects: OrderedDict[str, float] = OrderedDict()
        self._log_tokens = self.settings.refusal_log_rate
        self._log_tokens_at = time.monotonic()
        self._logs_suppressed = 0
        # Sessions with frames queued during this loop iteration (write_soon).
        self._to_flush: list[MqttSession] = []
        # Every connection's one timer (MqttSession._arm), on one loop timer.
        self.deadlines = Deadlines()

    # --- authorisation ---------------------------------------------------------

    def arn(self, kind: str, name: str) -> str:
        return iot_arn(self.settings.region, self.settings.account_id, kind, name)

    def authorize(
        self,
        credential: Credential,
        action: str,
        kind: str,
        name: str,
        *,
        client_id: str | None = None,
        source_ip: str | None = None,
        connect_attributes: tuple[str, ...] | None = None,
    ) -> Decision:
        return self.authorize_resource(
            credential,
            action,
            self.arn(kind, name),
            client_id=client_id,
            source_ip=source_ip,
            connect_attributes=connect_attributes,
        )

    def authorize_resource(
        self,
        credential: Credential,
        action: str,
        resource: str,
        *,
        client_id: str | None = None,
        source_ip: str | None = None,
        connect_attributes: tuple[str, ...] | None = None,
    ) -> Decision:
        """Evaluate ``action`` on a full resource ARN (or ``*``); refusals are recorded.

        The request context holds the condition keys AWS supplies for IoT
        (:func:`request_context`).
        """
        context = request_context(
            credential,
            client_id=client_id,
            source_ip=source_ip,
            connect_attributes=connect_attributes,
        )
        decision = evaluate(
            action,
            resource,
            identity_policies=credential.identity_policies,
            session_policies=credential.session_policies,
            context=context,
        )
        if not decision.allowed:
            self.refuse(
                decision.reason,
                action=action,
                resource=resource,
                policy=decision.policy,
                principal=credential.principal_id,
                client_id=client_id,
            )
        return decision

    def refuse(self, reason: str, **fields: Any) -> None:
        """Count and log a refusal with everything needed to understand it."""
        action = fields.get("action")
        if action:
            self.stats.denials += 1
            by_action = self.stats.denials_by_action
            by_action[action] = by_action.get(action, 0) + 1
        record = {"event": "refusal", "reason": reason, **fields, "ts": time.time()}
        self.refusals.append(record)
        if not self._may_log_refusal():
            self._logs_suppressed += 1
            return
        if self._logs_suppressed:
            record = {**record, "suppressed_before": self._logs_suppressed}
            self._logs_suppressed = 0
        log.info("refusal %s", json.dumps(record, default=str, sort_keys=True), extra=record)

    def _may_log_refusal(self) -> bool:
        """Token bucket: ``refusal_log_rate`` lines per second, a burst of one second."""
        rate = self.settings.refusal_log_rate
        now = time.monotonic()
        self._log_tokens = min(rate, self._log_tokens + (now - self._log_tokens_at) * rate)
        self._log_tokens_at = now
        if self._log_tokens < 1.0:
            return False
        self._log_tokens -= 1.0
        return True

    # --- sessions --------------------------------------------------------------

    def open(self, transport: Transport, credential: Credential, remote: str) -> MqttSession:
        """A new connection whose upgrade was authenticated; CONNECT comes next."""
        return MqttSession(self, transport, credential, remote)

    async def register(self, session: MqttSession) -> None:
        """Make ``session`` the one live connection of its client id.

        The map is updated before the older connection is closed: closing
        can stall (a peer that does not read), and a third CONNECT arriving
        meanwhile must find, and kick, this session rather than an empty
        slot, or two connections would stay live with one client id.
        """
        older = self.sessions.get(session.client_id)
        self.sessions[session.client_id] = session
        self.stats.connections_total += 1
        self.stats.connections_current = len(self.sessions)
        version = self._versions.get(session.client_id, 0) + 1
        self._versions[session.client_id] = version
        session.version = version
        if older is not None and older is not session:
            await older.close(DisconnectReason.DUPLICATE_CLIENTID)

    def unregister(self, session: MqttSession) -> None:
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        if session.session_expiry:
            # A persistent session outlives its connection, subscriptions included.
            self.offline.keep(session, session.session_expiry)
        else:
            self._end_session(session)
        self.stats.connections_current = len(self.sessions)

    def _end_session(self, session: MqttSession) -> None:
        for topic_filter in session.subscriptions:
            self.remove_subscription(topic_filter, session)
        session.subscriptions.clear()
        session.forget_messages()

    def resume_session(self, session: MqttSession, *, clean: bool) -> bool:
        """Attach the kept persistent session of ``session.client_id`` to ``session``.

        ``clean`` (cleanSession=1 / Clean Start=1) ends a kept session
        instead. Returns ``sessionPresent``.
        """
        if clean:
            self.offline.discard(session.client_id)
            return False
        old = self.offline.take(session.client_id)
        if old is None:
            return False
        for name, qos in old.subscriptions.items():
            self.remove_subscription(name, old)
            self.add_subscription(name, session, qos)
        session.subscriptions = dict(old.subscriptions)
        old.subscriptions.clear()
        if old.v5 is not None and session.v5 is not None:
            session.v5.options.update(old.v5.options)
        session.take_messages(old)
        return True

    def connect_allowed(self, client_id: str) -> bool:
        """AWS quota: at most ``connect_rate_per_client_id`` CONNECTs per second
        per client id (AWS general reference, AWS IoT Core quotas)."""
        rate = self.settings.connect_rate_per_client_id
        if rate is None:
            return True
        now = time.monotonic()
        window = 1.0 / rate
        connects = self._connects
        while connects:  # entries are in time order: drop the ones that no longer matter
            oldest, at = next(iter(connects.items()))
            if now - at < window:
                break
            del connects[oldest]
        if client_id in connects:
            return False
        connects[client_id] = now
        return True

    def add_subscription(self, name: str, session: MqttSession, qos: int) -> None:
        """Route ``name`` (validated, authorised) to ``session``: a plain or a shared filter."""
        if split_shared(name) is not None:
            self.shared.add(name, session, qos)
        else:
            self.trie.add(name, session, qos)

    def remove_subscription(self, name: str, session: MqttSession) -> None:
        if name.startswith("$share/"):
            self.shared.remove(name, session)
        else:
            self.trie.remove(name, session)

    @property
    def subscription_count(self) -> int:
        """Subscriptions in place, plain and shared."""
        return len(self.trie) + len(self.shared)

    def recipients(self, topic: str) -> dict[MqttSession, int]:
        """Who gets a message on ``topic``, with the QoS granted: every plain
        subscriber, plus one random member per matching share group
        (:mod:`iotnotify_emulator.shared`)."""
        found = self.trie.match(topic)
        for member, qos in self.shared.pick(topic, lambda s: s.may_receive(topic)):
            if found.get(member, -1) < qos:
                found[member] = qos
        return found

    async def delete_connection(
        self, client_id: str, *, clean_session: bool, prevent_will: bool
    ) -> bool:
        """iot-data ``DeleteConnection``: close ``client_id``'s connection.

        Announced as ``API_INITIATED_DISCONNECT`` (AWS IoT developer guide,
        "Lifecycle events"); the will is published unless ``prevent_will``.
        False when no such client is connected.
        """
        session = self.sessions.get(client_id)
        if session is None:
            return False
        if prevent_will:
            session.will = None
        await session.close(DisconnectReason.API_INITIATED_DISCONNECT)
        if clean_session:
            self.offline.discard(client_id)
        return True

    async def close_all(self) -> None:
        for session in list(self.sessions.values()):
            await session.close(DisconnectReason.SERVER_INITIATED_DISCONNECT)
        for handle, _ in self._delayed_wills.values():
            handle.cancel()
        self._delayed_wills.clear()

    # --- MQTT 5 delayed wills (MQTT 5 section 3.1.3.2.2) -------------------------

    def delay_will(self, client_id: str, will: Publish, delay: float) -> None:
        """Publish ``will`` after ``delay`` seconds unless the session resumes first."""
        self.fire_will(client_id)  # an older pending will of this id goes first
        handle = asyncio.get_running_loop().call_later(delay, self.fire_will, client_id)
        self._delayed_wills[client_id] = (handle, will)

    def fire_will(self, client_id: str) -> None:
        """Publish the pending will of ``client_id`` now (its delay passed or its session ended)."""
        pending = self._delayed_wills.pop(client_id, None)
        if pending is not None:
            handle, will = pending
            handle.cancel()
            self.route(will.topic, will.payload, will.qos, will.retain, properties=will.properties)

    def drop_will(self, client_id: str) -> None:
        """The session resumed within the Will Delay Interval: the will is not sent."""
        pending = self._delayed_wills.pop(client_id, None)
        if pending is not None:
            pending[0].cancel()

    # --- routing ---------------------------------------------------------------

    def route(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        *,
        properties: Properties | None = None,
        origin: MqttSession | None = None,
    ) -> int:
        """Deliver a message (already authorised for its publisher); returns deliveries.

        ``properties`` (MQTT 5 PUBLISH properties, from a v5 client or
        iot-data) reach v5 subscribers only; 3.1.1 subscribers get the
        message without them (AWS IoT developer guide, "MQTT": an MQTT 5
        publisher's message reaches an MQTT 3 subscriber). ``origin`` is the
        publishing session, for MQTT 5's No Local option.
        """
        properties = forwarded(properties)
        # For copies that may wait before they are sent (QoS 1): see Publish.received_at.
        arrived = (
            time.monotonic()
            if properties is not None and properties.message_expiry_interval is not None
            else None
        )
        if retain:
            self.retained_at.pop(topic, None)
            self.retained_modified[topic] = int(time.time() * 1000)
            if payload:
                self.retained[topic] = Publish(
                    topic=topic, payload=payload, qos=qos, retain=True, properties=properties
                )
                if properties is not None and properties.message_expiry_interval is not None:
                    self.retained_at[topic] = time.monotonic()
            else:
                # MQTT 3.1.1 section 3.3.1.3: an empty retained message clears the topic.
                self.retained.pop(topic, None)
                self.retained_modified.pop(topic, None)
        delivered = 0
        # One encoding of a QoS 0 delivery per protocol version, shared by all.
        shared_qos0: dict[bool, bytes] = {}
        for session, granted in self.recipients(topic).items():
            if not session.may_receive(topic):
                continue
            v5 = session.v5 is not None
            # Forwarded messages carry retain=0 (section 3.3.1.3): they are live,
            # unless an MQTT 5 subscription asked for Retain As Published.
            keep_retain = v5 and retain and session.subscribed_with(topic, RETAIN_AS_PUBLISHED)
            if v5 and session is origin and session.subscribed_with(topic, NO_LOCAL, every=True):
                continue  # MQTT 5 section 3.8.3.1: No Local
            if min(qos, granted) == 0 and not keep_retain:
                frame = shared_qos0.get(v5)
                if frame is None:
                    frame = shared_qos0[v5] = session.encode(
                        Publish(topic=topic, payload=payload, properties=properties)
                    )
            else:
                message = Publish(
                    topic=topic,
                    payload=payload,
                    qos=min(qos, granted),
                    retain=keep_retain,
                    properties=properties,
                    received_at=arrived,
                )
                if session.deliver_publish(message):
                    delivered += 1
                continue
            if session.deliver(frame):
                delivered += 1
        return delivered

    def retained_message(self, topic: str) -> Publish | None:
        """The message retained on ``topic``, its MQTT 5 Message Expiry Interval
        counted down; None when there is none or it expired (then it is
        dropped: MQTT 5 section 3.3.2.3.3)."""
        message = self.retained.get(topic)
        if message is None:
            return None
        properties = message.properties
        if properties is None or properties.message_expiry_interval is None:
            return message
        left = forwarded(properties, received_at=self.retained_at.get(topic))
        if left is None:
            self.retained.pop(topic, None)
            self.retained_at.pop(topic, None)
            self.retained_modified.pop(topic, None)
            return None
        return replace(message, properties=left)

    def write_soon(self, session: MqttSession) -> None:
        """Have ``session`` flushed at the end of this loop iteration.

        One callback per iteration for every connection that got frames, not
        a task per delivery: at 10,000 deliveries/s the tasks were a sizeable
        share of the emulator's CPU, and writing each frame the moment it is
        routed made the readers wake once per frame. A connection given
        several frames in one iteration gets them in one write.
        """
        to_flush = self._to_flush
        to_flush.append(session)
        if len(to_flush) == 1:
            asyncio.get_running_loop().call_soon(self._flush_writes)

    def _flush_writes(self) -> None:
        sessions, self._to_flush = self._to_flush, []
        for session in sessions:
            session.flush()

    def publish_event(self, topic: str, event: dict[str, Any]) -> None:
        try:
            Topic(topic)
        except InvalidTopic:
            return  # a client id with '+', '#' or over the limits has no event topic
        payload = json.dumps(event, separators=(",", ":")).encode()
        self.route(topic, payload, 0, False)
        if self.rules is not None:  # lifecycle events reach rules too (presence)
            self.rules(topic, payload, None, None)


class MqttSession:
    """One WebSocket connection speaking MQTT: CONNECT first, then the rest."""

    # Slots: with this many attributes the instance dict stopped sharing its
    # keys and held ~1.5 KB per connection; slots hold them in ~0.3 KB.
    __slots__ = (
        "_close_reason",
        "_closing",
        "_held",
        "_held_bytes",
        "_inflight",
        "_last_activity",
        "_outbound",
        "_pace_timer",
        "_paced",
        "_paced_bytes",
        "_packet_id",
        "_publish_grants",
        "_queue",
        "_queued_bytes",
        "_receive_cache",
        "_release_timer",
        "_stored",
        "_stored_timer",
        "_timer",
        "_tokens",
        "_tokens_at",
        "_ttl_at",
        "_v5_disconnect",
        "_v5_disconnect_text",
        "_will_delay",
        "_writer",
        "broker",
        "client_id",
        "closed",
        "connected",
        "credential",
        "dropped",
        "keepalive",
        "remote",
        "session_expiry",
        "session_identifier",
        "subscriptions",
        "transport",
        "v5",
        "version",
        "will",
    )

    def __init__(
        self, broker: Broker, transport: Transport, credential: Credential, remote: str
    ) -> None:
        self.broker = broker
        self.transport = transport
        self.credential = credential
        self.remote = remote
        self.client_id = ""
        self.connected = False
        # MQTT 5 state; None for a 3.1.1 connection (session5.py holds the v5 rules).
        self.v5: State5 | None = None
        # The reason code of the DISCONNECT a v5 client gets when the server closes.
        self._v5_disconnect: int | None = None
        # ... and its Reason String, where AWS's own is known.
        self._v5_disconnect_text: str | None = None
        self._will_delay = 0  # MQTT 5 Will Delay Interval, seconds
        self.closed = False
        self.version = 0
        self.keepalive = 0
        self.session_identifier = str(uuid.uuid4())
        self.subscriptions: dict[str, int] = {}
        self.dropped = 0
        self.will: Publish | None = None
        # Created with the first frame and dropped once written: an empty
        # deque holds a 0.5 KB block, and most connections are idle. For the
        # same reason there is no asyncio.Event for "drained": close() waits
        # for the writer task itself.
        self._queue: deque[bytes] | None = None
        self._queued_bytes = 0
        # Seconds a persistent session outlives the connection (0: clean session).
        self.session_expiry = 0.0
        # QoS 1 messages sent and not yet acknowledged, by packet id, and
        # those waiting: over the in-flight limit, or while a persistent
        # session's client is away. Made on first use (most connections
        # never see a QoS 1 message).
        self._inflight: dict[int, Publish] | None = None
        self._held: deque[Publish] | None = None
        self._held_bytes = 0
        # A resumed persistent session's stored messages, sent at
        # ``stored_message_rate`` (their bytes count in _held_bytes).
        self._stored: deque[Publish] | None = None
        self._stored_timer: asyncio.TimerHandle | None = None
        self._outbound: OutboundLimiter | None = None
        # QoS 0 frames held back by the throughput quota, with the
        # time.monotonic() at which each may go (made on first use).
        self._paced: deque[tuple[float, bytes]] | None = None
        self._paced_bytes = 0
        self._pace_timer: asyncio.TimerHandle | None = None
        self._release_timer: asyncio.TimerHandle | None = None
        self._writer: asyncio.Task[None] | None = None
        # Set by _close_soon: the reason the close that is under way will
        # announce, so that the read loop ending meanwhile (it stops reading
        # on a protocol error) does not announce CONNECTION_LOST instead.
        self._close_reason: str | None = None
        self._packet_id = 0
        # Shared (empty, never written) until the first delivery's decision:
        # an idle connection's own empty dict would be 64 B of nothing.
        self._receive_cache: dict[str, bool] = _NO_DECISIONS
        # (action, topic) pairs this connection may publish to, made on its
        # first publish (most connections never publish). Only grants are
        # kept: a denial closes the connection.
        self._publish_grants: set[tuple[str, str]] | None = None
        self._last_activity = time.monotonic()
        self._tokens = broker.settings.publish_rate_limit or 0.0
        self._tokens_at = self._last_activity
        settings = broker.settings
        # One deadline per connection, whichever comes first: the CONNECT
        # deadline (then the keepalive check) or the WebSocket TTL; kept in
        # broker.deadlines, one loop timer for all (deadlines.py says why).
        self._ttl_at = asyncio.get_running_loop().time() + settings.websocket_ttl
        self._timer: int | None = None  # a token of broker.deadlines
        self._arm(settings.connect_timeout, self._on_deadline)
        self._closing: asyncio.Task[None] | None = None

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    # --- timers ----------------------------------------------------------------

    def _close_soon(self, reason: str) -> None:
        if not self.closed and self._closing is None:
            self._close_reason = reason
            self._closing = asyncio.ensure_future(self.close(reason))

    def _expire_ttl(self) -> None:
        self._close_soon(DisconnectReason.WEBSOCKET_TTL_EXPIRATION)

    def _on_deadline(self) -> None:
        """The CONNECT deadline; for a connection that made it, a keepalive check."""
        if not self.connected:
            self.broker.refuse("no CONNECT before the timeout", remote=self.remote)
            self._close_soon(DisconnectReason.CLIENT_ERROR)
        else:
            self._check_keepalive()

    def _start_keepalive(self) -> None:
        """After CONNECT: keep the pending deadline (CONNECT's, or the TTL) if it
        comes before the first keepalive check would, as it checks the keepalive
        then (moving it would leave a cancelled entry in broker.deadlines until
        its time); otherwise move it up. Either way a silent client is dropped
        ``keepalive_factor`` x keepalive after its last packet."""
        settings = self.broker.settings
        limit = self.keepalive * settings.keepalive_factor
        opened = self._ttl_at - settings.websocket_ttl
        pending = min(opened + settings.connect_timeout, self._ttl_at)
        if pending > asyncio.get_running_loop().time() + limit:
            self._schedule_keepalive(limit)

    def _check_keepalive(self) -> None:
        limit = self.keepalive * self.broker.settings.keepalive_factor
        idle = time.monotonic() - self._last_activity
        if idle >= limit:
            self._close_soon(DisconnectReason.MQTT_KEEP_ALIVE_TIMEOUT)
        else:
            self._schedule_keepalive(limit - idle)

    def _schedule_keepalive(self, delay: float) -> None:
        self._arm(delay, self._check_keepalive)

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        """(Re)set the connection's deadline: ``callback`` in ``delay`` seconds,
        or the WebSocket TTL's expiry if that comes first."""
        deadlines = self.broker.deadlines
        if self._timer is not None:
            deadlines.cancel(self._timer)
            self._timer = None
        if self.closed:
            return  # close() cancelled the timer: a new one would hold the session for the TTL
        when = asyncio.get_running_loop().time() + delay
        if when >= self._ttl_at:
            when, callback = self._ttl_at, self._expire_ttl
        self._timer = deadlines.call_at(when, callback)

    # --- outbound --------------------------------------------------------------

    def next_packet_id(self) -> int:
        self._packet_id = self._packet_id % 0xFFFF + 1
        return self._packet_id

    @property
    def queued_bytes(self) -> int:
        """Bytes of frames waiting for this connection's socket."""
        return self._queued_bytes

    def deliver_publish(self, message: Publish, *, releasing: bool = False) -> bool:
        """Send a PUBLISH built for this session (no packet id yet).

        QoS 1 messages are tracked until PUBACK; at ``max_inflight_qos1``
        unacknowledged ones (AWS quota: 100) the rest wait and go out as
        acknowledgements arrive. For a persistent session whose client is
        away, QoS 1 messages are stored for its return. Waiting messages are
        bounded by ``outbound_queue_bytes``; beyond it they are dropped and
        counted. True when the message went to the socket's queue.
        """
        if message.qos == 0:
            return self.deliver(self.encode(message))
        if self.closed or self.inflight_full or (self._held and not releasing):
            # Behind what already waits, so QoS 1 messages keep their order.
            if self.session_expiry or not self.closed:
                self._hold(message)
            return False
        waiting = message
        wire = message
        if message.received_at is not None:
            # MQTT 5 section 3.3.2.3.3: the interval less the time it waited.
            left = forwarded(message.properties, received_at=message.received_at)
            if left is None:
                self.broker.stats.expired += 1
                return False
            wire = replace(message, properties=left)
        message = replace(message, packet_id=self.next_packet_id())
        wire = replace(wire, packet_id=message.packet_id)
        assert message.packet_id is not None
        frame = self.encode(wire)
        limiter = self._outbound_limiter()
        if limiter is not None and not limiter.take(len(frame)):
            # Over the outbound rate: QoS 1 waits for tokens rather than being lost.
            self._hold(waiting)
            self._release_later()
            return False
        if not self._enqueue_publish(frame):
            return False
        if self._inflight is None:
            self._inflight = {}
        self._inflight[message.packet_id] = message
        return True

    @property
    def inflight_full(self) -> bool:
        inflight = self._inflight
        if inflight is None:
            return False
        limit = self.broker.settings.max_inflight_qos1
        if self.v5 is not None and self.v5.receive_maximum is not None:
            # MQTT 5 section 3.1.2.11.3: no more unacknowledged QoS 1
            # PUBLISHes than the client's Receive Maximum.
            limit = min(limit, self.v5.receive_maximum)
        return len(inflight) >= limit

    @property
    def held_messages(self) -> int:
        """QoS 1 messages waiting: over the in-flight limit, for an offline
        session, or stored ones of a resumed session not yet sent."""
        return len(self._held or ()) + len(self._stored or ())

    def _hold(self, message: Publish) -> None:
        size = len(message.payload) + len(message.topic)
        if self._held_bytes + size > self.broker.settings.outbound_queue_bytes:
            self.dropped += 1
            self.broker.stats.drops += 1
            return
        if self._held is None:
            self._held = deque()
        self._held.append(message)
        self._held_bytes += size

    def _acknowledged(self, packet_id: int) -> None:
        """PUBACK from the client: free the slot, send what waits."""
        if self._inflight is not None:
            self._inflight.pop(packet_id, None)
        self.release_held()

    def release_held(self) -> None:
        """Send waiting QoS 1 messages while the in-flight window and the
        outbound rate limits have room (then again when tokens are back)."""
        held = self._held
        limiter = self._outbound_limiter()
        while held and not self.closed and not self.inflight_full:
            message = held[0]
            # The frame is a few bytes more than payload and topic: close enough.
            if limiter is not None and not limiter.ready(len(message.payload) + len(message.topic)):
                self._release_later()
                return
            held.popleft()
            self._held_bytes -= len(message.payload) + len(message.topic)
            if not self.deliver_publish(message, releasing=True) and held and held[-1] is message:
                # Held again (throttled at the last moment): back to the front.
                held.pop()
                held.appendleft(message)
                return

    def _release_later(self) -> None:
        if self._release_timer is None and not self.closed:
            self._release_timer = asyncio.get_running_loop().call_later(0.05, self._release_tick)

    def _release_tick(self) -> None:
        self._release_timer = None
        self.release_held()

    def take_messages(self, old: MqttSession) -> None:
        """On resuming ``old``'s persistent session: its unacknowledged messages
        (resent with DUP set, new packet ids: AWS IoT developer guide,
        "differences from MQTT 3.1.1") then its stored ones wait here, to go
        out at ``stored_message_rate`` (:meth:`release_stored`)."""
        resend = [replace(m, dup=True, packet_id=None) for m in (old._inflight or {}).values()]
        messages = [*resend, *(old._stored or ()), *(old._held or ())]
        old.forget_messages()
        if self.broker.settings.stored_message_rate is None:
            for message in messages:
                self._hold(message)
            return
        stored: deque[Publish] = deque()
        bound = self.broker.settings.outbound_queue_bytes
        for message in messages:
            size = len(message.payload) + len(message.topic)
            if self._held_bytes + size > bound:
                self.dropped += 1
                self.broker.stats.drops += 1
                continue
            stored.append(message)
            self._held_bytes += size
        self._stored = stored or None

    def release_stored(self) -> None:
        """Send the next stored message of a resumed persistent session, and
        the one after it 1/``stored_message_rate`` s later.

        AWS IoT developer guide, "Using MQTT persistent sessions": "When the
        client reconnects to its persistent session, all subscriptions are
        reinstated and all stored messages are sent to the client at a
        maximum rate of 10 messages per second", "along with any current
        message traffic": live messages do not wait behind them. Each still
        passes the in-flight window and the outbound limits
        (:meth:`deliver_publish`).
        """
        self._stored_timer = None
        stored = self._stored
        rate = self.broker.settings.stored_message_rate
        if not stored or self.closed or rate is None:
            return
        message = stored.popleft()
        self._held_bytes -= len(message.payload) + len(message.topic)
        if not stored:
            self._stored = None
        self.deliver_publish(message, releasing=True)
        if self._stored:
            loop = asyncio.get_running_loop()
            self._stored_timer = loop.call_later(1.0 / rate, self.release_stored)

    def forget_messages(self) -> None:
        self._inflight = None
        self._held = None
        self._stored = None
        self._held_bytes = 0
        if self._stored_timer is not None:
            self._stored_timer.cancel()
            self._stored_timer = None

    def _outbound_limiter(self) -> OutboundLimiter | None:
        settings = self.broker.settings
        if settings.publish_rate_limit is None and settings.throughput_limit is None:
            return None
        if self._outbound is None:
            self._outbound = OutboundLimiter(settings.publish_rate_limit, settings.throughput_limit)
        return self._outbound

    def deliver(self, frame: bytes) -> bool:
        """Queue a PUBLISH; False when over the outbound message rate (counted
        in ``Stats.throttled_outbound``, see :mod:`iotnotify_emulator.ratelimit`)
        or when it would take the queue over ``outbound_queue_bytes``
        (``Stats.drops``). Over the throughput quota it is delayed, not lost
        (:meth:`_pace`), and True is returned."""
        if self.closed:
            return False
        limiter = self._outbound_limiter()
        if limiter is not None:
            wait = limiter.admit(len(frame))
            if wait:
                return self._pace(limiter, frame, wait)
        return self._enqueue_publish(frame)

    def _pace(self, limiter: OutboundLimiter, frame: bytes, wait: float) -> bool:
        """A QoS 0 delivery over an outbound limit: discarded over 100
        publishes/s (``wait`` < 0), else sent in ``wait`` seconds.

        AWS general reference, "AWS IoT Core endpoints and quotas", message
        broker: publish requests over "Publish requests per second per
        connection" "are discarded", while data over "Throughput per second
        per connection" (512 KiB) "is delayed in processing". The delayed
        frames keep their order (the limiter delays every later frame behind
        them) and are bounded by ``outbound_queue_bytes`` like the send queue.
        """
        stats = self.broker.stats
        if wait < 0:
            stats.throttled_outbound += 1
            return False
        paced = self._paced
        if paced is None:
            paced = self._paced = deque()
        size = len(frame)
        bound = self.broker.settings.outbound_queue_bytes
        if self._paced_bytes + self._queued_bytes + size > bound:
            limiter.refund(size)
            if not paced:
                limiter.unpace()
            self.dropped += 1
            stats.drops += 1
            return False
        paced.append((time.monotonic() + wait, frame))
        self._paced_bytes += size
        stats.delayed_outbound += 1
        if self._pace_timer is None:
            self._pace_timer = asyncio.get_running_loop().call_later(wait, self._release_paced)
        return True

    def _release_paced(self) -> None:
        """Send the delayed QoS 0 frames whose time has come; wait for the rest."""
        self._pace_timer = None
        paced = self._paced
        if not paced or self.closed:
            return
        now = time.monotonic() + 0.001  # a timer may fire a little early
        while paced and paced[0][0] <= now:
            frame = paced.popleft()[1]
            self._paced_bytes -= len(frame)
            self._enqueue_publish(frame)
        if paced:
            delay = max(paced[0][0] - now, 0.0)
            self._pace_timer = asyncio.get_running_loop().call_later(delay, self._release_paced)
        else:
            self._paced = None
            if self._outbound is not None:
                self._outbound.unpace()

    def _enqueue_publish(self, frame: bytes) -> bool:
        v5 = self.v5
        if v5 is not None and v5.max_packet_size is not None and len(frame) > v5.max_packet_size:
            # MQTT 5 section 3.1.2.11.4: a packet over the client's Maximum
            # Packet Size is discarded as if delivered.
            self.broker.stats.drops += 1
            return False
        if self._queued_bytes + len(frame) > self.broker.settings.outbound_queue_bytes:
            self.dropped += 1
            self.broker.stats.drops += 1
            return False
        self.broker.stats.deliveries += 1
        self._send(frame)
        return True

    def _send(self, frame: bytes) -> None:
        """Queue a frame regardless of the delivery limit (acks must not be dropped)."""
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
            if self._writer is None:
                # Written at the end of this loop iteration, with whatever else
                # this connection gets meanwhile (Broker.write_soon).
                self.broker.write_soon(self)
        if self._queued_bytes + len(frame) > 2 * self.broker.settings.outbound_queue_bytes:
            # Only acks can get here past the delivery limit: a peer that keeps
            # sending PINGREQ/SUBSCRIBE without reading would grow memory forever.
            self._close_soon(DisconnectReason.CLIENT_ERROR)
            return
        queue.append(frame)
        self._queued_bytes += len(frame)

    def flush(self) -> None:
        """Write what was queued since the last flush: at once, as one WebSocket
        frame, when the socket takes it without waiting; else through the
        writer task, which waits for a slow reader (and its queue bound drops
        deliveries meanwhile). Called by :meth:`Broker.write_soon`'s callback."""
        queue = self._queue
        if not queue or self._writer is not None:
            return
        data = queue[0] if len(queue) == 1 else b"".join(queue)
        try:
            written = len(data) <= _WRITE_BATCH_BYTES and self.transport.write_now(data)
        except Exception:  # any transport failure means the peer is gone
            written = False
        if written:
            queue.clear()
            self._queued_bytes -= len(data)
            self._queue = None
            return
        self._writer = asyncio.ensure_future(self._write())

    async def _write(self) -> None:
        queue = self._queue
        assert queue is not None  # _send creates it before starting the writer
        try:
            while queue:
                batch = [queue.popleft()]
                size = len(batch[0])
                while queue and size + len(queue[0]) <= _WRITE_BATCH_BYTES:
                    frame = queue.popleft()
                    batch.append(frame)
                    size += len(frame)
                # Counted as queued until written: a batch stuck in send() is
                # memory held for a peer that does not read.
                await self.transport.send(b"".join(batch))
                self._queued_bytes -= size
        except Exception:  # any transport failure means the peer is gone
            queue.clear()
            self._queued_bytes = 0
            self._close_soon(DisconnectReason.CONNECTION_LOST)
        finally:
            self._writer = None
            if not queue and self._queue is queue:
                self._queue = None

    def _take_publish_token(self) -> bool:
        """Token bucket of ``publish_rate_limit`` per second, burst of one second."""
        rate = self.broker.settings.publish_rate_limit
        if rate is None:
            return True
        now = time.monotonic()
        self._tokens = min(rate, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    # --- protocol version ------------------------------------------------------

    def encode(self, packet: Packet) -> bytes:
        """Wire bytes of ``packet`` in this connection's protocol version."""
        return mqtt5.encode(packet) if self.v5 is not None else encode(packet)

    def _failure(self, reason: ReasonCode) -> int:
        """A SUBACK failure: 0x80 on 3.1.1, the specific reason code on MQTT 5."""
        return SUBACK_FAILURE if self.v5 is None else int(reason)

    def subscribed_with(self, topic: str, option: int, *, every: bool = False) -> bool:
        """Whether a matching MQTT 5 subscription of this connection has ``option``
        (with ``every``: whether all matching ones do)."""
        v5 = self.v5
        if v5 is None:
            return False
        matching = [bits for name, bits in v5.options.items() if _plain_filter(name).matches(topic)]
        if not matching:
            return False
        test = all if every else any
        return test(bits & option for bits in matching)

    def _v5_ack(self, packet: Publish, reason: ReasonCode, text: str) -> None:
        """An MQTT 5 PUBACK with a failure reason (QoS 1 only; QoS 0 has no ack)."""
        assert self.v5 is not None
        if packet.qos == 1 and packet.packet_id is not None:
            ack = Puback(packet.packet_id, reason, self.v5.reason(text))
            self._send(self._v5_fitted(ack, Puback(packet.packet_id, reason)))

    def _v5_fitted(
        self, packet: Puback | Connack | Disconnect, bare: Puback | Connack | Disconnect
    ) -> bytes:
        """``packet`` encoded, or ``bare`` (the same without its Reason String)
        when ``packet`` would exceed the client's Maximum Packet Size: "The
        Server MUST NOT send a Reason String or User Property if their addition
        would exceed it" (MQTT 5 section 3.1.2.11.4, [MQTT-3.1.2-24] and
        [MQTT-3.1.2-25]). AWS IoT Core honours the client's Maximum Packet Size
        (developer guide, "MQTT 5 properties": CONNECT carries it)."""
        assert self.v5 is not None
        frame = mqtt5.encode(packet)
        limit = self.v5.max_packet_size
        if limit is not None and len(frame) > limit:
            return mqtt5.encode(bare)
        return frame

    # --- authorisation helpers -------------------------------------------------

    def may_receive(self, topic: str) -> bool:
        cached = self._receive_cache.get(topic)
        if cached is None:
            cached = self.broker.authorize(
                self.credential,
                "iot:Receive",
                "topic",
                topic,
                client_id=self.client_id,
                source_ip=self.remote,
            ).allowed
            cache = self._receive_cache
            if cache is _NO_DECISIONS:
                cache = self._receive_cache = {}
            elif len(cache) >= _RECEIVE_CACHE_SIZE:
                cache.clear()
            cache[topic] = cached
        elif not cached:
            self.broker.refuse(
                "iot:Receive denied (cached decision)",
                action="iot:Receive",
                resource=self.broker.arn("topic", topic),
                principal=self.credential.principal_id,
                client_id=self.client_id,
            )
        return cached

    # --- inbound ---------------------------------------------------------------

    async def handle(self, packet: Packet) -> None:
        """Act on one packet from the client."""
        if self.closed:
            return
        self._last_activity = time.monotonic()
        if not self.connected:
            if isinstance(packet, Connect):
                await self._on_connect(packet)
            else:
                self.protocol_error(f"{type(packet).__name__} before CONNECT")
            return
        match packet:
            case Publish():
                await self._on_publish(packet)
            case Subscribe():
                self._on_subscribe(packet)
            case Unsubscribe():
                self._on_unsubscribe(packet)
            case Pingreq():
                self._send(self.encode(Pingresp()))
            case Puback():
                self._acknowledged(packet.packet_id)
            case Disconnect():
                if self.v5 is not None:
                    if not self.v5.disconnect_allowed(packet):
                        self.protocol_error("DISCONNECT sets a Session Expiry Interval after 0")
                        return
                    limit = self.broker.settings.persistent_session_expiry
                    self.session_expiry = float(min(self.v5.session_expiry, limit))
                # 3.1.1 section 3.14.4: a clean DISCONNECT discards the will; MQTT 5
                # keeps it for reason 0x04 "Disconnect with Will Message" (3.14.2.1).
                if packet.reason_code != ReasonCode.DISCONNECT_WITH_WILL or self.v5 is None:
                    self.will = None
                await self.close(DisconnectReason.CLIENT_INITIATED_DISCONNECT)
            case Auth():
                # AWS IoT Core has no MQTT 5 enhanced authentication (SigV4 is
                # the authentication), and AUTH without an Authentication Method
                # in CONNECT is a Protocol Error (section 4.12).
                self.protocol_error("AUTH without enhanced authentication")
            case Connect():
                self.protocol_error("second CONNECT on one connection")
            case _:
                # PUBREC/PUBREL/PUBCOMP (QoS 2 flow) and server-to-client packets.
                self.broker.stats.qos2_ignored += 1
                log.debug("ignored %r from %s", packet, self.client_id)

    def protocol_error(self, reason: str, code: int = ReasonCode.PROTOCOL_ERROR) -> None:
        """Close for a protocol error; an MQTT 5 client first gets DISCONNECT ``code``."""
        self.broker.stats.protocol_errors += 1
        self.broker.refuse(reason, client_id=self.client_id or None, remote=self.remote)
        self._v5_disconnect = code
        self._close_soon(DisconnectReason.CLIENT_ERROR)

    async def _refuse_connect(
        self, code: ConnackCode, reason: str, *, v5_code: ReasonCode | None = None
    ) -> None:
        """CONNACK refusal, then close: ``code`` on 3.1.1; on MQTT 5 ``v5_code``
        (default: the reason code matching ``code``) with a Reason String.

        An MQTT 3.1.1 CONNECT refused as not authorised (IAM: ``iot:Connect``,
        its connect attributes, the will's ``iot:Publish``) gets no CONNACK 5:
        AWS IoT Core closes the connection (developer guide, "AWS IoT
        differences from MQTT version 3.1.1": "AWS IoT returns the error code
        7 instead of the CONNACK error code 5 when a connection is refused
        because the client isn't authorized to connect", 7 being paho's
        MQTT_ERR_CONN_LOST; aws-iot-device-sdk-js-v2 issue 101: a missing
        iot:Connect surfaces as AWS_ERROR_MQTT_UNEXPECTED_HANGUP). MQTT 5 gets
        CONNACK 0x87 (developer guide, "MQTT reason codes").
        """
        self.broker.stats.connects_refused += 1
        self.broker.refuse(reason, client_id=packet_id_safe(self.client_id), remote=self.remote)
        if self.v5 is None:
            if code != ConnackCode.NOT_AUTHORIZED:
                self._send(encode(Connack(return_code=code)))
        else:
            v5_code = v5_code or _CONNACK_V5[code]
            refusal = Connack(v5_code, properties=self.v5.reason(reason))
            self._send(self._v5_fitted(refusal, Connack(v5_code)))
        await self.close(None)

    async def _on_connect(self, packet: Connect) -> None:
        broker = self.broker
        self.client_id = packet.client_id
        level = packet.protocol_level
        if level >= 5:
            # Answered in the v5 form even when refused (MQTT 5 section 3.1.2.2).
            self.v5 = State5.from_connect(packet)
        if packet.protocol_name != "MQTT" or level not in (
            (4, 5) if broker.settings.mqtt5 else (4,)
        ):
            await self._refuse_connect(
                ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION,
                f"protocol {packet.protocol_name!r} level {level} (this endpoint speaks "
                f"{'MQTT 3.1.1 and 5' if broker.settings.mqtt5 else 'MQTT 3.1.1 only'})",
            )
            return
        assigned: str | None = None
        if self.v5 is not None:
            if packet.properties is not None and packet.properties.authentication_method:
                await self._refuse_connect(
                    ConnackCode.BAD_USERNAME_OR_PASSWORD,
                    "MQTT 5 enhanced authentication is not supported (SigV4 only)",
                    v5_code=ReasonCode.BAD_AUTHENTICATION_METHOD,
                )
                return
            if not packet.client_id:
                # MQTT 5 section 3.1.3.1: the server may assign an id and
                # returns it in CONNACK (awsiot mqtt5_client_builder: "AWS IoT
                # server will assign a unique ID"); IAM still decides below.
                assigned = self.client_id = f"{uuid.uuid4()}"
                packet = replace(packet, client_id=assigned)
        size = len(packet.client_id.encode("utf-8"))
        if not packet.client_id or size > MAX_CLIENT_ID_BYTES or packet.client_id[0] == "$":
            await self._refuse_connect(
                ConnackCode.IDENTIFIER_REJECTED,
                f"client id of {size} bytes (1..{MAX_CLIENT_ID_BYTES}, no leading '$')",
            )
            return
        # The username (``?SDK=...&Version=...`` from AWS SDKs) is metrics for
        # AWS and carries no identity with SigV4: accepted and ignored.
        decision = broker.authorize(
            self.credential,
            "iot:Connect",
            "client",
            packet.client_id,
            client_id=packet.client_id,
            source_ip=self.remote,
            connect_attributes=self._connect_attributes(packet),
        )
        if not decision.allowed:
            self._announce_connect_failed()
            await self._refuse_connect(ConnackCode.NOT_AUTHORIZED, decision.reason)
            return
        if packet.will is not None and not await self._will_allowed(packet):
            return
        if not broker.connect_allowed(packet.client_id):
            await self._connect_throttled()
            return
        self.keepalive = effective_keepalive(packet.keepalive, broker.settings)
        self.session_expiry = self._persistence(packet)
        self.connected = True
        await broker.register(self)
        if self.closed:
            return  # a newer CONNECT with this client id took over meanwhile
        present = broker.resume_session(self, clean=packet.clean_session)
        # A will still waiting out its MQTT 5 delay: a resumed session (Clean
        # Start 0) cancels it, a new session ends the old one, which sends it.
        if packet.clean_session:
            broker.fire_will(self.client_id)
        else:
            broker.drop_will(self.client_id)
        if self.v5 is None:
            self._send(encode(Connack(session_present=present)))
        else:
            properties = connack_properties(
                packet, keepalive=self.keepalive, assigned_client_id=assigned
            )
            self._send(mqtt5.encode(Connack(session_present=present, properties=properties)))
        self.release_held()  # a resumed session's stored messages follow CONNACK
        self.release_stored()  # ... 10 per second (BrokerSettings.stored_message_rate)
        self._start_keepalive()
        broker.publish_event(
            _CONNECTED_TOPIC.format(self.client_id),
            {
                "clientId": self.client_id,
                "timestamp": int(time.time() * 1000),
                "eventType": "connected",
                "sessionIdentifier": self.session_identifier,
                "principalIdentifier": self.credential.principal_id,
                "ipAddress": self.remote,
                "versionNumber": self.version,
            },
        )

    def _announce_connect_failed(self) -> None:
        """``$aws/events/presence/connect_failed/{clientId}`` for a CONNECT IAM refused.

        AWS IoT developer guide, "Lifecycle events" -> "Connect attempt failure
        event" (life-cycle-events.html#connect-authfailure-event): published
        "when a client is not authorized to connect or when a last will and
        testament is configured and the client is not authorized to publish to
        that last will topic", with clientId, timestamp, eventType
        (``connect_failed``), connectFailureReason (the only documented value:
        ``AUTHORIZATION_FAILED``), principalIdentifier, sessionIdentifier and
        ipAddress (thingName only for the exclusive-thing feature, which the
        emulator has not). Other refused CONNECTs (bad client id, protocol
        level, the 1/s throttle) have no documented event and get none. It goes
        out through :meth:`Broker.publish_event` like the other lifecycle
        events: iot:Receive is checked per subscriber, rules see it, and a
        client id that is no valid topic level has none.
        """
        self.broker.publish_event(
            _CONNECT_FAILED_TOPIC.format(self.client_id),
            {
                "clientId": self.client_id,
                "timestamp": int(time.time() * 1000),
                "eventType": "connect_failed",
                "connectFailureReason": "AUTHORIZATION_FAILED",
                "principalIdentifier": self.credential.principal_id,
                "sessionIdentifier": self.session_identifier,
                "ipAddress": self.remote,
            },
        )

    async def _connect_throttled(self) -> None:
        """Over one CONNECT per second for this client id: refused, the socket closed.

        AWS throttles such CONNECTs (quota "connect requests per second per
        client ID"); the connection that holds the client id is left alone.
        """
        self.broker.stats.connects_throttled += 1
        self.broker.refuse(
            "more than "
            f"{self.broker.settings.connect_rate_per_client_id} CONNECT/s for this client id "
            "(throttled)",
            client_id=self.client_id,
            remote=self.remote,
        )
        await self.close(None)

    def _connect_attributes(self, packet: Connect) -> tuple[str, ...]:
        """``iot:ConnectAttributes`` of this CONNECT (AWS IoT developer guide,
        "Using connectAttributes"): PersistentConnect, LastWill."""
        attributes = ("PersistentConnect",) if self._persistence(packet) else ()
        return attributes + (("LastWill",) if packet.will is not None else ())

    def _persistence(self, packet: Connect) -> float:
        """Seconds this session outlives the connection: 0 for a clean session.

        MQTT 3.1.1: ``cleanSession=0`` keeps it for the account's expiry
        (``persistent_session_expiry``, AWS default 1 h). MQTT 5: the Session
        Expiry Interval, capped at the same value.
        """
        limit = self.broker.settings.persistent_session_expiry
        if self.v5 is not None:
            return float(min(self.v5.session_expiry, limit))
        return 0.0 if packet.clean_session else limit

    async def _will_allowed(self, packet: Connect) -> bool:
        will = packet.will
        assert will is not None
        if self.v5 is not None and will.qos > 1:
            # The CONNACK says Maximum QoS 1 (AWS IoT Core supports QoS 0 and
            # 1 only: developer guide, "MQTT 5 properties"), and a server
            # "MUST reject the connection" whose Will QoS exceeds what it
            # supports, with 0x9B QoS not supported (MQTT 5 section 3.2.2.3.4,
            # [MQTT-3.2.2-12]). MQTT 3.1.1 has no such rule: its will is sent
            # at QoS 1 below.
            await self._refuse_connect(
                ConnackCode.NOT_AUTHORIZED,
                f"will QoS {will.qos} (this server's Maximum QoS is 1)",
                v5_code=ReasonCode.QOS_NOT_SUPPORTED,
            )
            return False
        try:
            topic = Topic(will.topic)
        except InvalidTopic as exc:
            await self._refuse_connect(
                ConnackCode.NOT_AUTHORIZED,
                f"invalid will topic: {exc}",
                v5_code=ReasonCode.TOPIC_NAME_INVALID,
            )
            return False
        actions = ["iot:Publish"] + (["iot:RetainPublish"] if will.retain else [])
        for action in actions:
            decision = self.broker.authorize(
                self.credential,
                action,
                "topic",
                str(topic),
                client_id=packet.client_id,
                source_ip=self.remote,
            )
            if not decision.allowed:
                self._announce_connect_failed()
                await self._refuse_connect(ConnackCode.NOT_AUTHORIZED, decision.reason)
                return False
        # Will Delay Interval is a will property, not a PUBLISH one.
        properties = replace(will.properties, will_delay_interval=None) if will.properties else None
        self._will_delay = (will.properties.will_delay_interval or 0) if will.properties else 0
        self.will = Publish(
            topic=will.topic,
            payload=will.payload,
            qos=min(will.qos, 1),
            retain=will.retain,
            properties=properties,
        )
        return True

    def _on_subscribe(self, packet: Subscribe) -> None:
        broker = self.broker
        v5 = self.v5
        if v5 is not None and packet.properties and packet.properties.subscription_identifiers:
            # CONNACK said Subscription Identifier Available = 0 (section
            # 3.8.2.1.2). AWS IoT Core's DISCONNECT 161 carries this Reason
            # String (node-red/node-red issues 4115 and 4133 log it).
            self._v5_disconnect_text = "Subscription Id is not supported now"
            self.protocol_error(
                "Subscription Identifiers are not supported by AWS IoT Core",
                ReasonCode.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
            )
            return
        if self._subscribe_over_limits(packet):
            return
        if v5 is None and any(qos == 2 for _, qos in packet.topics):
            # AWS IoT developer guide, MQTT, "AWS IoT differences from MQTT
            # specifications": "AWS IoT Core does not support publishing or
            # subscribing with QoS level 2. When QoS level 2 is requested, the
            # AWS IoT message broker does not send a PUBACK or SUBACK." So the
            # whole SUBSCRIBE is ignored: no SUBACK, no subscription.
            broker.stats.qos2_ignored += 1
            broker.refuse(
                "SUBSCRIBE requesting QoS 2 is not acknowledged by AWS IoT Core",
                client_id=self.client_id,
                filters=[name for name, _ in packet.topics],
            )
            return
        codes: list[int] = []
        granted: list[TopicFilter] = []
        for index, (name, qos) in enumerate(packet.topics):
            try:
                topic_filter = TopicFilter(name)
                shared = split_shared(name)  # a "$share/..." filter must be well formed
            except InvalidTopic as exc:
                broker.refuse(str(exc), client_id=self.client_id, filter=name)
                codes.append(self._failure(ReasonCode.TOPIC_FILTER_INVALID))
                continue
            if unsupported_reserved_filter(shared[1] if shared is not None else name):
                broker.refuse(
                    "SUBSCRIBE to a reserved $ topic AWS IoT Core does not offer",
                    client_id=self.client_id,
                    filter=name,
                )
                if v5 is None:
                    # 3.1.1 has no per-filter reason: the connection ends.
                    self._close_soon(DisconnectReason.CLIENT_ERROR)
                    return
                codes.append(self._failure(ReasonCode.TOPIC_FILTER_INVALID))
                continue
            decision = broker.authorize(
                self.credential,
                "iot:Subscribe",
                "topicfilter",
                name,
                client_id=self.client_id,
                source_ip=self.remote,
            )
            if not decision.allowed:
                if v5 is None:
                    self._subscribe_denied()
                    return
                # MQTT 5: reason 0x87 and the connection stays (AWS IoT
                # developer guide, "MQTT reason codes").
                codes.append(self._failure(ReasonCode.NOT_AUTHORIZED))
                continue
            is_new = name not in self.subscriptions
            send_retained = True
            if v5 is not None:
                # Maximum QoS 1 in CONNACK: a QoS 2 request is granted QoS 1
                # (MQTT 5 section 3.2.2.3.4).
                qos = min(qos, 1)
                options = packet.options[index] if packet.options else 0
                if options & NO_LOCAL and split_shared(name) is not None:
                    # MQTT 5 section 3.8.3.1: "It is a Protocol Error to set
                    # the No Local bit to 1 on a Shared Subscription".
                    self.protocol_error(f"No Local on shared subscription {name!r}")
                    return
                v5.options[name] = options
                handling = retain_handling(options)
                send_retained = handling == 0 or (handling == 1 and is_new)
            self.subscriptions[name] = qos
            broker.add_subscription(name, self, qos)
            codes.append(qos)
            if send_retained:
                granted.append(topic_filter)
        self._send(self.encode(Suback(packet.packet_id, tuple(codes))))
        self._send_retained(granted)
        names = [name for (name, _), code in zip(packet.topics, codes, strict=True) if code < 0x80]
        self._announce_subscriptions("subscribed", names)

    def _on_unsubscribe(self, packet: Unsubscribe) -> None:
        """UNSUBACK, after removing the subscriptions the filters name.

        A filter that is no valid topic filter (MQTT 3.1.1 / 5 section 4.7:
        empty [MQTT-4.7.3-1], ``#`` not alone in the last level, ``+`` not a
        whole level; or over AWS IoT's topic limits) is checked as SUBSCRIBE
        checks it (:class:`TopicFilter`, a well-formed ``$share/``):

        * MQTT 5: reason 0x8F Topic Filter invalid for that filter, the other
          filters are handled and the connection stays. Section 3.11.3: "The
          Server sending an UNSUBACK packet MUST use one of the UNSUBACK Reason
          Code values for each Topic Filter received [MQTT-3.11.3-2]"; 0x11 No
          subscription existed would say the filter was valid and merely
          unused. Section 4.13.1 ends the connection for an error "and a Reason
          Code is given in the specification" [MQTT-4.13.1-1], and section 4.7
          gives none for a bad filter, so it is not a Malformed Packet; and
          SUBSCRIBE answers the same filter with SUBACK 0x8F.
        * MQTT 3.1.1: UNSUBACK has no return codes (section 3.11.3: "The
          UNSUBACK Packet has no payload"), so nothing can refuse one filter:
          "Unless stated otherwise, if either the Server or Client encounters a
          protocol violation, it MUST close the Network Connection"
          [MQTT-4.8.0-1]. No UNSUBACK, nothing is unsubscribed.
        """
        invalid: dict[str, str] = {}
        for name in packet.topics:
            try:
                TopicFilter(name)
                split_shared(name)
            except InvalidTopic as exc:
                invalid[name] = str(exc)
        if invalid:
            # One refusal record per packet, however many filters it carries.
            first = next(iter(invalid.values()))
            reason = f"UNSUBSCRIBE of {len(invalid)} invalid topic filter(s): {first}"
            if self.v5 is None:
                self.protocol_error(reason)
                return
            self.broker.refuse(reason, client_id=self.client_id, filters=list(invalid)[:8])
        reasons: list[int] = []
        for topic_filter in packet.topics:
            if topic_filter in invalid:
                reasons.append(ReasonCode.TOPIC_FILTER_INVALID)
                continue
            if self.v5 is not None:
                self.v5.options.pop(topic_filter, None)
            if self.subscriptions.pop(topic_filter, None) is not None:
                self.broker.remove_subscription(topic_filter, self)
                reasons.append(ReasonCode.SUCCESS)
            else:
                reasons.append(ReasonCode.NO_SUBSCRIPTION_EXISTED)
        # MQTT 5 UNSUBACK has a reason code per filter (section 3.11.3).
        codes = tuple(reasons) if self.v5 is not None else ()
        self._send(self.encode(Unsuback(packet.packet_id, codes)))
        valid = [name for name in packet.topics if name not in invalid]
        self._announce_subscriptions("unsubscribed", valid)

    def _announce_subscriptions(self, event_type: str, topics: list[str]) -> None:
        """``$aws/events/subscriptions/{subscribed|unsubscribed}/{clientId}``.

        Payload fields from the AWS IoT developer guide, "Lifecycle events"
        -> "Subscribe/Unsubscribe events": clientId, timestamp (ms),
        eventType, sessionIdentifier, principalIdentifier, topics.
        """
        if not topics:
            return
        self.broker.publish_event(
            _SUBSCRIPTION_TOPIC.format(event_type, self.client_id),
            {
                "clientId": self.client_id,
                "timestamp": int(time.time() * 1000),
                "eventType": event_type,
                "sessionIdentifier": self.session_identifier,
                "principalIdentifier": self.credential.principal_id,
                "topics": topics,
            },
        )

    def _subscribe_over_limits(self, packet: Subscribe) -> bool:
        """Refuse, as a whole and with one refusal record, a SUBSCRIBE over AWS's limits.

        Limits (AWS general reference, "AWS IoT Core endpoints and quotas",
        message broker): 8 topic filters per SUBSCRIBE, 50 subscriptions per
        connection. Nothing of an over-limit SUBSCRIBE is evaluated, so a
        128 KB SUBSCRIBE of 32,000 filters costs one check, not 32,000 IAM
        evaluations and log lines.

        * More than 8 filters: AWS closes the connection (the client sees a
          hang-up and, in lifecycle events, ``CLIENT_ERROR``; reported in
          dotnet/MQTTnet issue 1427 and aws-iot-device-sdk-js-v2 issue 567,
          and why aws-iot-device-sdk-js splits its resubscribe, issue 147).
        * Filters that would take the connection past 50 subscriptions: a
          SUBACK failure (0x80) for every filter of the packet and no new
          subscription (aws-greengrass-lite issue 1176).

        Returns True when the packet was refused.
        """
        settings = self.broker.settings
        count = len(packet.topics)
        if count > settings.max_filters_per_subscribe:
            self.broker.stats.protocol_errors += 1
            self.broker.refuse(
                f"SUBSCRIBE with {count} filters (at most "
                f"{settings.max_filters_per_subscribe}); connection closed",
                client_id=self.client_id,
                filters=count,
            )
            self._v5_disconnect = ReasonCode.QUOTA_EXCEEDED
            self._close_soon(DisconnectReason.CLIENT_ERROR)
            return True
        new = {name for name, _ in packet.topics if name not in self.subscriptions}
        if len(self.subscriptions) + len(new) > settings.max_subscriptions:
            self.broker.refuse(
                f"SUBSCRIBE would exceed {settings.max_subscriptions} subscriptions "
                f"on one connection ({len(self.subscriptions)} + {len(new)})",
                client_id=self.client_id,
                filters=count,
            )
            failure = self._failure(ReasonCode.QUOTA_EXCEEDED)
            self._send(self.encode(Suback(packet.packet_id, (failure,) * count)))
            return True
        return False

    def _subscribe_denied(self) -> None:
        """MQTT 3.1.1: an unauthorised filter closes the connection, SUBACK unsent.

        AWS IoT Core drops the connection (aws-iot-device-sdk-js issues 125
        and 191: "the server will close the connection if client does not have
        authorized action"; AWS's MQTT 5 migration notes contrast this with
        the v5 SUBACK reason "Not authorized", where the connection stays).
        Filters of the same SUBSCRIBE granted before the denied one are
        dropped with the connection.
        """
        self._close_soon(DisconnectReason.AUTH_ERROR)

    def _send_retained(self, filters: list[TopicFilter]) -> None:
        """Retained messages for the filters just granted: exact topics only.

        AWS IoT developer guide, "MQTT" -> "AWS IoT differences from MQTT
        version 3.1.1": "Subscription to topic filters that contain a
        wildcard character can't receive retained messages. To receive a
        retained message, the subscribe request must contain a topic filter
        that matches the retained message topic exactly."

        At QoS 1 it is a QoS 1 delivery like any other (:meth:`deliver_publish`):
        counted against the in-flight window (AWS's 100, the client's MQTT 5
        Receive Maximum, section 3.1.2.11.3) and, unacknowledged, sent again
        when a persistent session resumes ("Persistent sessions store a
        client's subscriptions and messages, with a quality of service (QoS)
        of 1, that have not been acknowledged by the client", developer guide,
        "Using MQTT persistent sessions"). It used to go out untracked.
        """
        broker = self.broker
        for topic_filter in filters:
            if topic_filter.has_wildcards:
                continue
            message = broker.retained_message(topic_filter.value)
            if message is None or not self.may_receive(message.topic):
                continue
            properties = message.properties
            delivery = Publish(
                topic=message.topic,
                payload=message.payload,
                qos=min(message.qos, self.subscriptions[topic_filter.value]),
                retain=True,
                properties=properties,
                # Its expiry keeps counting down should it wait (QoS 1).
                received_at=time.monotonic()
                if properties is not None and properties.message_expiry_interval is not None
                else None,
            )
            if delivery.qos:
                self.deliver_publish(delivery)
            else:
                self.deliver(self.encode(delivery))

    async def _on_publish(self, packet: Publish) -> None:
        broker = self.broker
        broker.stats.publishes_mqtt += 1
        if packet.qos == 2 and self.v5 is not None:
            # CONNACK said Maximum QoS 1 (MQTT 5 section 3.2.2.3.4).
            self.protocol_error("PUBLISH with QoS 2", ReasonCode.QOS_NOT_SUPPORTED)
            return
        if packet.qos == 2:
            # Same documented behaviour as for SUBSCRIBE: no PUBACK/PUBREC for
            # QoS 2; the message is not accepted.
            broker.stats.qos2_ignored += 1
            broker.refuse("PUBLISH with QoS 2 is not supported", client_id=self.client_id)
            return
        if self.v5 is not None:
            resolved = self._resolve_v5_publish(packet)
            if resolved is None:
                return
            packet = resolved
        if not self._take_publish_token():
            # Over the per-connection quota AWS throttles: the message is
            # dropped (no PUBACK for QoS 1) and the connection stays open.
            broker.stats.throttled += 1
            broker.refuse(
                f"more than {broker.settings.publish_rate_limit} publishes/s (throttled)",
                client_id=self.client_id,
            )
            if self.v5 is not None:
                self._v5_ack(packet, ReasonCode.QUOTA_EXCEEDED, "publish rate limit")
            return
        ingest = basic_ingest(packet.topic)
        if ingest is not None:
            self._basic_ingest(packet, *ingest)
            return
        try:
            topic = Topic(packet.topic)
        except InvalidTopic as exc:
            self.protocol_error(str(exc), ReasonCode.TOPIC_NAME_INVALID)
            return
        if topic.is_reserved:
            broker.refuse(
                "publishing to a reserved $ topic",
                action="iot:Publish",
                resource=broker.arn("topic", packet.topic),
                client_id=self.client_id,
            )
            if self.v5 is not None:
                self._v5_ack(packet, ReasonCode.NOT_AUTHORIZED, "reserved topic")
                return
            self._close_soon(DisconnectReason.AUTH_ERROR)
            return
        if len(packet.payload) > MAX_PAYLOAD_BYTES:
            self.protocol_error(
                f"payload of {len(packet.payload)} bytes exceeds {MAX_PAYLOAD_BYTES}",
                ReasonCode.PACKET_TOO_LARGE,
            )
            return
        actions = ["iot:Publish"] + (["iot:RetainPublish"] if packet.retain else [])
        grants = self._publish_grants
        if grants is None:
            grants = self._publish_grants = set()
        for action in actions:
            # Cached like iot:Receive: a connection's policies cannot change.
            if (action, packet.topic) in grants:
                continue
            decision = broker.authorize(
                self.credential,
                action,
                "topic",
                packet.topic,
                client_id=self.client_id,
                source_ip=self.remote,
            )
            if not decision.allowed:
                if self.v5 is not None:
                    # MQTT 5: PUBACK 0x87 Not authorized, the connection stays
                    # (AWS IoT developer guide, "MQTT reason codes").
                    self._v5_ack(packet, ReasonCode.NOT_AUTHORIZED, f"{action} denied")
                    return
                # AWS IoT Core closes the connection on an unauthorised PUBLISH.
                self._close_soon(DisconnectReason.AUTH_ERROR)
                return
            if len(grants) >= _RECEIVE_CACHE_SIZE:
                grants.clear()
            grants.add((action, packet.topic))
        broker.route(
            packet.topic,
            packet.payload,
            packet.qos,
            packet.retain,
            properties=packet.properties,
            origin=self,
        )
        if broker.rules is not None:
            broker.rules(packet.topic, packet.payload, self.client_id, self.credential.principal_id)
        if packet.qos == 1 and packet.packet_id is not None:
            self._send(self.encode(Puback(packet.packet_id)))

    def _basic_ingest(self, packet: Publish, rule: str, topic: str) -> None:
        """A PUBLISH to ``$aws/rules/{rule}/{topic}``: to that rule only, never
        to subscribers (AWS IoT developer guide, "Reducing messaging costs
        with Basic Ingest"). ``iot:Publish`` is evaluated on the full topic
        (policies grant ``topic/$aws/rules/*``); the prefix does not count
        toward the topic limits; a retained Basic Ingest message is refused
        like any retained publish to a reserved topic. QoS 1 gets its PUBACK
        once the message is handed to the rules engine, even for a rule that
        does not exist (AWS logs ``RuleNotFound``)."""
        broker = self.broker
        try:
            if topic:
                Topic(topic)
        except InvalidTopic as exc:
            self.protocol_error(str(exc), ReasonCode.TOPIC_NAME_INVALID)
            return
        denied = packet.retain
        if not denied:
            denied = not broker.authorize(
                self.credential,
                "iot:Publish",
                "topic",
                packet.topic,
                client_id=self.client_id,
                source_ip=self.remote,
            ).allowed
        else:
            broker.refuse(
                "retained publish to a Basic Ingest topic",
                action="iot:Publish",
                resource=broker.arn("topic", packet.topic),
                client_id=self.client_id,
            )
        if denied:
            if self.v5 is not None:
                self._v5_ack(packet, ReasonCode.NOT_AUTHORIZED, "Basic Ingest publish denied")
                return
            self._close_soon(DisconnectReason.AUTH_ERROR)
            return
        found = broker.rules is not None and broker.rules.ingest(
            rule, topic, packet.payload, self.client_id, self.credential.principal_id
        )
        if not found:
            broker.refuse(f"RuleNotFound: no enabled rule {rule!r} (Basic Ingest)", rule=rule)
        if packet.qos == 1 and packet.packet_id is not None:
            self._send(self.encode(Puback(packet.packet_id)))

    def _resolve_v5_publish(self, packet: Publish) -> Publish | None:
        """Apply the Topic Alias and check the properties of an MQTT 5 PUBLISH.

        Returns the packet with its full topic, or None when it was refused:
        by PUBACK (Payload format invalid, Quota exceeded: the connection
        stays) or by DISCONNECT (alias and property errors).
        """
        v5 = self.v5
        assert v5 is not None
        try:
            topic = v5.resolve_topic(packet)
            check_publish(packet, topic)
        except ProtocolViolation as exc:
            if exc.reason_code in (ReasonCode.PAYLOAD_FORMAT_INVALID, ReasonCode.QUOTA_EXCEEDED):
                self.broker.refuse(str(exc), client_id=self.client_id)
                self._v5_ack(packet, ReasonCode(exc.reason_code), str(exc))
            else:
                self.protocol_error(str(exc), exc.reason_code)
            return None
        return packet if topic == packet.topic else replace(packet, topic=topic)

    # --- closing ---------------------------------------------------------------

    async def close(self, reason: str | None) -> None:
        """Close once: flush what is queued, drop the socket, announce the disconnect.

        ``reason`` None means the connection never completed CONNECT, so there
        is no lifecycle event.
        """
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self.broker.deadlines.cancel(self._timer)
            self._timer = None
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None
        if self._pace_timer is not None:
            self._pace_timer.cancel()
            self._pace_timer = None
        if self._stored_timer is not None:
            self._stored_timer.cancel()
            self._stored_timer = None
        self._paced = None
        self._paced_bytes = 0
        broker = self.broker
        was_connected = self.connected
        if was_connected and self.v5 is not None and reason is not None:
            self._send_v5_disconnect(reason)
        if was_connected:
            broker.unregister(self)
            if reason is not None:
                by_reason = broker.stats.disconnects_by_reason
                by_reason[reason] = by_reason.get(reason, 0) + 1
        if reason not in (
            DisconnectReason.CLIENT_INITIATED_DISCONNECT,
            DisconnectReason.CONNECTION_LOST,
        ):
            # Flush CONNACK/SUBACK refusals before dropping the socket; bounded
            # so a stalled peer cannot hold the close.
            if self._writer is None and self._queue:
                self._writer = asyncio.ensure_future(self._write())
            writer = self._writer
            if writer is not None:
                await asyncio.wait((writer,), timeout=1.0)
        if self._writer is not None:
            self._writer.cancel()
        self._queue = None
        self._queued_bytes = 0
        try:
            await self.transport.close()
        except Exception:  # the peer may already be gone
            log.debug("transport close failed for %s", self.client_id, exc_info=True)
        if not was_connected or reason is None:
            return
        if self.will is not None:
            will, self.will = self.will, None
            # MQTT 5: sent after the Will Delay Interval or when the session
            # ends, whichever is first (section 3.1.3.2.2).
            delay = min(self._will_delay, self.v5.session_expiry) if self.v5 else 0
            if delay > 0:
                broker.delay_will(self.client_id, will, delay)
            else:
                broker.route(
                    will.topic, will.payload, will.qos, will.retain, properties=will.properties
                )
        broker.publish_event(
            _DISCONNECTED_TOPIC.format(self.client_id),
            {
                "clientId": self.client_id,
                "timestamp": int(time.time() * 1000),
                "eventType": "disconnected",
                "sessionIdentifier": self.session_identifier,
                "principalIdentifier": self.credential.principal_id,
                "clientInitiatedDisconnect": reason == DisconnectReason.CLIENT_INITIATED_DISCONNECT,
                "disconnectReason": reason,
                "versionNumber": self.version,
            },
        )
        log.info(
            "disconnected %s",
            json.dumps({"client_id": self.client_id, "reason": reason}),
        )

    def _send_v5_disconnect(self, reason: str) -> None:
        """MQTT 5 section 4.13: the server says why it closes (DISCONNECT + reason code)."""
        code = self._v5_disconnect
        if code is None:
            code = disconnect_reason(reason)
        if code is None:
            return  # the client left, or its socket is gone
        # Bypasses the queue bound: the connection is closing anyway.
        bare, text = Disconnect(code), self._v5_disconnect_text
        frame = (
            self._v5_fitted(Disconnect(code, Properties(reason_string=text)), bare)
            if text is not None and self.v5 is not None
            else mqtt5.encode(bare)
        )
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append(frame)
        self._queued_bytes += len(frame)
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write())

    def closed_by_client(self) -> None:
        """The client sent a WebSocket Close frame (no MQTT DISCONNECT before it).

        AWS IoT developer guide, "Lifecycle events": CLIENT_INITIATED_DISCONNECT
        is "either a MQTT DISCONNECT control packet or a Close frame if the
        client is using a WebSocket connection", and for it "the broker will
        send the LWT messages: No". So the will is dropped and the close that
        follows (:meth:`connection_lost`) is announced as client-initiated,
        unless the server had already decided to close for another reason.
        """
        if self.closed or self._close_reason is not None:
            return
        self.will = None
        self._close_reason = DisconnectReason.CLIENT_INITIATED_DISCONNECT

    async def connection_lost(self) -> None:
        """The transport ended (read loop finished).

        If a close was already decided (a protocol error stops the read loop
        right after scheduling it), its reason is the one announced: AWS
        reports a malformed packet as ``CLIENT_ERROR``, not ``CONNECTION_LOST``.
        """
        await self.close(self._close_reason or DisconnectReason.CONNECTION_LOST)


# The MQTT 5 reason code of each refusal CONNACK (MQTT 5 section 3.2.2.2).
_CONNACK_V5: Final = {
    ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION: ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
    ConnackCode.IDENTIFIER_REJECTED: ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
    ConnackCode.SERVER_UNAVAILABLE: ReasonCode.SERVER_UNAVAILABLE,
    ConnackCode.BAD_USERNAME_OR_PASSWORD: ReasonCode.BAD_USERNAME_OR_PASSWORD,
    ConnackCode.NOT_AUTHORIZED: ReasonCode.NOT_AUTHORIZED,
}


def _plain_filter(name: str) -> TopicFilter:
    """The filter that matches topics: ``a/#`` of ``$share/group/a/#``, else ``name``."""
    shared = split_shared(name)
    return TopicFilter(shared[1] if shared is not None else name)


_BASIC_INGEST_PREFIX: Final = "$aws/rules/"


def basic_ingest(topic: str) -> tuple[str, str] | None:
    """``(rule name, topic after the prefix)`` for a Basic Ingest topic
    ``$aws/rules/{rule}[/{topic}]``; None for any other topic."""
    if not topic.startswith(_BASIC_INGEST_PREFIX):
        return None
    rule, _, rest = topic[len(_BASIC_INGEST_PREFIX) :].partition("/")
    return (rule, rest) if rule else None


def unsupported_reserved_filter(topic_filter: str) -> bool:
    """Whether SUBSCRIBE to ``topic_filter`` (of a shared subscription: its
    filter after ``$share/{group}/``) is to a ``$`` topic AWS IoT Core does not offer.

    AWS IoT developer guide, "Reserved topics": topics beginning with ``$`` are
    reserved; clients "can subscribe and publish to these reserved topics as
    they allow; however, you can't create new topics that begin with a dollar
    sign. Unsupported publish or subscribe operations to reserved topics can
    result in a terminated connection" (the older "Topics" page: "Any attempts
    to publish or subscribe to topics beginning with $ result in a terminated
    connection"). Every topic that page lists is under ``$aws/`` (events,
    shadows, jobs, Device Defender, ...), and ``$aws/rules/...`` (Basic Ingest)
    is publish-only. So ``$SYS/#``, ``$foo`` and ``$aws/rules/...`` are
    refused; the rest of ``$aws/`` is left to IAM, as the emulator does not
    list every AWS service's topics.
    """
    if not topic_filter.startswith("$"):
        return False
    return topic_filter.startswith(_BASIC_INGEST_PREFIX) or not topic_filter.startswith("$aws/")


def request_context(
    credential: Credential,
    *,
    client_id: str | None = None,
    source_ip: str | None = None,
    connect_attributes: tuple[str, ...] | None = None,
) -> dict[str, str | tuple[str, ...]]:
    """Condition keys and policy variables of one request, as AWS IoT Core supplies them.

    * ``iot:ClientId`` and ``aws:SourceIp``: AWS IoT developer guide, "Basic
      AWS IoT Core policy variables".
    * ``iot:ConnectAttributes`` (``iot:Connect`` only): ``PersistentConnect``
      for a persistent session, ``LastWill`` for a CONNECT with a will
      (developer guide, "Using connectAttributes" and "Connect policy
      examples").
    * ``aws:userid`` always, ``aws:username`` for an IAM user only (IAM user
      guide, "AWS global condition context keys": role sessions have none,
      so a ``${aws:username}`` pattern matches nothing for them).
    """
    context: dict[str, str | tuple[str, ...]] = {"aws:userid": credential.principal_id}
    if client_id is not None:
        context["iot:ClientId"] = client_id
    if source_ip:
        context["aws:SourceIp"] = source_ip
    if connect_attributes is not None:
        context["iot:ConnectAttributes"] = connect_attributes
    arn = credential.principal_arn or ""
    if ":user/" in arn:
        context["aws:username"] = arn.rsplit("/", 1)[-1]
    return context


def packet_id_safe(client_id: str) -> str | None:
    """Client ids go into logs; an empty one is shown as None."""
    return client_id or None
