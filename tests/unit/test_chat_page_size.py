"""Issue 10: ``GET /chats`` and ``/chats/{room}/messages`` read ``limit`` as ASCII digits only."""

from __future__ import annotations

import pytest

from iotnotify_handlers.chat_rooms import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, page_size
from iotnotify_handlers.errors import BadRequest


@pytest.mark.parametrize(
    "raw", ["١٢", "²", "①", "+5", " 12", "12 ", "1_0", "-1", "0", "101", "9" * 5000]
)
def test_a_limit_that_is_not_ascii_digits_in_range_is_a_bad_request(raw: str) -> None:
    with pytest.raises(BadRequest):
        page_size(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, DEFAULT_PAGE_SIZE),
        ("", DEFAULT_PAGE_SIZE),
        ("1", 1),
        ("025", 25),
        ("100", MAX_PAGE_SIZE),
    ],
)
def test_ascii_limits_in_range_are_read(raw: str | None, expected: int) -> None:
    assert page_size(raw) == expected
