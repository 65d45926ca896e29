"""``GET /notifications`` pages capped by bytes as well as count (issue 12 item 6)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from iotnotify.sending import publisher_for_local
from iotnotify_local.api import MAX_LAMBDA_RESPONSE_BYTES
from tests.integration.local.clients import sign_in, sign_up
from tests.local_process import LocalProcess


def get_page(state: dict[str, Any], token: str, query: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"{state['apiUrl']}/notifications?{query}", headers={"Authorization": token}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, response.read()


def test_sixty_notifications_of_120_kb_come_in_pages_under_lambdas_limit(
    local_stack: LocalProcess,
) -> None:
    # Given a user with 60 notifications of about 120 KB (7.2 MB in all) in the inbox
    state = local_stack.state
    password = "Dana-1-secret!"
    sub = sign_up(state, "dana@example.com", password)
    publisher, _ = publisher_for_local(local_stack.state_file)
    with publisher:
        sent = [
            publisher.notify(sub, title=f"big {i}", body=f"{i}:" + "x" * 120_000).id
            for i in range(60)
        ]
    token = sign_in(state, {"username": "dana@example.com", "password": password})

    # When the client asks for up to 100 at a time and follows `next`
    pages: list[list[str]] = []
    query = "limit=100"
    while True:
        status, raw = get_page(state, token, query)
        # Then every page is a 200 well under Lambda's 6 MB response limit
        assert status == 200
        assert len(raw) < MAX_LAMBDA_RESPONSE_BYTES
        page = json.loads(raw)
        pages.append([note["id"] for note in page["notifications"]])
        if page["next"] is None:
            break
        assert page["next"] == pages[-1][-1]
        query = f"limit=100&since={page['next']}"

    # And the pages were split by bytes, not by count, and hold all 60 once, in order
    assert len(pages[0]) < 60
    assert len(pages) > 1
    assert [note_id for page_ids in pages for note_id in page_ids] == sent


def test_pages_of_notifications_that_grow_most_when_escaped_stay_under_the_limit(
    local_stack: LocalProcess,
) -> None:
    # Given 20 notifications of 30,000 emoji each: 120 KB stored, but about 420 KB
    # each in the Lambda response (\\ud83d\\ude00 per emoji), 8.4 MB in all
    state = local_stack.state
    password = "Erin-1-secret!"
    sub = sign_up(state, "erin@example.com", password)
    publisher, _ = publisher_for_local(local_stack.state_file)
    with publisher:
        sent = [
            publisher.notify(sub, title=f"e{i}", body="\U0001f600" * 30_000).id for i in range(20)
        ]
    token = sign_in(state, {"username": "erin@example.com", "password": password})

    # When the client reads them, 100 at a time
    got: list[str] = []
    query = "limit=100"
    while True:
        status, raw = get_page(state, token, query)
        # Then no page breaks Lambda's limit (the local API would answer 502)
        assert status == 200
        page = json.loads(raw)
        got += [note["id"] for note in page["notifications"]]
        if page["next"] is None:
            break
        query = f"limit=100&since={page['next']}"
    assert got == sent
