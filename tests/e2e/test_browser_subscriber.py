"""Issue 7: the browser subscriber page, proved in real Chromium.

Every test signs in through the page (Cognito in moto), receives through the
IoT emulator over MQTT-over-WebSocket, and sends with ``iotnotify send``,
exactly as a user and a game server would locally.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import uuid

from playwright.sync_api import Page, expect

from tests.e2e.conftest import (
    README_SCREENSHOT,
    LocalStack,
    OpenPage,
    expect_status,
    sign_in,
    toast,
    unique,
    unread_item,
)

TOAST_WITHIN_MS = 2_000


def test_wrong_password_shows_an_error_not_a_blank_page(
    stack: LocalStack, open_page: OpenPage
) -> None:
    # Given alice's sign-in name with a wrong password
    alice = open_page("alice")
    alice.allow_network_errors(re.escape(stack.state["apiUrl"] + "/cognito/"))  # Cognito's 400
    page = alice.page
    page.goto(stack.web_url)

    # When she signs in
    page.get_by_label("E-mail").fill(stack.user("alice")["username"])
    page.get_by_label("Password").fill("Not-her-password-1!")
    page.get_by_role("button", name="Sign in", exact=True).click()

    # Then the form says why, and stays usable
    expect(page.get_by_role("alert").filter(has_text="Wrong e-mail or password.")).to_be_visible()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_label("Password")).to_be_focused()
    expect(page.locator("#feed-view")).to_be_hidden()
    expect(page.locator("#status")).to_have_attribute("data-state", "offline")
    alice.screenshot("wrong-password")

    # And an unknown account reads the same (no account enumeration)
    page.get_by_label("E-mail").fill("nobody@example.com")
    page.get_by_label("Password").fill("Whatever-123!")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text("Wrong e-mail or password.")


def test_notification_reaches_alice_as_a_toast_and_never_bob(
    stack: LocalStack, open_page: OpenPage
) -> None:
    # Given alice and bob, each signed in in their own browser context
    alice, bob = open_page("alice"), open_page("bob")
    sign_in(alice, stack, "alice")
    sign_in(bob, stack, "bob")

    # When a game server notifies alice
    earlier = unique("Weekly league table")
    stack.send("alice", earlier, "You moved up to 3rd place.")
    expect(unread_item(alice.page, earlier)).to_have_count(1)
    title = f"Your turn in game #{secrets.randbelow(9000) + 1000} ({uuid.uuid4().hex[:4]})"
    sent = stack.send("alice", title, "Bob played a 7 of hearts. Your move.")
    assert all(r["ok"] for r in sent["results"]), sent

    # Then alice sees a toast within 2 s, and the notification in her unread list
    expect(toast(alice.page, title)).to_be_visible(timeout=TOAST_WITHIN_MS)
    expect(unread_item(alice.page, title)).to_have_count(1)
    expect(unread_item(alice.page, title)).to_have_attribute("data-id", sent["id"])
    shot = alice.screenshot("alice-toast")
    # The README's picture; refresh it with IOTNOTIFY_UPDATE_SCREENSHOT=1.
    if not README_SCREENSHOT.exists() or os.environ.get("IOTNOTIFY_UPDATE_SCREENSHOT") == "1":
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, README_SCREENSHOT)

    # And bob does not: a later message for bob arrives, alice's never did
    marker = unique("Bob's own")
    stack.send("bob", marker)
    expect(toast(bob.page, marker)).to_be_visible(timeout=TOAST_WITHIN_MS)
    expect(bob.page.get_by_text(title)).to_have_count(0)
    # nor through catch-up: a reload rebuilds bob's list from his inbox
    bob.page.reload()
    expect_status(bob.page, "live")
    expect(unread_item(bob.page, marker)).to_have_count(1)
    expect(bob.page.get_by_text(title)).to_have_count(0)
    bob.screenshot("bob-after-reload")


def test_emulator_restart_shows_reconnecting_then_live_and_what_was_missed_once(
    stack: LocalStack, open_page: OpenPage
) -> None:
    # Given alice live (failed WebSocket attempts while the emulator is down are expected)
    alice = open_page("alice")
    alice.allow_mqtt_outage()
    sign_in(alice, stack, "alice")
    page = alice.page

    # When the emulator restarts, and something is sent while it is down
    # (down long enough that a slow, loaded machine still sends inside the outage)
    stack.restart_emulator(down_seconds=15)
    expect_status(page, "reconnecting", timeout=10_000)
    missed = unique("Sent while you were away")
    sent = stack.send("alice", missed, "QoS 0 lost it; the inbox did not.")
    # (still down when the send finished: this proves catch-up, not live delivery)
    assert page.locator("#status").get_attribute("data-state") != "live"

    # Then the page comes back live and shows what was missed, once
    expect_status(page, "live", timeout=45_000)
    expect(unread_item(page, missed)).to_have_count(1)
    expect(unread_item(page, missed)).to_have_attribute("data-id", sent["id"])
    expect(toast(page, missed)).to_be_visible()

    # And live delivery works on the new connection, still without duplicates
    after = unique("After the restart")
    stack.send("alice", after)
    expect(toast(page, after)).to_be_visible(timeout=TOAST_WITHIN_MS)
    expect(unread_item(page, missed)).to_have_count(1)
    expect(unread_item(page, after)).to_have_count(1)
    alice.screenshot("after-restart")


def test_keyboard_only_sign_in_and_mark_as_read(stack: LocalStack, open_page: OpenPage) -> None:
    alice = open_page("alice")
    page = alice.page
    user = stack.user("alice")
    page.goto(stack.web_url)
    expect(page.get_by_label("E-mail")).to_be_visible()

    # Given only a keyboard: Tab to the labelled fields, type, Enter
    tab_to(page, "#email")
    page.keyboard.type(user["username"])
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(user["password"])
    page.keyboard.press("Enter")
    expect_status(page, "live")

    # When two notifications arrive
    first, second = unique("First"), unique("Second")
    stack.send("alice", first)
    stack.send("alice", second)
    expect(unread_item(page, second)).to_have_count(1)
    expect(unread_item(page, first)).to_have_count(1)

    # Then each can be marked read from the keyboard, with a visible focus ring
    button = page.get_by_role("button", name=f"Mark “{first}” as read")
    tab_to(page, f'button[data-read-id="{button.get_attribute("data-read-id")}"]')
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    page.keyboard.press("Enter")
    expect(unread_item(page, first)).to_have_count(0)
    # focus stays on a control, not lost to <body>
    assert page.evaluate("document.activeElement.tagName") == "BUTTON"
    # the read ones are one disclosure away
    tab_to(page, "#read-section > summary")
    page.keyboard.press("Enter")
    expect(page.get_by_role("list", name="Read notifications", exact=True)).to_contain_text(first)

    # And "mark all" empties the unread list
    tab_to(page, "#mark-all")
    page.keyboard.press("Enter")
    expect(page.locator("#unread-count")).to_have_text("0")
    expect(unread_item(page, second)).to_have_count(0)
    expect(page.locator("#mark-all")).to_be_disabled()


def tab_to(page: Page, selector: str, limit: int = 40) -> None:
    """Presses Tab until ``selector`` has focus (fails after ``limit`` presses)."""
    for _ in range(limit):
        if page.evaluate("(s) => document.activeElement?.matches(s) ?? false", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} never got keyboard focus after {limit} Tab presses")


# A stand-in for the Notification API: headless Chromium cannot show OS
# notifications, and the page's contract is what it asks and when.
FAKE_NOTIFICATIONS = """
(() => {
  const shown = [];
  let permission = "default";
  let requests = 0;
  let hidden = false;
  class FakeNotification extends EventTarget {
    constructor(title, options = {}) {
      super();
      shown.push({ title, body: options.body ?? "", tag: options.tag ?? "" });
    }
    static get permission() { return permission; }
    static requestPermission() {
      requests += 1;
      if (!navigator.userActivation.isActive) return Promise.resolve(permission);
      permission = "granted";
      return Promise.resolve(permission);
    }
    close() {}
  }
  Object.defineProperty(window, "Notification", { value: FakeNotification, configurable: true });
  Object.defineProperty(document, "visibilityState", {
    get: () => (hidden ? "hidden" : "visible"), configurable: true });
  Object.defineProperty(document, "hidden", { get: () => hidden, configurable: true });
  window.__os = {
    shown,
    requests: () => requests,
    setHidden(value) { hidden = value; document.dispatchEvent(new Event("visibilitychange")); },
  };
})();
"""


def test_os_notification_when_hidden_and_permission_asked_only_from_the_button(
    stack: LocalStack, open_page: OpenPage
) -> None:
    alice = open_page("alice", init_script=FAKE_NOTIFICATIONS)
    page = alice.page
    sign_in(alice, stack, "alice")

    # Given nothing asked for permission on load or sign-in
    assert page.evaluate("window.__os.requests()") == 0
    enable = page.get_by_role("button", name="Enable desktop notifications")
    expect(enable).to_be_visible()

    # When alice clicks the button, permission is asked (once) and the button goes
    enable.click()
    expect(enable).to_be_hidden()
    assert page.evaluate("window.__os.requests()") == 1
    assert page.evaluate("Notification.permission") == "granted"

    # Then a notification while the tab is visible is a toast only
    seen = unique("Seen in the tab")
    stack.send("alice", seen)
    expect(toast(page, seen)).to_be_visible(timeout=TOAST_WITHIN_MS)
    assert page.evaluate("window.__os.shown.length") == 0

    # And one while the tab is hidden is also an OS notification
    page.evaluate("window.__os.setHidden(true)")
    away = unique("While hidden")
    sent = stack.send("alice", away, "Your opponent moved.")
    page.wait_for_function("window.__os.shown.length > 0", timeout=TOAST_WITHIN_MS)
    shown = page.evaluate("window.__os.shown")
    assert shown == [{"title": away, "body": "Your opponent moved.", "tag": sent["id"]}]


def test_phone_width_is_readable_without_sideways_scrolling(
    stack: LocalStack, open_page: OpenPage
) -> None:
    alice = open_page("alice", viewport={"width": 375, "height": 740})
    page = alice.page
    sign_in(alice, stack, "alice")
    title = unique("A rather long notification title that has to wrap on a phone")
    stack.send("alice", title, "and a body that is long enough to need a second line as well")
    expect(toast(page, title)).to_be_visible(timeout=TOAST_WITHIN_MS)
    expect(unread_item(page, title)).to_have_count(1)
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px at phone width"
    alice.screenshot("phone")


def test_sign_out_forgets_the_session_and_tokens_never_reach_local_storage(
    stack: LocalStack, open_page: OpenPage
) -> None:
    alice = open_page("alice")
    page = alice.page
    sign_in(alice, stack, "alice")
    assert page.evaluate("sessionStorage.getItem('iotnotify.session')") is not None
    local = page.evaluate("JSON.stringify({...localStorage})")
    assert "eyJ" not in local  # no JWT
    assert "Token" not in local

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#status")).to_have_attribute("data-state", "offline")
    assert page.evaluate("sessionStorage.getItem('iotnotify.session')") is None
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_a_new_user_signs_up_confirms_and_gets_their_notifications(
    stack: LocalStack, open_page: OpenPage
) -> None:
    # Given someone without an account (sign-in before confirming is a 400 from Cognito)
    carol = open_page("carol")
    carol.allow_network_errors(re.escape(stack.state["apiUrl"] + "/cognito/"))
    page = carol.page
    email = f"carol-{uuid.uuid4().hex[:8]}@example.com"
    page.goto(stack.web_url)

    # When she creates an account and confirms it with the e-mailed code
    page.get_by_role("button", name="Create an account instead").click()
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert")).to_contain_text("Choose another password")
    page.get_by_label("Password").fill("Carol-Pa55word!")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Confirm your e-mail")).to_be_visible()
    expect(page.get_by_label("Confirmation code")).to_be_focused()
    page.get_by_label("Confirmation code").fill("123456")  # moto accepts any code
    page.get_by_role("button", name="Confirm").click()

    # Then she is signed in and live, and notifications to her user id reach her
    expect(page.locator("#whoami")).to_have_text(email)
    expect_status(page, "live")
    sub = page.evaluate("JSON.parse(sessionStorage.getItem('iotnotify.session')).sub")
    title = unique("Welcome, Carol")
    stack.send(sub, title)
    expect(toast(page, title)).to_be_visible(timeout=TOAST_WITHIN_MS)


def test_an_expired_id_token_is_refreshed_without_signing_in_again(
    stack: LocalStack, open_page: OpenPage
) -> None:
    alice = open_page("alice")
    page = alice.page
    sign_in(alice, stack, "alice")
    before = page.evaluate("JSON.parse(sessionStorage.getItem('iotnotify.session'))")

    # Given the ID token in the tab's session has (as far as the page knows) expired
    page.evaluate(
        """() => {
          const s = JSON.parse(sessionStorage.getItem('iotnotify.session'));
          s.expiresAt = 0;
          sessionStorage.setItem('iotnotify.session', JSON.stringify(s));
        }"""
    )

    # When the page comes back (a reload), it refreshes with the refresh token
    page.reload()
    expect_status(page, "live")
    after = page.evaluate("JSON.parse(sessionStorage.getItem('iotnotify.session'))")
    assert after["expiresAt"] > page.evaluate("Date.now()")
    assert after["refreshToken"] == before["refreshToken"]
    assert after["sub"] == before["sub"]
    expect(page.get_by_role("heading", name="Sign in")).to_be_hidden()


def test_offline_then_online_reconnects(stack: LocalStack, open_page: OpenPage) -> None:
    alice = open_page("alice")
    page = alice.page
    sign_in(alice, stack, "alice")

    # When the browser loses its network, the page says so instead of retrying
    alice.context.set_offline(True)
    expect_status(page, "offline")
    missed = unique("Sent while offline")
    stack.send("alice", missed)
    alice.context.set_offline(False)

    # Then it reconnects on its own, and catches up on what was sent meanwhile
    expect_status(page, "live")
    expect(unread_item(page, missed)).to_have_count(1)
    title = unique("Back online")
    stack.send("alice", title)
    expect(toast(page, title)).to_be_visible(timeout=TOAST_WITHIN_MS)
    expect(unread_item(page, missed)).to_have_count(1)


def test_notification_text_is_never_markup(stack: LocalStack, open_page: OpenPage) -> None:
    alice = open_page("alice")
    page = alice.page
    sign_in(alice, stack, "alice")
    title = f'<img src=x onerror="window.__owned=1"> {uuid.uuid4().hex[:6]}'
    stack.send("alice", title, "<script>window.__owned=2</script><b>bold?</b>")
    expect(toast(page, title)).to_be_visible(timeout=TOAST_WITHIN_MS)
    expect(unread_item(page, title)).to_contain_text("<b>bold?</b>")
    assert page.evaluate("window.__owned") is None
    assert page.locator("#main img, #toasts img, #main b, #toasts b").count() == 0
