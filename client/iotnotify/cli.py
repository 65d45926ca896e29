"""The ``iotnotify`` command line.

Subcommands import what they need when they run, so ``iotnotify send`` on a
game server does not load moto, the emulator or the CDK.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import click

from iotnotify.cli_output import (
    INTERRUPTED_EXIT_STATUS,
    CommandError,
    FilePath,
    error,
    silence_stdout,
    stdout_reader_gone,
    warn,
)
from iotnotify.errors import IotNotifyError

__all__ = ["cli", "main"]


# Commands that live in their own modules, imported only when that command
# runs (or a --help lists it), click's pattern for lazily loaded subcommands:
# `iotnotify listen` and `tray` are always-on processes and should not keep
# the chat, cost and CDK commands' modules and options resident (issue 11 §2).
_LAZY_COMMANDS: Final = {
    "listen": "iotnotify.cli_client:listen",
    "tray": "iotnotify.cli_client:tray",
    "rooms": "iotnotify.cli_chat:rooms",
    "chat": "iotnotify.cli_chat:chat",
    "cost": "iotnotify.cli_cost:cost",
    "deploy": "iotnotify.cdk_commands:deploy",
    "destroy": "iotnotify.cdk_commands:destroy",
    "synth": "iotnotify.cdk_commands:synth",
}


class _Group(click.Group):
    """Turns this package's errors into one clear line and exit status 1, and
    loads the commands of :data:`_LAZY_COMMANDS` on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _LAZY_COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attribute = target.split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError:
            name = click.utils.make_str(args[0]) if args else ""
            if not name or name.startswith("-") or self.get_command(ctx, name) is not None:
                raise
            # click suggests only from the commands registered up front
            # (``self.commands``: local, send), so "lsiten" got "send"; the
            # suggestion covers the lazily loaded ones too.
            import difflib  # only for a mistyped command: not resident in listen/tray

            close = difflib.get_close_matches(name, self.list_commands(ctx))
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise click.UsageError(f"No such command {name!r}.{hint}", ctx) from None

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        # `iotnotify --help | head -1`: the group's own --help and --version
        # print while its arguments are parsed, before any command runs.
        try:
            with _stdout_reader_may_leave():
                return super().make_context(info_name, args, parent, **extra)
        except KeyboardInterrupt:
            # As in invoke(), not click's "Aborted!" and status 1.
            warn("interrupted")
            raise click.exceptions.Exit(INTERRUPTED_EXIT_STATUS) from None

    def invoke(self, ctx: click.Context) -> Any:
        from iotnotify.state_file import StateFileError

        try:
            with _stdout_reader_may_leave():
                result = super().invoke(ctx)
                # What a command left in stdout's buffer meets a gone reader
                # here, not in Python's flush at exit (where it would print
                # "Exception ignored ... BrokenPipeError"). None: started
                # with stdout closed (`>&-`), where output goes nowhere.
                if sys.stdout is not None:
                    sys.stdout.flush()
                return result
        except (IotNotifyError, StateFileError) as exc:
            error(str(exc))
            ctx.exit(1)
        except OSError as exc:
            # Output that cannot be written (a full disk: ENOSPC, a terminal
            # that went away: EIO), or any other OS failure no command
            # handled: one line and status 1, as every other error, not a
            # traceback. What stdout still buffers would fail again at exit.
            error(str(exc))
            silence_stdout()
            ctx.exit(1)
        except KeyboardInterrupt:
            # Ctrl-C that a command did not handle itself (listen, chat and
            # tray stop on it as their way out; `local` cleans up first):
            # one line and 128 + SIGINT, what a shell reports for a command
            # the signal ended, instead of click's "Aborted!" and status 1.
            warn("interrupted")
            ctx.exit(INTERRUPTED_EXIT_STATUS)


@contextmanager
def _stdout_reader_may_leave() -> Iterator[None]:
    """End the command quietly, with exit status 0, when stdout's reader has
    gone (``iotnotify rooms | head -1``, ``send --json | head -0``): no
    traceback, no "Exception ignored" line, for every command in one place.

    Status 0 rather than 141 (the shell's code for a process SIGPIPE killed,
    what ``yes | head`` leaves): the reader stopping reading is the reader's
    choice, not this command's failure, so a script under ``set -o
    pipefail`` that takes the first line goes on; ``listen`` has always
    ended that way. (click's own handler exits 1, which such a script reads
    as an error of ours.)
    """
    try:
        yield
    except OSError as exc:
        if not stdout_reader_gone(exc):
            raise
        silence_stdout()
        raise click.exceptions.Exit(0) from None


@click.group(cls=_Group)
@click.version_option(package_name="iotnotify")
def cli() -> None:
    """Private per-user push notifications on AWS IoT Core (and offline)."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    default=8700,
    show_default=True,
    # P..P+3 must all be ports: 65532 is the highest P.
    type=click.IntRange(0, 65532),
    help="API and web port; moto and the IoT emulator use the next three. 0 = free ports.",
)
@click.option(
    "--state-file",
    type=FilePath(),
    default=None,
    help="Where to write the state file [default: .iotnotify/local.json].",
)
@click.option(
    "--app",
    default="iotnotify",
    show_default=True,
    callback=lambda _ctx, param, value: _name(value, str(param.name)),
)
@click.option(
    "--stage",
    default="local",
    show_default=True,
    callback=lambda _ctx, param, value: _name(value, str(param.name)),
)
@click.option(
    "--tls",
    is_flag=True,
    help="Vend wss:// URLs (clients must trust the generated CA) instead of ws://.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep users, passwords, ids, inbox, rooms, the API key and the CA here across "
    "restarts [default: .iotnotify/data].",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Discard the saved state and CA in the data directory first (nothing else "
    "there): start clean.",
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a non-loopback --host. Local mode trusts everyone who can reach it; "
    "moto stays on 127.0.0.1.",
)
def local(
    host: str,
    port: int,
    state_file: Path | None,
    app: str,
    stage: str,
    tls: bool,
    data_dir: Path | None,
    fresh: bool,
    allow_remote: bool,
) -> None:
    """Run the whole stack offline: moto, the IoT emulator, the API and the web page.

    Ctrl-C stops it (status 0); during start-up, before "ready.", it stops
    what had started and exits with status 130.
    """
    try:
        run_local = _offline_stack()
        status = run_local(
            host=host,
            port=port,
            state_file=state_file,
            app=app,
            stage=stage,
            tls=tls,
            data_dir=data_dir,
            fresh=fresh,
            allow_remote=allow_remote,
        )
    except KeyboardInterrupt:
        # Ctrl-C while the stack's modules load or its ports are checked,
        # before anything runs (once it starts, run_local handles Ctrl-C):
        # one line and 128 + SIGINT, not click's "Aborted!" and status 1.
        warn("interrupted while starting; nothing had started yet")
        sys.exit(INTERRUPTED_EXIT_STATUS)
    sys.exit(status)


# The offline stack (emulator/iotnotify_local) is a layer above the SDK and
# wires the emulator and the handlers; the SDK must not import it. It plugs
# itself in through this entry point (pyproject.toml), loaded only when
# `iotnotify local` runs.
OFFLINE_STACK_ENTRY_POINT = "iotnotify.offline_stack"


def _offline_stack() -> Any:
    from importlib.metadata import entry_points

    found = entry_points(group=OFFLINE_STACK_ENTRY_POINT, name="run_local")
    if not found:
        raise CommandError(
            f"no offline stack is registered (entry point group {OFFLINE_STACK_ENTRY_POINT!r}): "
            "reinstall iotnotify with the [local] extra: pip install -e '.[local]' "
            "(or `make setup` in a checkout)"
        )
    try:
        return next(iter(found)).load()
    except ImportError as exc:
        raise CommandError(
            f"the offline stack is not installed ({exc.name} is missing): "
            "pip install 'iotnotify[local]'"
        ) from exc


def _name(value: str, what: str) -> str:
    from iotnotify.contract import validate_name
    from iotnotify.errors import ContractError

    try:
        # Checked before the stack makes its data directory or starts anything.
        return validate_name(value, what=f"{what} name")
    except ContractError as exc:
        raise click.BadParameter(str(exc)) from exc


def _title(value: str) -> str:
    from iotnotify.contract import validate_title
    from iotnotify.errors import ContractError

    try:
        return _utf8(validate_title(value))  # the same rule as the publisher and POST /notify
    except ContractError as exc:
        raise click.BadParameter(str(exc)) from exc


def _utf8(value: str) -> str:
    """``value`` if it is text; a ``click.BadParameter`` for an argument whose bytes
    were not UTF-8 (Python hands those over as lone surrogates, which reached
    the user as "notification is not valid JSON: ... lone surrogate")."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raw = value[exc.start : exc.end].encode("utf-8", "surrogateescape")
        raise click.BadParameter(f"is not valid UTF-8 text (bytes {raw!r})") from exc
    return value


@cli.command()
@click.option(
    "--user",
    "users",
    multiple=True,
    help="Recipient: a demo name (local), a sign-in e-mail or a user id; repeat.",
)
@click.option(
    "--broadcast",
    is_flag=True,
    help="Send to everyone connected now instead (kept in no inbox: no catch-up shows it).",
)
@click.option("--title", required=True, callback=lambda _c, _p, value: _title(value))
@click.option(
    "--type",
    "kind",
    default=None,
    help="Notification type [default: notification; broadcast with --broadcast].",
)
@click.option("--data", default=None, help="JSON object attached to the notification.")
@click.option("--ephemeral", is_flag=True, help="Do not keep it in the inbox.")
@click.option(
    "--state-file",
    type=FilePath(),
    default=None,
    help="Local stack to send through [default: .iotnotify/local.json].",
)
@click.option("--stage", default=None, help="Send through this AWS stage instead of local.")
@click.option("--app", default="iotnotify", show_default=True)
@click.option("--region", default=None, help="AWS region (with --stage).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.argument("body", required=False, default="", callback=lambda _c, _p, value: _utf8(value))
def send(
    users: tuple[str, ...],
    broadcast: bool,
    title: str,
    kind: str | None,
    data: str | None,
    ephemeral: bool,
    state_file: Path | None,
    stage: str | None,
    app: str,
    region: str | None,
    as_json: bool,
    body: str,
) -> None:
    """Send a notification to users (or everyone) through the local stack or AWS."""
    try:
        from iotnotify.publisher import delivery_report
        from iotnotify.sending import publisher_for_aws, publisher_for_local
    except ModuleNotFoundError as exc:
        if exc.name not in ("boto3", "botocore"):
            raise
        # The core install is what a subscriber needs; publishing is the [aws] extra.
        raise CommandError(
            f"sending needs the [aws] extra ({exc.name} is not installed): "
            "pip install 'iotnotify[aws]'"
        ) from exc

    if users and broadcast:
        raise click.UsageError("give --user or --broadcast, not both")
    if not users and not broadcast:
        raise click.UsageError("give --user (one or more) or --broadcast")
    kind = kind or ("broadcast" if broadcast else "notification")
    from iotnotify.contract import loads_strict
    from iotnotify.errors import InvalidJson

    try:
        # The same strict JSON as POST /notify: no NaN, no lone surrogates,
        # at most MAX_JSON_DEPTH levels (json.loads alone raised RecursionError).
        payload = loads_strict(data, what="--data") if data else {}
    except InvalidJson as exc:
        raise click.BadParameter(str(exc), param_hint="--data") from exc
    if not isinstance(payload, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--data")
    if stage:
        publisher, resolve = publisher_for_aws(app=app, stage=stage, region=region)
    else:
        publisher, resolve = publisher_for_local(state_file)
    with publisher:
        if broadcast:
            note = publisher.broadcast(title=title, body=body, type=kind, data=payload)
            result: dict[str, Any] = {"id": note.id, "target": "broadcast"}
        else:
            ids = [resolve(user) for user in users]
            results = publisher.notify_many(
                ids, title=title, body=body, type=kind, data=payload, ephemeral=ephemeral
            )
            result = delivery_report(results)
    results = result.get("results", [])
    failed = [r for r in results if not r["ok"]]
    if as_json:
        click.echo(json.dumps(result))
        # The same exit status as without --json: 1 when someone was not reached.
        if failed:
            sys.exit(1)
        return
    for entry in failed:
        # Not delivered live, but in the inbox: not lost. A client catches up
        # only when it (re)connects, and only a minute back, so one that stays
        # connected does not show it: say both.
        kept = (
            " (stored in the inbox, not lost: catch-up from before it shows it; "
            "clients connected now did not get it live)"
            if entry.get("stored")
            else ""
        )
        error(f"not sent to {entry['userId']}: {entry['error']}{kept}")
    # "sent" only for what reached someone: a user whose publish failed after
    # the inbox write is counted as failed, not as sent.
    if not failed:
        click.echo(f"sent {result['id']}")
    elif len(failed) < len(results):
        click.echo(f"sent {result['id']} to {len(results) - len(failed)} of {len(results)} users")
    if failed:
        sys.exit(1)


def main() -> None:
    """The ``iotnotify`` console script."""
    if sys.argv[1:2] == ["tray"] and "--help" not in sys.argv:
        # The always-on tray runs with one glibc malloc arena: on glibc this
        # starts the same command again with the limit set, before anything
        # is read or opened (iotnotify.malloc_arenas). Here, not in the
        # command itself, so that calling the command in-process (click's
        # test runner, an embedding app) never replaces that process.
        from iotnotify.malloc_arenas import limit_malloc_arenas

        limit_malloc_arenas()
    cli()
