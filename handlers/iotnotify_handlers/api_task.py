"""``POST /task``: queue work for the signed-in user; 202 with its id."""

from __future__ import annotations

from typing import Any

from iotnotify_handlers import clients
from iotnotify_handlers.http import Request, api_handler
from iotnotify_handlers.settings import settings
from iotnotify_handlers.tasks import submit_task

__all__ = ["handler"]


@api_handler
def handler(request: Request) -> tuple[int, Any]:
    user_id = request.user_id()
    task = submit_task(
        request.json(), user_id=user_id, sqs=clients.sqs(), queue_url=settings().task_queue_url
    )
    return 202, {"taskId": task.task_id, "status": "queued"}
