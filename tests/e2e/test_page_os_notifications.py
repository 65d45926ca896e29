"""OS notifications from a tab that opens hidden (a browser restoring its tabs).

What the inbox already held when the tab opened is not news: the page says
once that there are unread notifications, as its toast does, instead of one
pop-up per old notification every time a background tab loads.
"""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import LocalStack, OpenPage, sign_in, unique
from tests.e2e.test_page_shared_browser import OS_NOTIFICATIONS

HIDDEN_FROM_THE_START = OS_NOTIFICATIONS.replace("let hidden = false;", "let hidden = true;")


def test_a_hidden_tab_that_opens_on_old_unread_notifications_pops_up_once(
    stack: LocalStack, open_page: OpenPage
) -> None:
    # Given several unread notifications in alice's inbox
    for n in range(5):
        stack.send("alice", unique(f"Old news {n}"))
    # When her page opens in a tab that is not visible
    tab = open_page("alice", init_script=HIDDEN_FROM_THE_START)
    page = tab.page
    sign_in(tab, stack, "alice")
    # (the fake counts pop-ups on <html data-os-shown>: no polled eval under the page's CSP)
    expect(page.locator("html")).to_have_attribute("data-os-shown", re.compile(r"^[1-9]"))

    # Then one pop-up says how many are unread, not one per old notification
    shown = page.evaluate("window.__os.open()")
    assert len(shown) == 1, shown
    assert shown[0].endswith("unread notifications"), shown

    # And a new one while hidden still pops up on its own
    fresh = unique("Your turn now")
    stack.send("alice", fresh)
    expect(page.locator("html")).to_have_attribute("data-os-shown", str(len(shown) + 1))
    assert page.evaluate("window.__os.open()")[-1] == fresh
