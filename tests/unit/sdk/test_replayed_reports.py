"""Public bug reports of realtime clients, replayed against the SDK's parts (no server).

Each test names the report it replays (repository and issue number). The
ones that need the emulator or ``iotnotify local`` are in
``tests/integration/sdk/test_replayed_reports.py``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from iotnotify.api_client import ConnectionToken
from iotnotify.backoff import Backoff
from iotnotify.contract import Notification, new_notification_id
from iotnotify.inbox import Inbox
from iotnotify.subscriber import ConnectionState, Subscriber
from tests.unit.sdk.fakes import OWN_TOPIC, USER, Collector, FakeService


def test_the_catch_up_read_sees_every_notification_already_written_to_the_inbox() -> None:
    """Replays upstash/realtime#23 (a live event published while the history
    was being read is in neither the history nor the live stream), in the
    form it takes on DynamoDB (mediachain/mediachain#193, SKF/go-eventsource#12:
    a read right after a write does not see it).

    The publisher writes the inbox item, then publishes live; a subscriber
    that was not subscribed yet misses the live copy and relies on its
    catch-up, which starts right after its SUBACK. DynamoDB's Query is
    eventually consistent by default and "may not reflect the results of a
    recently completed write" (DynamoDB developer guide, "Read
    consistency"), so a notification stored a moment before that read can be
    absent from it too, and no later catch-up looks back far enough once
    newer ones arrive. The catch-up read must be strongly consistent.
    """
    table = boto3.resource(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",  # never sent: the stubber answers
    ).Table("iotnotify-test-inbox")
    sent: list[dict[str, Any]] = []
    table.meta.client.meta.events.register(
        "before-parameter-build.dynamodb.Query", lambda params, **_: sent.append(dict(params))
    )
    note = Notification.create(title="sent just before the catch-up")
    with Stubber(table.meta.client) as stub:
        stub.add_response(
            "query",
            {
                "Items": [
                    {
                        "userId": {"S": "alice"},
                        "id": {"S": note.id},
                        "envelope": {"S": note.to_json().decode()},
                        "expiresAt": {"N": "9999999999"},
                    }
                ]
            },
        )
        page = Inbox(table).since("alice", None, limit=10)
    assert [n.id for n in page.notifications] == [note.id]
    assert len(sent) == 1
    assert sent[0].get("ConsistentRead") is True


def test_clients_that_connected_together_do_not_plan_to_reconnect_together(
    service: FakeService, make_subscriber: Callable[..., Subscriber]
) -> None:
    """Replays apache/pulsar-client-go#556 (reconnect delays without jitter:
    every client that lost the broker at once comes back at once, every
    time) and coder/coder#24096 (a fleet of WebSockets reconnecting in
    lockstep after a restart), for the reconnect this SDK plans itself.

    Each connection is replaced before AWS IoT's 24 h WebSocket limit. Clients
    that connected together (after an outage of the endpoint, a deploy, a
    fleet of laptops waking at 9:00) replaced theirs together at exactly the
    same age, every day: a wave of GET /token (Lambda, STS AssumeRole) and
    CONNECTs that never spreads out. The age is drawn per connection within
    the last 5 % of ``max_connection_age``.
    """
    # Given six clients that connect at the same moment
    max_age = 600.0
    collectors = [Collector() for _ in range(6)]
    subs = [
        make_subscriber(
            max_connection_age=max_age,
            since=new_notification_id(),
            device_id=f"fleet-{index}",
            on_state=collector.on_state,
        )
        for index, collector in enumerate(collectors)
    ]
    for sub in subs:
        sub.start()
    for collector in collectors:
        collector.wait_for(
            lambda c=collector: any(s.state is ConnectionState.CAUGHT_UP for _, s in c.states)
        )
    # Then each plans its reconnect at its own age, all before the maximum
    ages = [sub.stats.planned_age for sub in subs]
    assert all(max_age * 0.95 <= age <= max_age for age in ages), ages
    assert len(set(ages)) == len(ages), ages


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers: a proxy whose
    backend is gone, a load balancer in front of a hung broker."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._cond:
                self.accepted.append(conn)
                self._cond.notify_all()

    def wait_accepted(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.accepted) >= count, timeout)

    def close(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone does not.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._cond:
            for conn in self.accepted:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
        self._thread.join(5)


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


class TokensFor:
    """A TokenProvider whose presigned URL points at ``port``; keepalive 1200 s."""

    def __init__(self, port: int) -> None:
        self.url = f"ws://127.0.0.1:{port}/mqtt?X-Amz-Signature=x"

    def token(self) -> ConnectionToken:
        return ConnectionToken(
            url=self.url, client_id_prefix=f"{USER}.", topics=(OWN_TOPIC,), keepalive=1200
        )


def test_a_websocket_upgrade_nobody_answers_times_out_and_is_retried(
    silent_server: SilentServer, collector: Collector
) -> None:
    """Replays eclipse-paho/paho.mqtt.python#890 (``connect_timeout`` ignored by
    the WebSocket handshake: paho up to 2.1 waited ``keepalive`` seconds for
    the upgrade's answer, fixed by its pull request 939) and
    Cisien/meshcoretomqtt#42 (a reverse proxy that lost its backend accepts
    the TCP connection but never answers the upgrade; ``connect()`` hangs).

    With IoT's longest keepalive (1200 s) that was a subscriber stuck for 20
    minutes per attempt, deaf to ``stop()``. The upgrade must give up after
    ``connect_timeout`` and the next attempt follow with backoff.
    """
    # Given an endpoint that accepts connections and never answers, and a
    # token asking for a 1200 s keepalive
    sub = Subscriber(
        tokens=TokensFor(silent_server.port),
        catch_up=False,
        on_state=collector.on_state,
        connect_timeout=0.5,
        backoff=Backoff(initial=0.01, cap=0.05),
        device_id="silent",
    ).start()
    try:
        # Then every attempt gives up and the next one follows
        assert silent_server.wait_accepted(3, timeout=60)
        collector.wait_for(
            lambda: (
                sum(1 for _, c in collector.states if c.state is ConnectionState.DISCONNECTED) >= 2
            )
        )
        errors = [c.error for _, c in collector.states if c.error is not None]
        assert all("cannot connect to 127.0.0.1" in str(e) for e in errors), errors
        assert sub.state is not ConnectionState.STOPPED
    finally:
        sub.stop()
    assert sub.wait_stopped(15)


def test_a_token_api_outage_at_the_planned_reconnect_keeps_the_connection_it_has(
    service: FakeService, collector: Collector, make_subscriber: Callable[..., Subscriber]
) -> None:
    """Replays mochipon/pysesame3#36 (at the 24 h WebSocket close the credentials
    for a new connection cannot be had, and the client is offline until they
    can) for the reconnect this SDK plans itself before that limit.

    The planned reconnect used to close the connection first and then ask
    ``GET /token`` for a new one: with the token API down (an outage, or 429s
    while a wave of clients reconnects), a healthy connection was dropped and
    the user stayed offline until the API was back. The token is fetched
    first; while that fails the connection it has keeps delivering (it is
    good until IoT's 24 h limit) and the fetch is retried.
    """
    # Given a subscriber whose connection is due for its planned replacement
    sub = make_subscriber(max_connection_age=0.5, since=new_notification_id())
    sub.start()
    collector.wait_for(
        lambda: any(c.state is ConnectionState.CAUGHT_UP for _, c in collector.states)
    )
    # When the token API is down at that moment
    service.fail_tokens = True
    service.wait_token_failures(2, timeout=30)
    # Then the connection it has still delivers, and it was never dropped
    live = Notification.create(title="during the token outage")
    service.send(live)
    assert [n.id for n in collector.wait_notes(1)] == [live.id]
    assert len(service.connect_log) == 1
    assert not any(c.state is ConnectionState.DISCONNECTED for _, c in collector.states)
    # And once the API answers again, the planned reconnect happens
    service.fail_tokens = False
    service.wait_connections(2, timeout=60)
