"""The ``iotnotify`` command line.

Subcommands import what they need when they run, so ``iotnotify send`` on a
game server does not load moto, the emulator or the CDK.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from iotnotify.errors import IotNotifyError

__all__ = ["cli", "main"]


def _error_line(label: str, text: str) -> None:
    # click's own styling, not rich: rich costs ~7 MiB in every always-on
    # `iotnotify listen`, and only `cost` draws a table.
    click.echo(f"{click.style(label, fg='red')} {text}", err=True)


class _Group(click.Group):
    """Turns this package's errors into one clear line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        from iotnotify.state_file import StateFileError

        try:
            return super().invoke(ctx)
        except (IotNotifyError, StateFileError) as exc:
            _error_line("error:", str(exc))
            ctx.exit(1)


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
    type=click.IntRange(0, 65535),
    help="API and web port; moto and the IoT emulator use the next three. 0 = free ports.",
)
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the state file [default: .iotnotify/local.json].",
)
@click.option("--app", default="iotnotify", show_default=True)
@click.option("--stage", default="local", show_default=True)
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
@click.option("--fresh", is_flag=True, help="Empty the data directory first: start clean.")
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
    """Run the whole stack offline: moto, the IoT emulator, the API and the web page."""
    run_local = _offline_stack()
    sys.exit(
        run_local(
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
    )


# The offline stack (emulator/iotnotify_local) is a layer above the SDK and
# wires the emulator and the handlers; the SDK must not import it. It plugs
# itself in through this entry point (pyproject.toml), loaded only when
# `iotnotify local` runs.
OFFLINE_STACK_ENTRY_POINT = "iotnotify.offline_stack"


def _offline_stack() -> Any:
    from importlib.metadata import entry_points

    found = entry_points(group=OFFLINE_STACK_ENTRY_POINT, name="run_local")
    if not found:
        raise click.ClickException(
            f"no offline stack is registered (entry point group {OFFLINE_STACK_ENTRY_POINT!r}): "
            "reinstall iotnotify with the [local] extra: pip install -e '.[local]' "
            "(or `make setup` in a checkout)"
        )
    try:
        return next(iter(found)).load()
    except ImportError as exc:
        raise click.ClickException(
            f"the offline stack is not installed ({exc.name} is missing): "
            "pip install 'iotnotify[local]'"
        ) from exc


@cli.command()
@click.option("--user", "users", multiple=True, help="Recipient (demo name or user id); repeat.")
@click.option("--broadcast", is_flag=True, help="Send to everyone instead.")
@click.option("--title", required=True)
@click.option("--type", "kind", default="notification", show_default=True)
@click.option("--data", default=None, help="JSON object attached to the notification.")
@click.option("--ephemeral", is_flag=True, help="Do not keep it in the inbox.")
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Local stack to send through [default: .iotnotify/local.json].",
)
@click.option("--stage", default=None, help="Send through this AWS stage instead of local.")
@click.option("--app", default="iotnotify", show_default=True)
@click.option("--region", default=None, help="AWS region (with --stage).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.argument("body", required=False, default="")
def send(
    users: tuple[str, ...],
    broadcast: bool,
    title: str,
    kind: str,
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
    from iotnotify.sending import publisher_for_aws, publisher_for_local

    if bool(users) == broadcast:
        raise click.UsageError("give --user (one or more) or --broadcast")
    try:
        payload = json.loads(data) if data else {}
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--data") from exc
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
            result = {
                "id": results[0].notification_id,
                "results": [
                    {"userId": r.user_id, "ok": r.ok, **({"error": r.error} if r.error else {})}
                    for r in results
                ],
            }
    if as_json:
        click.echo(json.dumps(result))
        return
    failed = [r for r in result.get("results", []) if not r["ok"]]
    for entry in failed:
        _error_line("failed", f"{entry['userId']}: {entry['error']}")
    click.echo(f"sent {result['id']}")
    if failed:
        sys.exit(1)


@cli.command()
@click.option("--users", type=click.IntRange(min=0), default=1000, show_default=True)
@click.option(
    "--per-day",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Notifications per user per day.",
)
@click.option(
    "--connected-hours",
    type=click.FloatRange(0, 24),
    default=24.0,
    show_default=True,
    help="Hours per day each user is connected.",
)
@click.option("--message-bytes", type=click.IntRange(min=1), default=512, show_default=True)
def cost(users: int, per_day: float, connected_hours: float, message_bytes: int) -> None:
    """Estimate the monthly AWS bill for a load, from list prices."""
    from rich.console import Console
    from rich.table import Table

    from iotnotify.cost import Load, estimate

    figures = estimate(
        Load(
            users=users,
            notifications_per_user_per_day=per_day,
            connected_hours_per_day=connected_hours,
            message_bytes=message_bytes,
        )
    )
    table = Table(title=f"iotnotify, 30 days, {users:,} users, {per_day:g} notifications/user/day")
    table.add_column("item")
    table.add_column("quantity", justify="right")
    table.add_column("USD", justify="right")
    table.add_row(
        "IoT connectivity (minutes)",
        f"{figures.connection_minutes:,.0f}",
        f"{figures.iot_connectivity_usd:,.2f}",
    )
    table.add_row(
        "IoT messaging (5 KB units)",
        f"{figures.iot_messages:,.0f}",
        f"{figures.iot_messaging_usd:,.2f}",
    )
    table.add_row(
        "API Gateway REST requests", f"{figures.api_requests:,.0f}", f"{figures.api_usd:,.2f}"
    )
    table.add_row("[bold]total[/bold]", "", f"[bold]{figures.total_usd:,.2f}[/bold]")
    table.add_row(
        "(same on API Gateway WebSockets)", "", f"{figures.apigw_websocket_equivalent_usd:,.2f}"
    )
    Console().print(table)


def _register_optional_commands() -> None:
    from iotnotify.cdk_commands import deploy, destroy, synth
    from iotnotify.cli_client import listen, tray

    for command in (deploy, destroy, synth, listen, tray):
        cli.add_command(command)


_register_optional_commands()


def main() -> None:
    cli()
