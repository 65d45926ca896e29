"""Issue 12 (field reports), the page's side, proved in Chromium against ``iotnotify local``.

Item 8: what a signed-out page shows, the header after sign-out, the read
history after a reload, long bodies, password rules and e-mail case.
"""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import expect

from iotnotify.sending import publisher_for_local
from tests.e2e.conftest import (
    LocalStack,
    OpenPage,
    expect_status,
    sign_in,
    toast,
    unique,
    unread_item,
)


def test_signed_out_page_shows_no_sign_out_button_and_no_confirmation_code(
    stack: LocalStack, open_page: OpenPage
) -> None:
    # Given a fresh tab, nobody signed in
    alice = open_page("alice")
    page = alice.page
    page.goto(stack.web_url)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    # Then there is nothing to sign out of and no code to confirm
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    expect(page.get_by_label("Confirmation code")).to_be_hidden()

    # And after alice signs in and out, her e-mail leaves the header
    sign_in(alice, stack, "alice")
    email = stack.user("alice")["username"]
    expect(page.get_by_role("banner")).to_contain_text(email)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    expect(page.get_by_role("banner")).not_to_contain_text(email)
    expect(page.locator("#whoami")).to_have_text("")


def test_read_history_is_still_there_after_mark_all_as_read_and_a_reload(
    stack: LocalStack, open_page: OpenPage
) -> None:
    # Given alice with two notifications, both marked read
    alice = open_page("alice")
    page = alice.page
    sign_in(alice, stack, "alice")
    first, second = unique("League table"), unique("Your turn")
    stack.send("alice", first)
    stack.send("alice", second)
    expect(unread_item(page, second)).to_have_count(1)
    expect(unread_item(page, first)).to_have_count(1)
    page.get_by_role("button", name="Mark all as read").click()
    expect(page.locator("#unread-count")).to_have_text("0")

    # When she reloads the tab
    page.reload()
    expect_status(page, "live")

    # Then both are in the read list, without a new notification to wake it up
    read = page.get_by_role("list", name="Read notifications", exact=True)
    page.locator("#read-section > summary").click()
    expect(read.get_by_role("heading", name=first, exact=True)).to_have_count(1)
    expect(read.get_by_role("heading", name=second, exact=True)).to_have_count(1)
    expect(unread_item(page, first)).to_have_count(0)
    expect(page.locator("#feed-empty")).to_have_text("All caught up.")


def test_a_huge_body_is_clamped_in_the_list_and_the_toast_with_show_more(
    stack: LocalStack, open_page: OpenPage
) -> None:
    alice = open_page("alice")
    page = alice.page
    sign_in(alice, stack, "alice")
    window_height = page.viewport_size["height"] if page.viewport_size else 720

    # When a notification with a ~120 KB body arrives (the envelope's limit is 128 KB)
    title = unique("Match report")
    body = ("Round by round, what happened. " * 4000)[:120_000]
    stack.send("alice", title, body)
    note = unread_item(page, title)
    expect(note).to_have_count(1)
    expect(toast(page, title)).to_be_visible()

    # Then neither the list item nor the toasts are taller than the window
    item_height = note.evaluate("el => el.getBoundingClientRect().height")
    assert item_height < window_height / 2, f"the list item is {item_height}px tall"
    toasts_height = page.evaluate(
        "document.getElementById('toasts').getBoundingClientRect().height"
    )
    assert toasts_height <= window_height, f"the toasts are {toasts_height}px tall"

    # And "Show more" gives the whole text, in a box that scrolls, and "Show less" undoes it
    more = note.get_by_role("button", name="Show more")
    expect(more).to_have_attribute("aria-expanded", "false")
    more.click()
    less = note.get_by_role("button", name="Show less")
    expect(less).to_have_attribute("aria-expanded", "true")
    assert note.locator(".note-body").evaluate("el => el.textContent.length") == len(body)
    expanded_height = note.evaluate("el => el.getBoundingClientRect().height")
    assert item_height < expanded_height <= window_height, expanded_height
    less.click()
    expect(note.get_by_role("button", name="Show more")).to_be_visible()
    alice.screenshot("huge-body")


def test_right_to_left_text_is_isolated_and_cannot_reorder_the_page(
    stack: LocalStack, open_page: OpenPage
) -> None:
    alice = open_page("alice")
    page = alice.page
    sign_in(alice, stack, "alice")

    # When a notification arrives whose title and body are Hebrew (right to left)
    title = f"\u05e9\u05dc\u05d5\u05dd {uuid.uuid4().hex[:6]}"
    stack.send("alice", title, "\u05d4\u05ea\u05d5\u05e8 \u05e9\u05dc\u05da 12")
    note = unread_item(page, title)
    expect(note).to_have_count(1)
    expect(toast(page, title)).to_be_visible()

    # Then every piece of it, in the list and the toast, is bidi-isolated and
    # takes its direction from its own text
    for piece in (
        note.locator(".note-title"),
        note.locator(".note-body"),
        toast(page, title).locator(".toast-title"),
        toast(page, title).locator(".toast-body"),
    ):
        expect(piece).to_have_attribute("dir", "auto")
        assert piece.evaluate("el => getComputedStyle(el).unicodeBidi") in {
            "isolate",
            "plaintext",
        }
        assert piece.evaluate("el => getComputedStyle(el).direction") == "rtl"


def test_a_refused_password_shows_the_rules(stack: LocalStack, open_page: OpenPage) -> None:
    carol = open_page("carol")
    carol.allow_network_errors(re.escape(stack.state["apiUrl"] + "/cognito/"))  # Cognito's 400
    page = carol.page
    page.goto(stack.web_url)
    page.get_by_role("button", name="Create an account instead").click()

    # The rules are there before anything is typed
    expect(page.locator("#password-rules")).to_contain_text("at least 10 characters")

    # And a refused password repeats them instead of the service's raw text
    page.get_by_label("E-mail").fill(f"carol-{uuid.uuid4().hex[:8]}@example.com")
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Create account").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Choose another password.")
    expect(alert).to_contain_text("Use at least 10 characters, with a lower-case letter")
    expect(alert).not_to_contain_text("conform")
    expect(alert).not_to_contain_text("policy")


def test_e_mail_sign_in_ignores_case(stack: LocalStack, open_page: OpenPage) -> None:
    alice = open_page("alice")
    page = alice.page
    user = stack.user("alice")
    page.goto(stack.web_url)

    # When alice types her e-mail in capitals (phones capitalise the first letter)
    page.get_by_label("E-mail").fill(f" {user['username'].upper()} ")
    page.get_by_label("Password").fill(user["password"])
    page.get_by_role("button", name="Sign in", exact=True).click()

    # Then she is signed in as herself
    expect(page.locator("#whoami")).to_have_text(user["username"])
    expect_status(page, "live")


def test_a_senders_bidi_override_and_controls_cannot_disguise_a_notification(
    stack: LocalStack, open_page: OpenPage
) -> None:
    alice = open_page("alice")
    page = alice.page
    sign_in(alice, stack, "alice")

    # When a notification's title, body and type carry a RIGHT-TO-LEFT
    # OVERRIDE (shown, "evil.exe" reads "exe.live"), controls, and a type of 5,000 characters
    tag = uuid.uuid4().hex[:6]
    publisher, resolve = publisher_for_local(stack.state_file)
    with publisher:
        publisher.notify(
            resolve("alice"),
            title=f"Invoice {tag} \u202eevil.exe\u202c\x07",
            body="open \u202egnp.exe\u202c now\x1b[2J",
            type="\u202e" + "Z" * 5000,
        )
    shown_title = f"Invoice {tag} evil.exe"

    # Then the list, the toast and the labels show the text as sent, in order, without them
    note = unread_item(page, shown_title)
    expect(note).to_have_count(1)
    expect(note.locator(".note-body")).to_have_text("open gnp.exe now[2J")
    expect(toast(page, shown_title).locator(".toast-title")).to_have_text(shown_title)
    expect(note.get_by_role("button", name=f"Mark “{shown_title}” as read")).to_be_visible()
    # and a long type is cut to one short line of the item's meta, not 5,000 characters
    meta = note.locator(".note-meta")
    expect(meta).to_contain_text("ZZZ")
    assert len(meta.inner_text()) < 100, meta.inner_text()
