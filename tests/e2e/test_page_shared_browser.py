"""One browser tab, two people in turn: nothing of the first reaches the second.

A shared computer: alice signs out and bob signs in, in the same tab, while
something alice's session asked for is still on its way (a slow catch-up of
a large inbox, a slow room list). What answers after she signed out belongs
to her session, and must never be shown to bob.
"""

from __future__ import annotations

import re

from playwright.sync_api import Page, Route, expect

from tests.e2e.conftest import (
    LocalStack,
    OpenPage,
    expect_status,
    sign_in,
    toast,
    unique,
    unread_item,
)


def sign_in_here(page: Page, stack: LocalStack, name: str) -> None:
    """Signs ``name`` in through the form of the page as it is (no reload)."""
    user = stack.user(name)
    page.get_by_label("E-mail").fill(user["username"])
    page.get_by_label("Password").fill(user["password"])
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#whoami")).to_have_text(user["username"])
    expect_status(page, "live")


def test_a_catch_up_answered_after_sign_out_never_reaches_the_next_user(
    stack: LocalStack, open_page: OpenPage
) -> None:
    # Given a notification in alice's inbox
    secret = unique("Alice's own note")
    stack.send("alice", secret, "for alice only")
    tab = open_page("shared")
    page = tab.page
    # and her catch-up held on its way (a slow inbox read)
    held: list[Route] = []
    hold = True

    def maybe_hold(route: Route) -> None:
        if hold:
            held.append(route)
        else:
            route.continue_()

    page.route(re.compile(r"/notifications(\?|$)"), maybe_hold)
    with page.expect_request(re.compile(r"/notifications(\?|$)")):
        sign_in(tab, stack, "alice")
    assert held, "alice's catch-up was not held"

    # When she signs out and bob signs in, in the same tab
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    hold = False
    sign_in_here(page, stack, "bob")
    bobs = unique("Bob's note")
    stack.send("bob", bobs)
    expect(unread_item(page, bobs)).to_have_count(1)
    # and alice's catch-up answers only now
    alices: list[str] = []
    for route in held:
        with page.expect_response(lambda response: "/notifications" in response.url) as answer:
            route.continue_()
        alices += [item["id"] for item in answer.value.json()["notifications"]]
    assert alices, "alice's held catch-up answered nothing: the test proves nothing"

    # Then bob's page shows his notifications, never hers
    after = unique("Bob's later note")
    stack.send("bob", after)
    expect(toast(page, after)).to_be_visible()
    for note_id in alices:
        expect(page.locator(f'[data-id="{note_id}"]')).to_have_count(0)
    expect(page.get_by_text(secret)).to_have_count(0)


# A stand-in for the Notification API (headless Chromium shows none) that
# records which pop-ups the page closed.
OS_NOTIFICATIONS = """
(() => {
  const open = [];
  let shownCount = 0;
  let hidden = false;
  class FakeNotification extends EventTarget {
    constructor(title, options = {}) {
      super();
      this.title = title;
      open.push(this);
      document.documentElement.dataset.osShown = String(++shownCount);
    }
    static get permission() { return "granted"; }
    static requestPermission() { return Promise.resolve("granted"); }
    close() { open.splice(open.indexOf(this), 1); }
  }
  Object.defineProperty(window, "Notification", { value: FakeNotification, configurable: true });
  Object.defineProperty(document, "visibilityState", {
    get: () => (hidden ? "hidden" : "visible"), configurable: true });
  window.__os = {
    open: () => open.map((n) => n.title),
    setHidden(value) { hidden = value; document.dispatchEvent(new Event("visibilitychange")); },
  };
})();
"""


def test_sign_out_takes_the_os_notifications_it_showed_off_the_screen(
    stack: LocalStack, open_page: OpenPage
) -> None:
    # Given alice's tab hidden, and an OS notification it showed her
    tab = open_page("shared", init_script=OS_NOTIFICATIONS)
    page = tab.page
    sign_in(tab, stack, "alice")
    page.evaluate("window.__os.setHidden(true)")
    private = unique("Alice's own pop-up")
    stack.send("alice", private, "for alice only")
    page.wait_for_function(f"window.__os.open().includes({private!r})")

    # When she signs out on the shared computer
    page.evaluate("window.__os.setHidden(false)")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    # Then no pop-up of hers is left on the screen for the next person
    assert page.evaluate("window.__os.open()") == []
