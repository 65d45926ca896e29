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


def _title(value: str) -> str:
    from iotnotify.contract import validate_title
    from iotnotify.errors import ContractError

    try:
        return validate_title(value)  # the same rule as the publisher and POST /notify
    except ContractError as exc:
        raise click.BadParameter(str(exc)) from exc


@cli.command()
@click.option(
    "--user",
    "users",
    multiple=True,
    help="Recipient: a demo name (local), a sign-in e-mail or a user id; repeat.",
)
@click.option("--broadcast", is_flag=True, help="Send to everyone instead.")
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
    from iotnotify.sending import publisher_for_aws, publisher_for_local

    if users and broadcast:
        raise click.UsageError("give --user or --broadcast, not both")
    if not users and not broadcast:
        raise click.UsageError("give --user (one or more) or --broadcast")
    kind = kind or ("broadcast" if broadcast else "notification")
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


# `iotnotify cost` options: the two headline figures keep short names; every
# other field of cost.Load becomes --field-name, so no assumption is hidden.
_COST_SHORT = {
    "users": "--users",
    "notifications_per_user_per_day": "--per-day",
    "connected_hours_per_day": "--connected-hours",
    "message_bytes": "--message-bytes",
}


def _cost_options(func: Any) -> Any:
    from dataclasses import MISSING, fields

    from iotnotify.cost import COGNITO_PLANS, Load

    for spec in reversed(fields(Load)):
        name = _COST_SHORT.get(spec.name, "--" + spec.name.replace("_", "-"))
        default = spec.default if spec.default is not MISSING else None
        if spec.name == "users":
            default = 1000
        elif spec.name == "notifications_per_user_per_day":
            default = 10.0
        if isinstance(default, bool):
            flag = f"{name}/--no-{name[2:]}"
            func = click.option(flag, spec.name, default=default, show_default=True)(func)
            continue
        if spec.name == "cognito_plan":
            kind: Any = click.Choice(COGNITO_PLANS)
        elif isinstance(default, int) and not isinstance(default, bool):
            kind = click.IntRange(min=0)
        else:
            kind = click.FloatRange(min=0)
        func = click.option(name, spec.name, type=kind, default=default, show_default=True)(func)
    return func


@cli.command()
@_cost_options
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
def cost(as_json: bool, **assumptions: Any) -> None:
    """Estimate the monthly AWS bill for a load, from dated list prices with volume tiers.

    Every assumption is an option; the output lists them all with the prices used.
    """
    from dataclasses import asdict

    from iotnotify.cost import PRICE_SOURCES, PRICES_AS_OF, Load, estimate, skip_offline_saving

    load = Load(**assumptions)
    try:
        figures = estimate(load)
        saving = skip_offline_saving(load)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    online = load.connected_hours_per_day / 24
    if as_json:
        click.echo(
            json.dumps(
                {
                    "pricesAsOf": PRICES_AS_OF,
                    "assumptions": asdict(load),
                    "items": [asdict(item) for item in figures.items],
                    "totalUsd": figures.total_usd,
                    "apiGatewayWebSocketEquivalentUsd": figures.apigw_websocket_equivalent_usd,
                    "skipOffline": {"onlineShare": online, "savingUsd": saving},
                }
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"iotnotify on AWS, {load.days} days, {load.users:,} users, "
        f"{load.notifications_per_user_per_day:g} notifications/user/day "
        f"(us-east-1 list prices of {PRICES_AS_OF})"
    )
    for column, justify in (("service", "left"), ("item", "left"), ("quantity", "right"),
                            ("unit", "left"), ("USD", "right")):  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for item in figures.items:
        table.add_row(
            item.service, item.what, f"{item.quantity:,.2f}", item.unit, f"{item.usd:,.2f}"
        )
    table.add_row("[bold]total[/bold]", "", "", "", f"[bold]{figures.total_usd:,.2f}[/bold]")
    table.add_row(
        "(comparison)", "API Gateway WebSockets instead of IoT Core", "", "",
        f"{figures.apigw_websocket_equivalent_usd:,.2f}",
    )  # fmt: skip
    assumptions_table = Table(title="assumptions (each one an option)")
    assumptions_table.add_column("option")
    assumptions_table.add_column("value", justify="right")
    for name, value in asdict(load).items():
        assumptions_table.add_row(_COST_SHORT.get(name, "--" + name.replace("_", "-")), f"{value}")
    prices_table = Table(title=f"list prices used (us-east-1, {PRICES_AS_OF}; volume tiers)")
    prices_table.add_column("price")
    prices_table.add_column("USD per unit, by monthly volume")
    for name, tiers in _price_rows():
        prices_table.add_row(name, tiers)
    out = Console()
    out.print(table)
    verdict = "saves" if saving >= 0 else "costs"
    out.print(
        f"Publisher(skip_offline=True) with {online:.0%} of users online "
        f"(--connected-hours {load.connected_hours_per_day:g}) {verdict} "
        f"${abs(saving):,.2f} a month"
        + (" (this estimate already uses it)" if load.skip_offline else "")
    )
    out.print(assumptions_table)
    out.print(prices_table)
    out.print("Sources: " + ", ".join(PRICE_SOURCES))


def _price_rows() -> list[tuple[str, str]]:
    from dataclasses import fields

    from iotnotify.cost import PRICES, Tier

    def show(tiers: tuple[Tier, ...]) -> str:
        return "; ".join(
            f"{t.price:.10g}" + (f" up to {t.up_to:,.0f}" if t.up_to is not None else " above")
            for t in tiers
        )

    rows: list[tuple[str, str]] = []
    for spec in fields(PRICES):
        value = getattr(PRICES, spec.name)
        if isinstance(value, dict):
            rows.extend((f"{spec.name} ({plan})", show(tiers)) for plan, tiers in value.items())
        else:
            rows.append((spec.name, show(value)))
    return rows


def _register_optional_commands() -> None:
    from iotnotify.cdk_commands import deploy, destroy, synth
    from iotnotify.cli_chat import chat, rooms
    from iotnotify.cli_client import listen, tray

    for command in (deploy, destroy, synth, listen, tray, rooms, chat):
        cli.add_command(command)


_register_optional_commands()


def main() -> None:
    cli()
