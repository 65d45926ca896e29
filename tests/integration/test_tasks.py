"""POST /task and the SQS worker under moto: 202, partial batch failures."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from iotnotify.contract import Notification
from iotnotify.publisher import Publisher
from iotnotify_handlers import api_task, clients, task_worker
from tests.conftest import FakeAccount, rest_event


def submit(user: str, body: Any) -> tuple[int, dict]:
    event = rest_event(method="POST", path="/task", claims={"sub": user}, body=body)
    response = api_task.handler(event)
    return response["statusCode"], json.loads(response["body"])


def receive_batch(account: FakeAccount) -> dict[str, Any]:
    """Read the queue the way Lambda's event source does and build its event."""
    sqs = account.session.client("sqs")
    messages = sqs.receive_message(QueueUrl=account.queue_url, MaxNumberOfMessages=10)
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:iotnotify-test-tasks",
                "awsRegion": "us-east-1",
            }
            for m in messages.get("Messages", [])
        ]
    }


def test_post_task_queues_the_task_and_answers_202(account: FakeAccount) -> None:
    status, body = submit("alice", {"name": "resize photo", "payload": {"size": 3}})
    assert status == 202
    assert body["status"] == "queued"
    [record] = receive_batch(account)["Records"]
    queued = json.loads(record["body"])
    assert queued == {
        "taskId": body["taskId"],
        "userId": "alice",
        "name": "resize photo",
        "payload": {"size": 3},
    }


def test_post_task_requires_a_user_and_a_json_object(account: FakeAccount) -> None:
    response = api_task.handler(rest_event(method="POST", path="/task", body={"name": "x"}))
    assert response["statusCode"] == 401
    assert submit("alice", [1])[0] == 400
    assert submit("alice", {"payload": "text"})[0] == 400


def test_a_poisoned_record_is_the_only_failure_and_the_others_notify_owners(
    account: FakeAccount,
) -> None:
    submit("alice", {"name": "one"})
    submit("bob", {"name": "two", "payload": {"fail": True}})
    submit("carol", {"name": "three"})
    event = receive_batch(account)
    event["Records"].append({**event["Records"][0], "messageId": "garbage", "body": "{not json"})
    poisoned = [r["messageId"] for r in event["Records"] if '"fail":true' in r["body"]]
    poisoned.append("garbage")

    result = task_worker.handler(event)

    assert sorted(f["itemIdentifier"] for f in result["batchItemFailures"]) == sorted(poisoned)
    published = {topic: Notification.from_json(payload) for topic, payload in account.published()}
    assert set(published) == {
        "iotnotify/test/user/alice/notifications",
        "iotnotify/test/user/carol/notifications",
    }
    assert published["iotnotify/test/user/alice/notifications"].title == "Finished task: one"
    assert published["iotnotify/test/user/carol/notifications"].type == "task.finished"


def test_a_clean_batch_reports_no_failures(account: FakeAccount) -> None:
    submit("alice", {"name": "a"})
    assert task_worker.handler(receive_batch(account)) == {"batchItemFailures": []}


def test_post_task_refuses_a_field_it_does_not_know(account: FakeAccount) -> None:
    status, body = submit("alice", {"name": "export", "paylaod": {"rows": 3}})
    assert (status, body["error"]) == (400, "bad_request")
    assert body["message"] == "unknown field(s): paylaod"


def test_a_task_larger_than_a_queue_message_takes_is_a_413_and_not_queued(
    account: FakeAccount,
) -> None:
    # The payload limit is a size, as for a notify over IoT's 128 KB: 413, not
    # a 400 that reads as a malformed body.
    status, body = submit("alice", {"name": "big", "payload": {"blob": "x" * 250_000}})
    assert (status, body["error"]) == (413, "payload_too_large")
    assert "bytes" in body["message"]
    assert receive_batch(account)["Records"] == []


def test_unknown_fields_are_named_briefly_however_many_and_long(account: FakeAccount) -> None:
    # The 400 echoed every unknown name in full: a 1 MiB body of them came
    # back as a 1 MiB message.
    body = {f"k{n}" + "x" * 5000: 1 for n in range(150)}
    status, answer = submit("alice", body)
    assert (status, answer["error"]) == (400, "bad_request")
    assert answer["message"].startswith("unknown field(s): ")
    assert "150" in answer["message"]
    assert len(answer["message"]) < 500


class _PublishFailsOnce:
    """iot-data whose first publish fails (after botocore's own retries), then works."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.failures = 0

    def publish(self, **kwargs: Any) -> Any:
        if self.failures == 0:
            self.failures += 1
            raise ClientError(
                {"Error": {"Code": "InternalFailure", "Message": "try again"}}, "Publish"
            )
        return self._real.publish(**kwargs)


def test_a_task_whose_live_publish_fails_after_the_inbox_write_notifies_its_owner_once(
    account: FakeAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the owner's "Finished task" is in the inbox but its live publish failed
    submit("alice", {"name": "render"})
    real = clients.publisher()
    flaky = Publisher(
        scheme=account.scheme,
        iot_data=_PublishFailsOnce(real.iot_data),
        inbox=real.inbox,
    )
    # Cached like the real factory, so clients.reset() can clear it.
    monkeypatch.setattr(clients, "publisher", functools.cache(lambda: flaky))
    event = receive_batch(account)

    # When the worker handles the record (and SQS would redeliver what it reports failed)
    result = task_worker.handler(event)
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    redelivered = {**event, "Records": [r for r in event["Records"] if r["messageId"] in failed]}
    if redelivered["Records"]:
        task_worker.handler(redelivered)

    # Then the owner's inbox holds one "Finished task", not one per attempt:
    # the stored notification is delivered at the next catch-up.
    page = clients.inbox().since("alice")
    assert [n.title for n in page.notifications] == ["Finished task: render"]
    assert result == {"batchItemFailures": []}
