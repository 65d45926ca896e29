"""Concurrent room creates on the real ``iotnotify local``: no 201 is undone.

A room create is one DynamoDB transaction (``chat_rooms.ChatRooms.create``).
Some of these transactions cancel (a taken name: 409; the quota reached:
403) while others succeed. On AWS a cancelled transaction changes nothing;
in plain moto it put back copies of the tables taken when it began, undoing
what other requests wrote meanwhile (``iotnotify_local.moto_dynamodb`` says
where). Here every create that answered 201 must exist afterwards, and the
per-user quota must hold exactly.
"""

from __future__ import annotations

import random
import secrets
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from typing import Any

from iotnotify_handlers.settings import Settings
from tests.integration.local.clients import api, sign_in, sign_up
from tests.local_process import LocalProcess

# What the stack runs with: the default (it sets no IOTNOTIFY_MAX_ROOMS_PER_USER).
QUOTA = int(next(f.default for f in fields(Settings) if f.name == "max_rooms_per_user"))  # type: ignore[arg-type]
QUINN_CREATES = 3 * QUOTA  # distinct names: QUOTA succeed, the rest hit the quota
DAVE_CREATES = 30  # all of one taken name: every one a cancelled transaction
CAROL_CREATES = 8  # distinct names, well under the quota
CLIENT_THREADS = 24  # more than the API's 8 handler threads, so they all stay busy


def new_user(stack: LocalProcess, name: str) -> tuple[str, str]:
    """A user of its own (so the quota starts at zero): (sub, ID token)."""
    email = f"{name}-{secrets.token_hex(4)}@example.com"
    password = "Aa1!" + secrets.token_hex(8)
    sub = sign_up(stack.state, email, password)
    return sub, sign_in(stack.state, {"username": email, "password": password})


def rooms_owned_by(stack: LocalProcess, token: str, owner: str) -> set[str]:
    """The public rooms ``GET /chats`` lists with ``owner``, every page."""
    names: set[str] = set()
    next_token = ""
    for _ in range(1000):  # bounded: each page holds up to 100 rooms
        query = "/chats?limit=100" + (f"&next={next_token}" if next_token else "")
        status, page = api(stack.state, "GET", query, token=token)
        assert status == 200, page
        names.update(room["room"] for room in page["rooms"] if room["owner"] == owner)
        next_token = page.get("next") or ""
        if not next_token:
            return names
    raise AssertionError("GET /chats did not finish paging")


def test_cancelled_creates_never_undo_other_creates_and_the_quota_holds(
    local_stack: LocalProcess,
) -> None:
    prefix = f"race{secrets.token_hex(3)}"
    quinn_sub, quinn = new_user(local_stack, "quinn")
    _, carol = new_user(local_stack, "carol")
    _, dave = new_user(local_stack, "dave")
    taken = f"{prefix}-taken"
    status, body = api(local_stack.state, "POST", "/chats", token=dave, body={"room": taken})
    assert status == 201, body

    # When, all at once: quinn asks for three times her quota, dave keeps asking
    # for his taken name, and carol creates a few rooms
    creates: list[tuple[str, str, str]] = (
        [("quinn", quinn, f"{prefix}-q{i}") for i in range(QUINN_CREATES)]
        + [("dave", dave, taken) for _ in range(DAVE_CREATES)]
        + [("carol", carol, f"{prefix}-c{i}") for i in range(CAROL_CREATES)]
    )
    random.shuffle(creates)

    def create(each: tuple[str, str, str]) -> tuple[str, str, int, Any]:
        who, token, room = each
        status, body = api(local_stack.state, "POST", "/chats", token=token, body={"room": room})
        return who, room, status, body

    with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
        answers = list(pool.map(create, creates))

    outcomes = Counter(
        (who, status, body.get("error") if isinstance(body, dict) else None)
        for who, _, status, body in answers
        if status != 201
    ) + Counter((who, 201, None) for who, _, status, _ in answers if status == 201)
    # Then the answers are AWS's: quinn gets exactly her quota, dave only 409s
    assert outcomes == {
        ("quinn", 201, None): QUOTA,
        ("quinn", 403, "quota_exceeded"): QUINN_CREATES - QUOTA,
        ("dave", 409, "conflict"): DAVE_CREATES,
        ("carol", 201, None): CAROL_CREATES,
    }
    tokens = {"quinn": quinn, "carol": carol, "dave": dave}
    # And every room that answered 201 exists, and no refused one does
    for who, room, status, _ in answers:
        got, body = api(local_stack.state, "GET", f"/chats/{room}/messages", token=tokens[who])
        if status == 201:
            assert got == 200, (who, room, body)
        elif who == "quinn":
            assert got == 404, (who, room, body)
    quinn_rooms = {room for who, room, status, _ in answers if who == "quinn" and status == 201}
    assert rooms_owned_by(local_stack, quinn, quinn_sub) == quinn_rooms
    # And quinn's counter was not rolled back under the quota either
    status, body = api(
        local_stack.state, "POST", "/chats", token=quinn, body={"room": f"{prefix}-one-more"}
    )
    assert (status, body["error"]) == (403, "quota_exceeded")
