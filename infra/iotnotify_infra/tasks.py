"""Queues: the task pattern's work queue and its dead-letter queue.

``POST /task`` enqueues, the worker Lambda consumes in batches and reports
failed records one by one (``reportBatchItemFailures``), so one bad task is
retried alone; after three receives it moves to the DLQ instead of blocking.
"""

from __future__ import annotations

from typing import Final

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from iotnotify_infra.config import StageConfig

__all__ = ["MAX_RECEIVE_COUNT", "TaskQueue"]

MAX_RECEIVE_COUNT: Final = 3


class TaskQueue(Construct):
    """The SQS task queue with a DLQ, encrypted and TLS-only."""

    queue: sqs.Queue
    dead_letter_queue: sqs.Queue

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        worker_timeout: Duration,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetters",
            queue_name=config.names.task_dlq,
            retention_period=Duration.days(14),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            queue_name=config.names.task_queue,
            # AWS advises at least six times the function timeout so a
            # message is not redelivered while a throttled batch still runs.
            visibility_timeout=Duration.seconds(worker_timeout.to_seconds() * 6),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT
            ),
        )
