"""GET /notifications under moto: what a catch-up answers when the inbox cannot be read."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from iotnotify.inbox import Inbox
from iotnotify_handlers import api_notifications, clients
from tests.conftest import FakeAccount, rest_event


class _TableDown:
    """An inbox table whose every query fails (after botocore's retries)."""

    def __init__(self, code: str) -> None:
        self._code = code

    def query(self, **_kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": self._code, "Message": "down"}}, "Query")


@pytest.mark.parametrize("code", ["InternalServerError", "ProvisionedThroughputExceededException"])
def test_an_inbox_that_cannot_be_read_is_a_503_to_retry_not_a_500(
    account: FakeAccount, monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    # Given the inbox table failing
    down = Inbox(_TableDown(code))
    # Cached like the real factory, so clients.reset() can clear it.
    monkeypatch.setattr(clients, "inbox", functools.cache(lambda: down))
    # When alice catches up
    event = rest_event(method="GET", path="/notifications", claims={"sub": "alice"})
    response = api_notifications.handler(event)
    answer = json.loads(response["body"])
    # Then she is told to try again, as for the API's other AWS failures,
    # rather than "internal error"
    assert (response["statusCode"], answer["error"]) == (503, "service_unavailable"), answer
    assert "try again" in answer["message"]
