"""The task pattern: accept work over HTTP, do it later, tell the owner.

``POST /task`` only enqueues ``{taskId, userId, name, payload}`` on SQS and
answers 202, so the caller never waits for the work. The worker takes SQS
batches; a record that fails is reported back alone (partial batch
response), retried by SQS and, after the queue's maxReceiveCount, parked in
the dead-letter queue, while the rest of the batch completes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from iotnotify.contract import new_notification_id, validate_user_id
from iotnotify.errors import ContractError
from iotnotify.publisher import Publisher
from iotnotify_handlers.errors import BadRequest, PayloadTooLarge, ServiceUnavailable
from iotnotify_handlers.http import logger, reject_unknown_fields

__all__ = [
    "MAX_TASK_BYTES",
    "Task",
    "TaskFailed",
    "TaskProcessor",
    "complete_task",
    "demo_processor",
    "submit_task",
]

# SQS takes 256 KB per message; leave room for the wrapper fields.
MAX_TASK_BYTES: Final = 200 * 1024
MAX_NAME_CHARS: Final = 200
# The demo processor's simulated work is capped so a request cannot pin a
# worker: a full SQS batch (10) of the slowest tasks must end well within the
# worker's 30 s timeout, or the whole batch (other users' tasks too) times
# out, is received again and is finally dead-lettered without having failed.
MAX_DEMO_WORK_SECONDS: Final = 1.5


class TaskFailed(Exception):
    """The task itself failed; SQS will redeliver it and finally dead-letter it."""


@dataclass(frozen=True, slots=True)
class Task:
    task_id: str
    user_id: str
    name: str
    payload: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "taskId": self.task_id,
                "userId": self.user_id,
                "name": self.name,
                "payload": dict(self.payload),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Task:
        try:
            raw = json.loads(text)
            return cls(
                task_id=str(raw["taskId"]),
                user_id=validate_user_id(raw["userId"]),
                name=str(raw["name"]),
                payload=dict(raw.get("payload") or {}),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, ContractError) as exc:
            raise TaskFailed(f"malformed task message: {exc}") from exc


TaskProcessor = Callable[[Task], str]


def submit_task(raw: Any, *, user_id: str, sqs: Any, queue_url: str) -> Task:
    """Validate a ``POST /task`` body and enqueue it for ``user_id``.

    Raises :class:`BadRequest` (400) for a malformed body,
    :class:`PayloadTooLarge` (413) over ``MAX_TASK_BYTES`` as the queue
    message, :class:`ServiceUnavailable` (503) when SQS fails.
    """
    if not isinstance(raw, dict):
        raise BadRequest("body must be a JSON object")
    reject_unknown_fields(raw, {"name", "payload"})
    name = raw.get("name", "task")
    payload = raw.get("payload", {})
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
        raise BadRequest(f"name must be a non-empty string of at most {MAX_NAME_CHARS} characters")
    if not isinstance(payload, dict):
        raise BadRequest("payload must be a JSON object")
    task = Task(task_id=new_notification_id(), user_id=user_id, name=name, payload=payload)
    body = task.to_json()
    if len(body.encode("utf-8")) > MAX_TASK_BYTES:
        raise PayloadTooLarge(f"the task is larger than {MAX_TASK_BYTES} bytes as a queue message")
    try:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    except (BotoCoreError, ClientError) as exc:
        raise ServiceUnavailable("could not queue the task, try again") from exc
    return task


def demo_processor(task: Task) -> str:
    """Stand-in work, as in the tutorial: wait a little, then succeed.

    ``payload.workSeconds`` simulates a slow job; ``payload.fail`` makes the
    job raise, which is how the dead-letter path is demonstrated and tested.
    Real deployments pass their own :data:`TaskProcessor`.
    """
    seconds = task.payload.get("workSeconds", 0)
    if isinstance(seconds, int | float) and seconds > 0:
        time.sleep(min(float(seconds), MAX_DEMO_WORK_SECONDS))
    if task.payload.get("fail"):
        raise TaskFailed(f"task {task.task_id} asked to fail")
    return f"Finished task: {task.name}"


def complete_task(task: Task, *, publisher: Publisher, processor: TaskProcessor) -> str:
    """Run ``task`` and notify its owner; returns the notification's title.

    Raises whatever ``processor`` raises, and :class:`TaskFailed` when the
    owner's inbox item could not be written (SQS then redelivers the task).
    A live publish that fails after the inbox write does not fail the task:
    the owner's next catch-up shows the stored notification, while a
    redelivery would run the work again and store a second "Finished task"
    under a new id, which clients cannot recognise as a repeat.
    """
    summary = processor(task)
    [result] = publisher.notify_many(
        [task.user_id],
        title=summary,
        body=f"Task {task.task_id} is done.",
        type="task.finished",
        data={"taskId": task.task_id, "name": task.name},
    )
    if not result.ok and not result.stored:
        raise TaskFailed(f"could not notify the owner of task {task.task_id}: {result.error}")
    if not result.ok:
        logger.warning(
            "task notification stored, live publish failed",
            extra={"taskId": task.task_id, "reason": result.error},
        )
    return summary
