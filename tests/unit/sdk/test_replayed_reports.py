"""Public bug reports of realtime clients, replayed against the SDK's parts (no server).

Each test names the report it replays (repository and issue number). The
ones that need the emulator or ``iotnotify local`` are in
``tests/integration/sdk/test_replayed_reports.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
from botocore.stub import Stubber

from iotnotify.contract import Notification, new_notification_id
from iotnotify.inbox import Inbox
from iotnotify.subscriber import ConnectionState, Subscriber
from tests.unit.sdk.fakes import Collector, FakeService


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
