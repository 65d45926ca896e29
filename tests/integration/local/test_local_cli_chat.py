"""``iotnotify rooms`` and ``iotnotify chat ROOM`` against the real local stack."""

from __future__ import annotations

import json
import os
import queue
import secrets
import subprocess
import threading
import time
import urllib.request
from typing import IO

from iotnotify.auth import CognitoAuth, CognitoSession
from iotnotify.chat import RoomConnection, RoomsApi
from iotnotify.contract import MAX_CHAT_TEXT_CHARS, ChatMessage, is_chat_cid
from tests.integration.local.clients import public_room
from tests.local_process import IOTNOTIFY, LocalProcess


def run(stack: LocalProcess, *args: str, user: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [IOTNOTIFY, *args[:1], "--state-file", str(stack.state_file), "--user", user, *args[1:]],
        capture_output=True,
        text=True,
        timeout=60,
    )


def rooms_api(stack: LocalProcess, name: str) -> RoomsApi:
    state, user = stack.state, stack.user(name)
    auth = CognitoAuth(
        client_id=state["userPoolClientId"],
        region=state["region"],
        endpoint_url=state["awsEndpointUrl"],
    )
    session = CognitoSession(auth, username=user["username"], password=user["password"])
    return RoomsApi(api_url=state["apiUrl"], id_tokens=session)


def lines_of(stream: IO[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in iter(stream.readline, ""):
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_for(lines: queue.Queue[str], needle: str, within: float = 15.0) -> str:
    while True:
        line = lines.get(timeout=within)
        if needle in line:
            return line


def test_rooms_create_list_and_add_member(local_stack: LocalProcess) -> None:
    room = f"cli-{secrets.token_hex(3)}"
    created = run(local_stack, "rooms", "create", room, "--private", user="alice")
    assert created.returncode == 0, created.stderr
    assert run(local_stack, "rooms", user="bob").stdout.count(room) == 0
    again = run(local_stack, "rooms", "create", room, user="bob")
    assert again.returncode != 0
    assert "409" in again.stderr
    refused = run(local_stack, "rooms", "add-member", room, "bob", user="bob")
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr
    added = run(local_stack, "rooms", "add-member", room, "bob", user="alice")
    assert added.returncode == 0, added.stderr
    listing = run(local_stack, "rooms", "list", user="bob")
    assert f"{room}\tprivate\towner {local_stack.user('alice')['sub']}" in listing.stdout


def test_chat_prints_history_then_live_messages_and_sends_typed_lines(
    local_stack: LocalProcess,
) -> None:
    room = public_room(local_stack.state, "cli")
    alice_api = rooms_api(local_stack, "alice")
    received: queue.Queue[ChatMessage] = queue.Queue()
    with RoomConnection(alice_api.token(room), on_message=received.put) as alice:
        alice.send("before bob came")
        assert received.get(timeout=10).text == "before bob came"
        bob = subprocess.Popen(
            [IOTNOTIFY, "chat", room, "--state-file", str(local_stack.state_file), "--user", "bob"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert bob.stdin is not None
            assert bob.stdout is not None
            assert bob.stderr is not None
            out, err = lines_of(bob.stdout), lines_of(bob.stderr)
            assert wait_for(out, "before bob came").endswith("alice: before bob came")  # history
            wait_for(err, "joined")
            alice.send("live now")
            assert wait_for(out, "live now").endswith("alice: live now")
            bob.stdin.write("hi from the terminal\n")
            bob.stdin.flush()
            while (message := received.get(timeout=10)).text != "hi from the terminal":
                pass
            assert message.sender == local_stack.user("bob")["sub"]
            bob.stdin.close()
            assert bob.wait(timeout=30) == 0
        finally:
            if bob.poll() is None:
                bob.kill()
                bob.wait()


def test_rooms_subcommands_take_the_sign_in_options_after_their_name_too(
    local_stack: LocalProcess,
) -> None:
    # The README's order: `iotnotify rooms create NAME --private --user bob`
    room = f"after-{secrets.token_hex(3)}"
    state = str(local_stack.state_file)
    created = subprocess.run(
        [IOTNOTIFY, "rooms", "create", room, "--private", "--user", "bob", "--state-file", state],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    # An option after the subcommand wins over the same one before it
    listing = subprocess.run(
        [IOTNOTIFY, "rooms", "--user", "alice", "--state-file", state, "list", "--user", "bob"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    assert f"{room}\tprivate\towner {local_stack.user('bob')['sub']}" in listing.stdout


def test_chat_says_a_line_it_cannot_send_and_sends_the_next(local_stack: LocalProcess) -> None:
    # Given alice in a room and bob's `iotnotify chat` reading bytes that are
    # not UTF-8 (a file in Latin-1, a binary paste): it was a traceback
    room = public_room(local_stack.state, "cli")
    alice_api = rooms_api(local_stack, "alice")
    received: queue.Queue[ChatMessage] = queue.Queue()
    with RoomConnection(alice_api.token(room), on_message=received.put) as alice:
        bob = subprocess.Popen(
            [IOTNOTIFY, "chat", room, "--state-file", str(local_stack.state_file), "--user", "bob"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            assert bob.stdin is not None
            assert bob.stderr is not None
            # When it reads a bad line between two good ones and stdin ends
            bob.stdin.write(b"first line\ncaf\xe9 \xff\xfe\nsecond line\n")
            bob.stdin.close()
            # Then the bad line is named on stderr, the next is sent, and it exits 0
            # (the rules engine may hand two lines to the moderator in either order)
            texts = {received.get(timeout=15).text, received.get(timeout=15).text}
            assert texts == {"first line", "second line"}
            assert bob.wait(timeout=30) == 0
            err = bob.stderr.read().decode()
            assert "not sent" in err
            assert "UTF-8" in err
            assert "Traceback" not in err
            assert alice.closed is False
        finally:
            if bob.poll() is None:
                bob.kill()
                bob.wait()


def test_chat_rejoins_after_the_connection_drops_and_shows_what_it_missed(
    local_stack: LocalProcess,
) -> None:
    # Given bob in `iotnotify chat` (it lost its connection at an outage without
    # a word, received nothing more, and exited with "not connected" at the
    # next line typed)
    room = public_room(local_stack.state, "cli")
    alice_api = rooms_api(local_stack, "alice")
    bob = subprocess.Popen(
        [IOTNOTIFY, "chat", room, "--state-file", str(local_stack.state_file), "--user", "bob"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert bob.stdin is not None
        assert bob.stdout is not None
        assert bob.stderr is not None
        out, err = lines_of(bob.stdout), lines_of(bob.stderr)
        wait_for(err, "joined")
        # When the IoT endpoint goes away for a second, and alice writes meanwhile
        state = local_stack.state
        restart = urllib.request.Request(
            f"{state['iotDataUrl']}/_emulator/restart?downSeconds=1",
            method="POST",
            headers={"X-Emulator-Secret": state["extra"]["emulatorAdminSecret"]},
        )
        with urllib.request.urlopen(restart, timeout=10) as answer:
            assert answer.status == 202
        wait_for(err, "disconnected", within=30)
        wait_for(err, "rejoined", within=60)
        with RoomConnection(alice_api.token(room), on_message=lambda _m: None) as alice:
            alice.send("after the outage")
            # Then bob sees it live, and what he types is sent again
            assert wait_for(out, "after the outage").endswith("alice: after the outage")
            received: queue.Queue[ChatMessage] = queue.Queue()
            with RoomConnection(alice_api.token(room), on_message=received.put):
                bob.stdin.write("bob is back\n")
                bob.stdin.flush()
                while (message := received.get(timeout=15)).text != "bob is back":
                    pass
            assert message.sender == local_stack.user("bob")["sub"]
        bob.stdin.close()
        assert bob.wait(timeout=30) == 0
    finally:
        if bob.poll() is None:
            bob.kill()
            bob.wait()


def test_chat_says_why_the_moderator_refused_a_line(local_stack: LocalProcess) -> None:
    # Given alice in a room and bob's `iotnotify chat` there
    room = public_room(local_stack.state, "cli")
    alice_api = rooms_api(local_stack, "alice")
    received: queue.Queue[ChatMessage] = queue.Queue()
    with RoomConnection(alice_api.token(room), on_message=received.put):
        bob = subprocess.Popen(
            [IOTNOTIFY, "chat", room, "--state-file", str(local_stack.state_file), "--user", "bob"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert bob.stdin is not None
            assert bob.stderr is not None
            err = lines_of(bob.stderr)
            wait_for(err, "joined")
            # When bob types a line over the moderator's length limit, then a short one
            bob.stdin.write("x" * (MAX_CHAT_TEXT_CHARS + 1) + "\nshort\n")
            bob.stdin.flush()
            # Then the short one reaches the room, and bob is told why the long one did not
            assert received.get(timeout=15).text == "short"
            line = wait_for(err, "not sent")
            assert room in line
            assert f"at most {MAX_CHAT_TEXT_CHARS} characters" in line
        finally:
            bob.stdin.close()  # Ctrl-D: chat leaves
            try:
                bob.wait(timeout=30)
            except subprocess.TimeoutExpired:
                bob.kill()
                bob.wait()


def rule_actions_done(stack: LocalProcess) -> int:
    """How many rule actions (moderator invocations among them) have finished."""
    with urllib.request.urlopen(stack.state["extra"]["emulatorStatsUrl"], timeout=10) as answer:
        return int(json.loads(answer.read())["rules"]["actions_succeeded"])


def test_send_puts_a_fresh_cid_on_each_line_and_a_resend_with_it_shows_once(
    local_stack: LocalProcess,
) -> None:
    room = public_room(local_stack.state, "cid")
    alice_api = rooms_api(local_stack, "alice")
    received: queue.Queue[ChatMessage] = queue.Queue()
    with RoomConnection(alice_api.token(room), on_message=received.put) as alice:
        # Each line gets its own cid, which comes back on the room's envelope.
        first_cid = alice.send("one")
        second_cid = alice.send("two")
        assert is_chat_cid(first_cid)
        assert is_chat_cid(second_cid)
        assert first_cid != second_cid
        got = [received.get(timeout=10), received.get(timeout=10)]
        assert {(m.text, m.cid) for m in got} == {("one", first_cid), ("two", second_cid)}
        before = rule_actions_done(local_stack)
        # The line sent again (its PUBACK lost, say) with its cid, then a new line.
        assert alice.send("one", cid=first_cid) == first_cid
        alice.send("three")
        while (message := received.get(timeout=10)).text != "three":
            assert message.text != "one", "the resent line reached the room again"
        deadline = time.monotonic() + 10
        while rule_actions_done(local_stack) < before + 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # both invocations (the copy's and the new line's) done
    texts = [m.text for m in alice_api.history(room, limit=10)[0]]
    assert sorted(texts) == ["one", "three", "two"]
    assert received.empty()


def test_chat_whose_output_cannot_be_written_stops_with_an_error(
    local_stack: LocalProcess,
) -> None:
    # Given bob's `iotnotify chat` writing to a full disk (/dev/full: ENOSPC),
    # in a room with no history yet, so that the first line it prints is a
    # live one (printed on the MQTT client's thread)
    room = public_room(local_stack.state, "cli")
    alice_api = rooms_api(local_stack, "alice")
    with (
        RoomConnection(alice_api.token(room), on_message=lambda _m: None) as alice,
        open("/dev/full", "w") as full,
    ):
        bob = subprocess.Popen(
            [IOTNOTIFY, "chat", room, "--state-file", str(local_stack.state_file), "--user", "bob"],
            stdin=subprocess.PIPE,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert bob.stderr is not None
            err = lines_of(bob.stderr)
            wait_for(err, "joined")
            # When a live message arrives that it cannot print
            alice.send("can you read me")
            # Then it stops with status 1 and one line saying why, instead of
            # a traceback that ends the connection's thread while the command
            # runs on, deaf to the room
            assert bob.wait(timeout=30) == 1
            rest = []
            while True:
                try:
                    rest.append(err.get(timeout=2))
                except queue.Empty:
                    break
            text = "\n".join(rest)
            assert "Traceback" not in text
            assert "No space left on device" in text
        finally:
            if bob.poll() is None:
                bob.kill()
                bob.wait()


def test_chat_ends_quietly_when_its_pipe_reader_leaves_while_nothing_arrives(
    local_stack: LocalProcess,
) -> None:
    # Given bob's `iotnotify chat ROOM | head -1` in a quiet room
    room = public_room(local_stack.state, "cli")
    read_end, write_end = os.pipe()
    bob = subprocess.Popen(
        [IOTNOTIFY, "chat", room, "--state-file", str(local_stack.state_file), "--user", "bob"],
        stdin=subprocess.PIPE,
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write_end)
    try:
        assert bob.stderr is not None
        err = lines_of(bob.stderr)
        wait_for(err, "joined")
        # When the reader leaves and nobody says anything
        os.close(read_end)
        # Then chat ends by itself with status 0 (it ran on until the next line)
        assert bob.wait(timeout=30) == 0
    finally:
        if bob.poll() is None:
            bob.kill()
            bob.wait()
