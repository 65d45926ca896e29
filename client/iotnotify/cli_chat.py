"""``iotnotify rooms`` and ``iotnotify chat ROOM``: chat rooms from the terminal.

Registered on the main group by :mod:`iotnotify.cli`. Sign-in works as for
``listen``: a deployment (``--api-url --client-id --region --user``) or the
local stack's state file with a demo user (``--user alice``).

* ``iotnotify rooms`` (or ``rooms list``) prints the rooms you may see;
  ``rooms create NAME [--private]``; ``rooms add-member ROOM USER`` (owner
  only; USER is a user id, or a demo user's name with the local stack).
* ``iotnotify chat ROOM`` prints the room's recent history, then live
  messages; every line typed is sent (through the moderated input topic).
  End with Ctrl-D or Ctrl-C.
"""

from __future__ import annotations

import errno
import functools
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from iotnotify.cli_client import _device, _Target, _target, _target_options
from iotnotify.cli_output import CommandError, on_stdout_reader_gone, warn
from iotnotify.contract import ChatMessage, Notification, new_chat_cid
from iotnotify.display_text import terminal_text
from iotnotify.errors import ConnectionLost, ContractError, IotNotifyError, Throttled

__all__ = ["chat", "rooms"]


def _api(target: _Target) -> Any:
    from iotnotify.chat import RoomsApi

    return RoomsApi(api_url=target.api_url, id_tokens=target.signed_in(), ca_file=target.ca_file)


def _connect(options: dict[str, Any]) -> tuple[_Target, Any]:
    target = _target(**options, need_password=True)
    try:
        return target, _api(target)
    except IotNotifyError as exc:
        raise CommandError(str(exc)) from exc


def _line(message: ChatMessage, names: dict[str, str]) -> str:
    # The text is whatever the sender typed (the moderator only masks words).
    sender = names.get(message.sender, message.sender)
    return terminal_text(f"{message.ts} {sender}: {message.text}")


def _demo_names(state_file: Path | None) -> dict[str, str]:
    """user id -> demo name, when a local state file is there (for readable lines)."""
    from iotnotify.state_file import DEFAULT_STATE_FILE, LocalState, StateFileError

    try:
        state = LocalState.read(state_file or DEFAULT_STATE_FILE)
    except StateFileError:
        return {}
    return {str(u["sub"]): str(u["name"]) for u in state.users}


def _target_here_too(func: Callable[..., None]) -> Any:
    """A ``rooms`` subcommand that also takes the target options after its name.

    ``iotnotify rooms create lobby --user bob`` is how people type it; click
    only gives a group's options before the subcommand. An option given after
    it wins over the same one given before.
    """

    @_target_options
    @click.pass_obj
    @functools.wraps(func)
    def command(group: dict[str, Any], /, *args: Any, **kwargs: Any) -> None:
        given = {name: kwargs.pop(name) for name in group}
        options = {
            name: given[name] if given[name] is not None else value for name, value in group.items()
        }
        func(options, *args, **kwargs)

    return command


@click.group(invoke_without_command=True)
@_target_options
@click.pass_context
def rooms(ctx: click.Context, /, **options: Any) -> None:
    """List rooms (default), create one, or add a member to yours."""
    ctx.obj = options
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_rooms)


@rooms.command("list")
@_target_here_too
def list_rooms(options: dict[str, Any]) -> None:
    """Public rooms and the private rooms you belong to."""
    _, api = _connect(options)
    try:
        shown = 0
        for room in api.rooms():
            kind = "private" if room.get("private") else "public"
            # The server validates names, but what reaches a terminal is filtered here.
            name, owner = (
                terminal_text(str(room["room"])),
                terminal_text(str(room.get("owner", ""))),
            )
            click.echo(f"{name}\t{kind}\towner {owner}")
            shown += 1
        if not shown:
            warn("no rooms you can see yet; create one: iotnotify rooms create NAME")
    except IotNotifyError as exc:
        raise CommandError(str(exc)) from exc


@rooms.command("create")
@click.argument("room")
@click.option("--private", is_flag=True, help="Only members see and use it.")
@_target_here_too
def create_room(options: dict[str, Any], room: str, private: bool) -> None:
    """Create ROOM; you become its owner."""
    _, api = _connect(options)
    try:
        created = api.create(room, private=private)
    except IotNotifyError as exc:
        raise CommandError(str(exc)) from exc
    click.echo(f"created {created['room']} ({'private' if private else 'public'})")


@rooms.command("add-member")
@click.argument("room")
@click.argument("member", metavar="USER")  # not "user": that is the --user option
@_target_here_too
def add_member(options: dict[str, Any], room: str, member: str) -> None:
    """Add USER (a user id, or a local demo user's name) to ROOM (owner only)."""
    _, api = _connect(options)
    by_name = {name: sub for sub, name in _demo_names(options.get("state_file")).items()}
    try:
        api.add_member(room, by_name.get(member, member))
    except IotNotifyError as exc:
        raise CommandError(str(exc)) from exc
    click.echo(f"added {terminal_text(member)} to {room}")


@click.command()
@_target_options
@click.argument("room")
@click.option("--history", "history_size", default=50, show_default=True, help="Lines of history.")
@click.option(
    "--device",
    default=None,
    callback=lambda _ctx, _param, value: _device(value),
    help="Client-id suffix [default: random].",
)
def chat(room: str, history_size: int, device: str | None, **options: Any) -> None:
    """Chat in ROOM: its history, then live messages; each line you type is sent.

    A dropped connection is rejoined with a new token (with backoff, for as
    long as it takes); the history then shows what came meanwhile, and lines
    typed while away are sent after the rejoin. A line the moderator refuses
    (too long, sent too fast) is said on stderr with the reason.
    """
    from iotnotify.backoff import Backoff
    from iotnotify.chat import RoomConnection

    target, api = _connect(options)
    names = _demo_names(options.get("state_file")) if not options.get("api_url") else {}
    shown: set[str] = set()
    # A line that cannot be printed (its reader gone, a full disk): kept here
    # and raised on the main thread (check_output). Raised in show() itself,
    # on the MQTT client's thread, it ended that thread while chat ran on.
    write_failed: list[OSError] = []

    def show(message: ChatMessage) -> None:
        if message.id not in shown and not write_failed:
            shown.add(message.id)
            try:
                click.echo(_line(message, names))
            except OSError as exc:
                write_failed.append(exc)

    def check_output() -> None:
        if write_failed:
            raise write_failed[0]

    # `chat ROOM | head -1`: end when the reader does, even in a quiet room
    # (check_output then exits quietly, as for a write into the closed pipe).
    on_stdout_reader_gone(
        lambda: write_failed.append(BrokenPipeError(errno.EPIPE, "stdout's reader has gone"))
    )

    def rejected(note: Notification) -> None:
        # The moderator's word on a line of ours it refused (too long, too
        # fast, empty): without it the line would just never appear.
        warn(f"not sent to {room}: {terminal_text(note.body)}")

    # stdin is read on its own thread, so that a dropped connection is noticed
    # (and said) while nothing is typed. Bytes, decoded a line at a time: a
    # line that is not UTF-8 (a Latin-1 file, a binary paste) is reported and
    # skipped, not a UnicodeDecodeError (UTF-8 locale) or a lone-surrogate
    # UnicodeEncodeError (C locale's surrogateescape) traceback.
    typed: queue.Queue[str | None] = queue.Queue()

    def read_stdin() -> None:
        # os.read on the descriptor, not sys.stdin.buffer: a daemon thread
        # blocked in BufferedReader's read holds its lock, and an exit while
        # stdin is still open (an error, a full disk) then aborted the
        # interpreter at shutdown ("Fatal Python error: _enter_buffered_busy",
        # status 134) when it closed sys.stdin.
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, ValueError, OSError):  # started with stdin closed
            typed.put(None)
            return
        rest = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the terminal went away
                chunk = b""
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop() if chunk else b""
            for raw in lines:
                text = raw.decode("utf-8", "surrogateescape").rstrip("\r\n")
                if text.strip():
                    typed.put(text)
            if not chunk:
                break
        typed.put(None)

    def catch_up(limit: int) -> None:
        messages, _ = api.history(room, limit=min(limit, 100))
        for message in messages:
            show(message)
        check_output()

    try:
        if history_size > 0:
            catch_up(history_size)
        threading.Thread(target=read_stdin, name="chat-stdin", daemon=True).start()
        backoff = Backoff()
        pending: str | None = None  # a line typed while the connection was down
        # Its cid, made once: sent again after a rejoin, the line keeps it, so
        # that if the first send did arrive the moderator drops the copy.
        pending_cid = new_chat_cid()
        joined_before = False
        while True:
            try:
                connection = RoomConnection(
                    api.token(room),
                    on_message=show,
                    on_rejected=rejected,
                    device=device,
                    ca_file=target.ca_file,
                )
            except (ConnectionLost, Throttled) as exc:
                delay = backoff.next_delay()
                warn(f"cannot join {room}: {exc} (retrying in {delay:.1f} s)")
                time.sleep(delay)
                continue
            with connection:
                if joined_before:
                    catch_up(100)  # what was said while away (shown once, by id)
                    warn(f"rejoined {room}")
                else:
                    warn(f"joined {room}; type to send, Ctrl-D to leave")
                joined_before = True
                backoff.reset()
                ended = False
                while not connection.closed and not write_failed:
                    if pending is None:
                        try:
                            pending = typed.get(timeout=0.5)
                        except queue.Empty:
                            continue
                        if pending is None:
                            ended = True
                            break
                    try:
                        connection.send(pending, cid=pending_cid)
                    except ContractError as exc:
                        warn(f"not sent: {exc}")
                    except ConnectionLost:
                        break  # kept in pending: sent after the rejoin
                    pending = None
                    pending_cid = new_chat_cid()
                if ended:
                    # stdin ended (Ctrl-D, or a pipe): give the last messages a
                    # moment to come back.
                    connection.wait_closed(1.0)
                    check_output()
                    return
            check_output()
            warn(f"disconnected from {room}; rejoining")
    except KeyboardInterrupt:
        warn("left")
    except IotNotifyError as exc:
        raise CommandError(str(exc)) from exc
