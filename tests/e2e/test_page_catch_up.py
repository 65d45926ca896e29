"""The page's catch-up after a reconnect reads a look-back window, in real Chromium.

The reviewer's gap, in the browser: ``notify_many`` takes one id and spends
seconds on its users; alice's page showed a newer notification from another
sender meanwhile, then was offline when the fan-out reached her inbox. The
reconnect's catch-up must show the fan-out, once, and repeat nothing.
"""

from __future__ import annotations

import re

from playwright.sync_api import Route, expect

from iotnotify.contract import Notification
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


def test_an_older_id_that_reached_the_inbox_while_offline_is_shown_once_after_reconnecting(
    stack: LocalStack, open_page: OpenPage
) -> None:
    # Given alice live (failed WebSocket attempts while the emulator is down are expected)
    alice = open_page("alice")
    alice.allow_mqtt_outage()
    sign_in(alice, stack, "alice")
    page = alice.page
    publisher, resolve = publisher_for_local(stack.state_file)
    with publisher:
        alice_id = resolve("alice")
        # and a fan-out that took its id before another sender reached her live
        fan_out = Notification.create(
            title=unique("Tournament starts"), body="one id, 10,000 users"
        )
        newer = unique("Your turn")
        sent = stack.send("alice", newer)
        assert fan_out.id < sent["id"]
        expect(toast(page, newer)).to_be_visible()

        # When she goes offline, and her reconnect waits (its GET /token held)
        # until the fan-out's inbox write has landed; its live publish found nobody
        held: list[Route] = []
        released = False

        def hold(route: Route) -> None:
            if released:
                route.continue_()
            else:
                held.append(route)

        page.route(re.compile(r"/token(\?|$)"), hold)
        stack.restart_emulator(down_seconds=1)
        expect_status(page, "reconnecting", timeout=10_000)
        assert publisher.inbox is not None
        publisher.inbox.put(alice_id, fan_out)
        released = True
        for route in held:
            route.continue_()

    # Then the page comes back live and shows the fan-out once, and the newer one still once
    expect_status(page, "live", timeout=45_000)
    expect(unread_item(page, fan_out.title)).to_have_count(1)
    expect(unread_item(page, fan_out.title)).to_have_attribute("data-id", fan_out.id)
    expect(toast(page, fan_out.title)).to_be_visible()
    after = unique("After the reconnect")
    stack.send("alice", after)
    expect(toast(page, after)).to_be_visible()
    expect(unread_item(page, newer)).to_have_count(1)
    expect(unread_item(page, fan_out.title)).to_have_count(1)
    expect(unread_item(page, after)).to_have_count(1)


def test_a_failed_catch_up_is_said_and_retried_until_it_shows_what_was_missed(
    stack: LocalStack, open_page: OpenPage
) -> None:
    # Given a notification alice has not seen, and an inbox read that fails once (a 502)
    alice = open_page("alice")
    alice.allow_network_errors(r"/notifications\?")
    page = alice.page
    missed = unique("Sent while you were away")
    stack.send("alice", missed)
    failed: list[str] = []

    def fail_once(route: Route) -> None:
        if failed:
            route.continue_()
            return
        failed.append(route.request.url)
        route.fulfill(
            status=502,
            content_type="application/json",
            body='{"error": "bad_gateway", "message": "the inbox is unavailable"}',
        )

    page.route(re.compile(r"/notifications(\?|$)"), fail_once)

    # When she signs in
    sign_in(alice, stack, "alice")

    # Then the page says the catch-up failed while live, retries, and shows it
    notice = page.locator("#conn-notice")
    expect(notice).to_contain_text("could not be loaded yet")
    expect(notice).to_contain_text("the inbox is unavailable")
    expect(unread_item(page, missed)).to_have_count(1, timeout=15_000)
    expect(notice).to_be_hidden()
    expect_status(page, "live")
