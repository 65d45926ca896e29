"""SQS worker: run each task, notify its owner, report only the failures.

Powertools' batch processor builds the ``batchItemFailures`` response, so
one poisoned record is retried (and finally dead-lettered) alone.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from iotnotify_handlers import clients
from iotnotify_handlers.tasks import Task, TaskProcessor, complete_task, demo_processor

__all__ = ["handler", "make_handler"]

logger = Logger(service="iotnotify")


def make_handler(processor: TaskProcessor = demo_processor) -> Any:
    """A worker handler running ``processor`` on each task."""

    def record_handler(record: SQSRecord) -> str:
        task = Task.from_json(record.body)
        summary = complete_task(task, publisher=clients.publisher(), processor=processor)
        logger.info("task finished", extra={"taskId": task.task_id, "userId": task.user_id})
        return summary

    def handler(event: dict[str, Any], context: Any = None) -> Any:
        processor_ = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor_, context=context
        )

    return handler


handler = make_handler()
