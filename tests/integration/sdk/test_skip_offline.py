"""``Publisher(skip_offline=True)`` against ``iotnotify local`` (issue 14 §5 acceptance).

The emulator's ``publishes_http`` counter is what AWS would bill as iot-data
publishes: a send to a user with no connection must not move it, yet the
user reads everything at their next catch-up; a connect racing the sends
loses nothing (the inbox write comes before the presence read, and the
catch-up leaves its hint before reading the inbox: ``iotnotify.presence``).
"""

from __future__ import annotations

import json
import threading
import urllib.request
import uuid
from collections.abc import Iterator

import boto3
import pytest

from iotnotify.api_client import ApiClient
from iotnotify.auth import CognitoAuth, CognitoSession
from iotnotify.contract import Notification, new_notification_id
from iotnotify.publisher import Publisher
from iotnotify.subscriber import ConnectionState, Subscriber
from tests.integration.sdk.conftest import RunningStack
from tests.unit.sdk.fakes import Collector

PASSWORD = "Skip-offline-1-password"


def new_user(stack: RunningStack) -> tuple[str, ApiClient]:
    """A user nobody else in this session uses: (user id, API client signed in as them)."""
    state = stack.state
    auth = CognitoAuth.from_state_file(stack.state_file)
    email = f"skip-{uuid.uuid4().hex[:10]}@example.com"
    signed_up = auth.sign_up(email, PASSWORD)
    admin = boto3.client(
        "cognito-idp",
        region_name=state.region,
        endpoint_url=state.awsEndpointUrl,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    if not signed_up.confirmed:
        admin.admin_confirm_sign_up(UserPoolId=state.userPoolId, Username=email)
    session = CognitoSession(auth, username=email, password=PASSWORD)
    return signed_up.user_sub, ApiClient(api_url=state.apiUrl, id_tokens=session)


def http_publishes(stack: RunningStack) -> int:
    request = urllib.request.Request(
        stack.state.extra["emulatorStatsUrl"],
        headers={"X-Emulator-Secret": stack.state.extra["emulatorAdminSecret"]},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return int(json.load(answer)["publishes_http"])


@pytest.fixture
def publisher(local_stack: RunningStack) -> Iterator[Publisher]:
    with Publisher.from_state_file(local_stack.state_file, skip_offline=True) as pub:
        yield pub


def subscribe(api: ApiClient, collector: Collector, since: str, device: str) -> Subscriber:
    return Subscriber(
        tokens=api,
        on_message=collector.on_message,
        on_state=collector.on_state,
        since=since,
        device_id=device,
    ).start()


def test_no_live_publish_to_an_offline_user_and_nothing_lost_on_reconnect(
    local_stack: RunningStack, publisher: Publisher, collector: Collector
) -> None:
    user_id, api = new_user(local_stack)
    cursor = new_notification_id()
    # Given the user has no connection
    before = http_publishes(local_stack)
    # When three notifications are sent with skip_offline
    away = [publisher.notify(user_id, title=f"while away {n}") for n in range(3)]
    # Then IoT published nothing (nothing billed) ...
    assert http_publishes(local_stack) == before
    assert publisher.skipped_offline == 3
    # ... and the user gets all three when they connect (catch-up)
    sub = subscribe(api, collector, cursor, "skip-1")
    try:
        notes = collector.wait_notes(3, timeout=30)
        assert [n.id for n in notes] == [n.id for n in away]
        collector.wait_for(
            lambda: any(c.state is ConnectionState.CAUGHT_UP for _, c in collector.states),
            timeout=30,
        )
        # Once connected, sends go out live again.
        before = http_publishes(local_stack)
        live = publisher.notify(user_id, title="you are here")
        assert collector.wait_notes(4, timeout=15)[-1].id == live.id
        assert http_publishes(local_stack) == before + 1
    finally:
        sub.stop()


def test_a_connect_racing_the_sends_loses_nothing(
    local_stack: RunningStack, publisher: Publisher, collector: Collector
) -> None:
    user_id, api = new_user(local_stack)
    cursor = new_notification_id()
    sent: list[Notification] = []
    started = threading.Event()

    def send_many() -> None:
        for n in range(40):
            sent.append(publisher.notify(user_id, title=f"race {n}"))
            started.set()

    sender = threading.Thread(target=send_many)
    sender.start()
    started.wait(10)
    # The user connects while the sends go on: some find them offline, some
    # connecting (connected event not yet applied), some online.
    sub = subscribe(api, collector, cursor, "race-1")
    try:
        sender.join(60)
        notes = collector.wait_notes(40, timeout=30)
        assert sorted(n.id for n in notes) == sorted(n.id for n in sent)  # each once
    finally:
        sub.stop()
