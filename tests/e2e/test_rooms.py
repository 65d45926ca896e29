"""Issue 13: the page's Rooms view in Chromium, against the real local stack.

alice creates a private room and adds bob; both chat through the moderated
input topic and see each other's messages with the sender the moderator put
in the envelope; bob reloads and gets the history on join; carol, who is
not a member, neither sees the room nor can join it.
"""

from __future__ import annotations

import re
import secrets

from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import LocalStack, OpenPage, UserPage, expect_status, sign_in
from tests.integration.local.clients import sign_up

# Issue 13's acceptance bound for a message to reach another member.
DELIVERY_WITHIN_MS = 2_000


def rooms_view(page: Page) -> Locator:
    return page.locator("#rooms-view")


def chat_line(page: Page, text: str) -> Locator:
    return page.get_by_role("list", name="Messages").get_by_role("listitem").filter(has_text=text)


def join(page: Page, room: str) -> None:
    rooms_view(page).get_by_role("button", name="Refresh").click()
    page.get_by_role("button", name=f"Join {room}").click()
    expect(page.locator("#room-title")).to_have_text(room)
    expect(page.locator("#room-state")).to_have_attribute("data-state", "live", timeout=15_000)


def send(page: Page, text: str) -> None:
    page.get_by_label("Message", exact=True).fill(text)
    page.get_by_role("button", name="Send").click()


def sign_in_as(user_page: UserPage, stack: LocalStack, email: str, password: str) -> None:
    page = user_page.page
    page.goto(stack.web_url)
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#whoami")).to_have_text(email)
    expect_status(page, "live")


def test_two_members_chat_in_a_private_room_and_an_outsider_is_kept_out(
    stack: LocalStack, open_page: OpenPage
) -> None:
    room = f"secret-{secrets.token_hex(3)}"
    alice_sub, bob_sub = stack.user("alice")["sub"], stack.user("bob")["sub"]
    alice, bob = open_page("alice"), open_page("bob")
    sign_in(alice, stack, "alice")
    sign_in(bob, stack, "bob")

    # alice creates a private room (she joins it at once) and adds bob
    page_a = alice.page
    page_a.get_by_label("New room").fill(room)
    page_a.get_by_label("Private").check()
    rooms_view(page_a).get_by_role("button", name="Create").click()
    expect(page_a.locator("#room-title")).to_have_text(room)
    expect(page_a.locator("#room-state")).to_have_attribute("data-state", "live", timeout=15_000)
    page_a.get_by_label("Add member (user id)").fill(bob_sub)
    rooms_view(page_a).get_by_role("button", name="Add", exact=True).click()
    # Issue 14: the member list says who is online. bob is signed in and live,
    # but being added is alice's act alone: until bob joins, his presence is
    # not hers to see.
    expect(page_a.locator("#room-members-info")).to_have_text("Members: 2, 1 online")

    # bob sees it listed and joins (a new token naming the room, a new connection);
    # the owner took part by creating it, so bob sees both online
    page_b = bob.page
    join(page_b, room)
    expect(page_b.locator("#room-members-info")).to_have_text("Members: 2, 2 online")

    # alice sends; bob sees it with alice's id as the sender, denylisted word masked
    send(page_a, "hello bob, darn it")
    line = chat_line(page_b, "hello bob, **** it")
    expect(line).to_be_visible(timeout=DELIVERY_WITHIN_MS)
    expect(line).to_have_attribute("data-sender", alice_sub)
    expect(chat_line(page_a, "hello bob, **** it").locator(".chat-sender")).to_have_text("you")

    # bob answers; alice sees bob as the sender
    send(page_b, "hi alice")
    answer = chat_line(page_a, "hi alice")
    expect(answer).to_be_visible(timeout=DELIVERY_WITHIN_MS)
    expect(answer).to_have_attribute("data-sender", bob_sub)
    # Each line's sender and text are bidi-isolated (dir=auto): a right-to-left
    # message cannot reorder the name shown beside it
    for part in (answer.locator(".chat-sender"), answer.locator(".chat-text")):
        expect(part).to_have_attribute("dir", "auto")
        assert part.evaluate("el => getComputedStyle(el).unicodeBidi") != "normal"

    # bob reloads: joining again shows the history, oldest first
    page_b.reload()
    expect_status(page_b, "live")
    join(page_b, room)
    lines = page_b.get_by_role("list", name="Messages").get_by_role("listitem")
    expect(lines).to_have_count(2)
    expect(lines.nth(0)).to_contain_text("hello bob, **** it")
    expect(lines.nth(1)).to_contain_text("hi alice")

    # carol, not a member: the room is not listed, and joining it by name is refused
    email = f"carol-{secrets.token_hex(4)}@example.com"
    password = "Carol-Pa55word!"
    sign_up(stack.state, email, password)
    carol = open_page("carol")
    carol.allow_network_errors(re.escape(stack.state["apiUrl"]))  # the 403 is expected
    sign_in_as(carol, stack, email, password)
    page_c = carol.page
    rooms_view(page_c).get_by_role("button", name="Refresh").click()
    expect(page_c.get_by_role("list", name="Rooms")).not_to_contain_text(room)
    page_c.get_by_label("Join by name").fill(room)
    rooms_view(page_c).get_by_role("button", name="Join", exact=True).click()
    expect(page_c.locator("#rooms-error")).to_have_text(f"You are not a member of {room}.")
    expect(page_c.locator("#room-current")).to_be_hidden()


def test_a_room_comes_back_by_itself_after_the_emulator_restarts(
    stack: LocalStack, open_page: OpenPage
) -> None:
    # Given alice in a room she created, with one line in it
    room = f"blip-{secrets.token_hex(3)}"
    alice = open_page("alice")
    alice.allow_mqtt_outage()
    sign_in(alice, stack, "alice")
    page = alice.page
    page.get_by_label("New room").fill(room)
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#room-state")).to_have_attribute("data-state", "live", timeout=15_000)
    before = f"before the blip {secrets.token_hex(3)}"
    send(page, before)
    expect(chat_line(page, before)).to_have_count(1)

    # When the emulator drops every connection for a moment
    stack.restart_emulator(down_seconds=1)

    # Then the room says it is reconnecting, comes back live without a click,
    # keeps what it showed, and a line sent afterwards arrives
    expect(page.locator("#room-state")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#room-state")).to_have_attribute("data-state", "live", timeout=45_000)
    expect(chat_line(page, before)).to_have_count(1)
    after = f"after the blip {secrets.token_hex(3)}"
    send(page, after)
    expect(chat_line(page, after)).to_have_count(1)
    expect_status(page, "live", timeout=45_000)
