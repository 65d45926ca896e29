"""``iotnotify cost``: the monthly AWS estimate on the command line.

Registered lazily on the main group by :mod:`iotnotify.cli` (only this
command loads :mod:`iotnotify.cost` and rich).
"""

from __future__ import annotations

import json
from typing import Any

import click

__all__ = ["cost"]


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


@click.command()
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
