"""The emulator in its own process, as ``iotnotify local`` runs it.

Credentials stay in the parent: a key the child has not seen is looked up
there, and a cached answer is dropped as soon as the parent's IAM change
counter moves. Topic rules run in the child (statistics, error actions)
while their Lambda and SQS actions run in the parent. The child stops with
every connection when asked, and by itself when the parent is gone.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import boto3
import pytest

from iotnotify_emulator import EmulatorConfig, InMemoryCredentialStore
from iotnotify_emulator.rules import CallableAction, Rule
from iotnotify_emulator.rules_sql import MessageContext
from iotnotify_emulator.testing import ALLOW_ALL, ConnectionRefused, RawMqttClient, presign_url
from iotnotify_local.emulator_process import EmulatorProcess, EmulatorProcessError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


async def test_the_child_serves_keys_the_parent_knows_and_refuses_them_after_an_iam_change() -> (
    None
):
    # Given a credential store in this (the parent) process and the emulator in a child
    store = InMemoryCredentialStore()
    kept = store.issue([ALLOW_ALL])
    removed = store.issue([ALLOW_ALL])
    config = EmulatorConfig(wss_port=None)
    with EmulatorProcess(config, credentials=store) as emulator:
        assert emulator.pid != os.getpid()
        # When clients connect with keys the parent knows
        for credential, client_id in ((kept, "al.one"), (removed, "al.two")):
            client = await RawMqttClient.connect(
                presign_url(emulator.ws_url, credential, region=config.region),
                client_id=client_id,
            )
            await client.close()
        # Then the child served them, in its own process
        stats = emulator.stats()
        assert stats["pid"] == emulator.pid

        # When a key is removed and the IAM change counter moves (as an IAM write does)
        store.remove(removed.access_key_id)
        emulator.generation.value += 1
        # Then it is refused from the next request on, and the other key still works
        with pytest.raises(ConnectionRefused) as refused:
            await RawMqttClient.connect(
                presign_url(emulator.ws_url, removed, region=config.region), client_id="al.three"
            )
        assert refused.value.status == 403
        client = await RawMqttClient.connect(
            presign_url(emulator.ws_url, kept, region=config.region), client_id="al.four"
        )
        await client.close()
        url = emulator.ws_url
        pid = emulator.pid

    # When it is stopped, the child is gone and nothing listens any more
    assert not _alive(pid)
    with pytest.raises(OSError):
        await RawMqttClient.connect(presign_url(url, kept, region=config.region), client_id="al.x")


async def test_a_failing_lookup_in_the_parent_refuses_the_connect_and_the_child_lives_on() -> None:
    class Flaky(InMemoryCredentialStore):
        fail = True

        def lookup(self, access_key_id: str) -> Any:
            if self.fail:
                raise RuntimeError("moto's dictionary changed size during iteration")
            return super().lookup(access_key_id)

    store = Flaky()
    credential = store.issue([ALLOW_ALL])
    config = EmulatorConfig(wss_port=None)
    with EmulatorProcess(config, credentials=store) as emulator:
        url = presign_url(emulator.ws_url, credential, region=config.region)
        with pytest.raises(ConnectionRefused):
            await RawMqttClient.connect(url, client_id="al.one")
        store.fail = False
        client = await RawMqttClient.connect(url, client_id="al.one")
        await client.close()


@pytest.mark.parametrize("via", ["websocket", "iot-data"])
async def test_a_slow_lookup_in_the_parent_does_not_hold_up_the_childs_other_connections(
    via: str,
) -> None:
    # The parent answers lookups while it runs the stack (moto, the presence
    # Lambda of a connect storm): the child's event loop must serve meanwhile,
    # whether the new key signs a WebSocket URL or an iot-data request.
    release = threading.Event()
    asked: queue.Queue[str] = queue.Queue()

    class Slow(InMemoryCredentialStore):
        slow_key = ""

        def lookup(self, access_key_id: str) -> Any:
            asked.put(access_key_id)
            if access_key_id == self.slow_key:
                release.wait(30)
            return super().lookup(access_key_id)

    store = Slow()
    early, late = store.issue([ALLOW_ALL]), store.issue([ALLOW_ALL])
    store.slow_key = late.access_key_id
    config = EmulatorConfig(wss_port=None)
    with EmulatorProcess(config, credentials=store) as emulator:
        # Given a connected client, subscribed to its own topic
        client = await RawMqttClient.connect(
            presign_url(emulator.ws_url, early, region=config.region), client_id="al.early"
        )
        await client.subscribe("t/early")
        # When another arrives with a key whose lookup the parent has not answered yet
        loop = asyncio.get_running_loop()
        connecting: asyncio.Future[Any]
        if via == "websocket":
            connecting = asyncio.ensure_future(
                RawMqttClient.connect(
                    presign_url(emulator.ws_url, late, region=config.region), client_id="al.late"
                )
            )
        else:
            iot_data = boto3.client(
                "iot-data",
                region_name=config.region,
                endpoint_url=emulator.data_url,
                aws_access_key_id=late.access_key_id,
                aws_secret_access_key=late.secret_access_key,
                aws_session_token=late.session_token,
            )
            connecting = loop.run_in_executor(None, iot_data.list_retained_messages)
        while await loop.run_in_executor(None, asked.get, True, 10) != late.access_key_id:
            pass
        try:
            # Then the first client's messages still go round meanwhile
            await client.publish("t/early", b"still served")
            assert (await client.next_publish(within=10)).payload == b"still served"
            assert not connecting.done()
        finally:
            release.set()
        # And once the parent answers, the second is served
        second = await asyncio.wait_for(connecting, 10)
        if via == "websocket":
            await second.close()
        else:
            assert second["ResponseMetadata"]["HTTPStatusCode"] == 200
        await client.close()


async def test_an_unknown_key_is_asked_of_the_parent_once_per_connect() -> None:
    asked: list[str] = []

    class Counting(InMemoryCredentialStore):
        def lookup(self, access_key_id: str) -> Any:
            asked.append(access_key_id)
            return super().lookup(access_key_id)

    store = Counting()
    made_up = InMemoryCredentialStore().issue([ALLOW_ALL])  # signs, but unknown to the parent
    config = EmulatorConfig(wss_port=None)
    with EmulatorProcess(config, credentials=store) as emulator:
        with pytest.raises(ConnectionRefused) as refused:
            await RawMqttClient.connect(
                presign_url(emulator.ws_url, made_up, region=config.region), client_id="x.one"
            )
        assert refused.value.status == 403
    assert asked == [made_up.access_key_id]


async def test_a_session_pushed_at_issue_connects_without_a_lookup_in_the_parent() -> None:
    # iotnotify local's store tells the child of each role session as it is
    # issued (MotoCredentialStore.add_issue_listener), so a connect storm of
    # fresh sessions never waits on the parent.
    asked: list[str] = []

    class Announcing(InMemoryCredentialStore):
        def __init__(self) -> None:
            super().__init__()
            self.listeners: list[Any] = []

        def add_issue_listener(self, listener: Any) -> Any:
            self.listeners.append(listener)
            return lambda: self.listeners.remove(listener)

        def lookup(self, access_key_id: str) -> Any:
            asked.append(access_key_id)
            return super().lookup(access_key_id)

    store = Announcing()
    config = EmulatorConfig(wss_port=None)
    with EmulatorProcess(config, credentials=store) as emulator:
        # Given 2,000 sessions issued while the emulator runs, each announced
        # on the issuing thread (which must never wait on the pipe: it is the
        # one answering AssumeRole), before any lookup
        sessions = [store.issue([ALLOW_ALL]) for _ in range(2000)]
        fresh = sessions[-1]

        def announce() -> None:
            for session in sessions:
                for listener in store.listeners:
                    listener(session.access_key_id, session)

        announcing = threading.Thread(target=announce)
        announcing.start()
        announcing.join(30)
        assert not announcing.is_alive()
        # (an unknown key's refusal is answered after the pushes on the same
        # pipe, so once it is back the child has read them)
        with pytest.raises(ConnectionRefused):
            await RawMqttClient.connect(
                presign_url(
                    emulator.ws_url,
                    InMemoryCredentialStore().issue([ALLOW_ALL]),
                    region=config.region,
                ),
                client_id="x.y",
            )
        # When it connects, Then the child knew it: the parent was not asked
        client = await RawMqttClient.connect(
            presign_url(emulator.ws_url, fresh, region=config.region), client_id="al.fresh"
        )
        await client.close()
        assert fresh.access_key_id not in asked
    # And the stopped process no longer listens
    assert store.listeners == []


class _Calls:
    def __init__(self) -> None:
        self.items: list[tuple[Any, str, int]] = []
        self.event = threading.Event()

    def record(self, output: Any, ctx: MessageContext) -> None:
        self.items.append((output, ctx.topic, os.getpid()))
        self.event.set()


async def test_rule_actions_run_in_the_parent_and_failures_reach_the_error_action() -> None:
    # Given two rules whose actions live in this (the parent) process: one
    # succeeds, one raises, and its error action records AWS's error message
    store = InMemoryCredentialStore()
    credential = store.issue([ALLOW_ALL])
    done, errors = _Calls(), _Calls()

    def fail(output: Any, ctx: MessageContext) -> None:
        raise ValueError("the moderator is down")

    rules = [
        Rule.create(
            "stamp",
            "SELECT *, topic(2) AS room, clientid() AS clientId FROM 'chat/+/input'",
            [CallableAction("moderator", done.record)],
        ),
        Rule.create(
            "broken",
            "SELECT * FROM 'chat/+/input'",
            [CallableAction("broken", fail)],
            error_action=CallableAction("dlq", errors.record),
        ),
    ]
    config = EmulatorConfig(wss_port=None)
    with EmulatorProcess(config, credentials=store) as emulator:
        emulator.install_rules(rules)
        client = await RawMqttClient.connect(
            presign_url(emulator.ws_url, credential, region=config.region), client_id="al.tab"
        )
        # When a client publishes to a room's input
        await client.publish("chat/lobby/input", json.dumps({"text": "hi"}).encode(), qos=1)
        await client.close()
        assert done.event.wait(10)
        assert errors.event.wait(10)

        # Then the succeeding action ran here with the rule's output
        output, topic, pid = done.items[0]
        assert pid == os.getpid() != emulator.pid
        assert output == {"text": "hi", "room": "lobby", "clientId": "al.tab"}
        assert topic == "chat/lobby/input"
        # And the failing one was counted by the child's engine and its error
        # action got AWS's error message, naming the parent's exception
        message, _, _ = errors.items[0]
        assert message["ruleName"] == "broken"
        assert message["failures"] == [
            {
                "failedAction": "CallableAction",
                "failedResource": "broken",
                "errorMessage": "ValueError: the moderator is down",
            }
        ]
        rules_stats = _wait_for_stats(emulator, lambda s: s["error_actions_succeeded"] == 1)
        assert rules_stats["actions_succeeded"] == 1
        assert rules_stats["action_failures"] == 1
        assert rules_stats["failures_by_rule"] == {"broken": 1}


def _wait_for_stats(emulator: EmulatorProcess, ready: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        stats: dict[str, Any] = emulator.stats()["rules"]
        if ready(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)  # counters of another process: polling is the only signal


_ORPHAN_SCRIPT = """
import sys, time
from iotnotify_emulator import EmulatorConfig, InMemoryCredentialStore
from iotnotify_local.emulator_process import EmulatorProcess, EmulatorProcessError

emulator = EmulatorProcess(EmulatorConfig(wss_port=None), credentials=InMemoryCredentialStore())
emulator.start()
print(emulator.pid, flush=True)
time.sleep(600)
"""


def test_the_child_stops_when_its_parent_is_killed() -> None:
    # Given a parent process running the emulator in a child
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        # When the parent is killed without a chance to stop anything
        parent.kill()
        parent.wait(timeout=10)
        # Then the child notices and exits by itself
        deadline = time.monotonic() + 20
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)  # another process's exit: polling is the only signal
        assert not _alive(child)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)


def test_the_parent_hears_when_the_child_dies_but_not_when_it_stops_it() -> None:
    config = EmulatorConfig(wss_port=None)
    exits: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    # Given an emulator process whose exit the parent watches
    emulator = EmulatorProcess(config, credentials=InMemoryCredentialStore()).start()
    try:
        emulator.on_exit(exits.put)
        # When the child is killed behind the parent's back (OOM killer, kill -9)
        os.kill(emulator.pid, signal.SIGKILL)
        # Then the parent is told, with the exit code
        assert exits.get(timeout=20) == -signal.SIGKILL
    finally:
        emulator.stop()
    # And a child stopped on purpose is not reported (stop() joins the watcher)
    with EmulatorProcess(config, credentials=InMemoryCredentialStore()) as second:
        second.on_exit(exits.put)
    assert exits.empty()


def test_a_child_that_cannot_start_reports_its_exit_code() -> None:
    # Given the emulator's port taken by someone else
    with socket.create_server(("127.0.0.1", 0)) as taken:
        config = EmulatorConfig(ws_port=taken.getsockname()[1], wss_port=None)
        # When the emulator process starts, Then the error says how it ended
        # (the child's exit status, not "None" from a process not yet reaped)
        with pytest.raises(EmulatorProcessError, match=r"exit code 1\b"):
            EmulatorProcess(config, credentials=InMemoryCredentialStore()).start()
