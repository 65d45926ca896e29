"""Public bug reports of realtime clients, replayed against the SDK's parts (no server).

Each test names the report it replays (repository and issue number). The
ones that need the emulator or ``iotnotify local`` are in
``tests/integration/sdk/test_replayed_reports.py``.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.stub import Stubber

from iotnotify.contract import Notification
from iotnotify.inbox import Inbox


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
