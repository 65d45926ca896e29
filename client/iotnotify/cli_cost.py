"""``iotnotify cost``: the monthly AWS estimate on the command line.

Registered lazily on the main group by :mod:`iotnotify.cli` (only this
command loads :mod:`iotnotify.cost`).

The tables are plain aligned text drawn here, not rich's: rich and the
packages it pulls in (pygments, markdown-it-py) are about 13 MB, six times
the other dependencies of the core install a desktop subscriber gets
(issue 11 §1), for three tables.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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


# The highest message a notification can be (AWS IoT Core's 128 KB payload
# limit, iotnotify.contract.MAX_PAYLOAD_BYTES; not imported: this module is
# loaded for `--help` too and the number is fixed by AWS).
_MAX_MESSAGE_BYTES = 128 * 1024
# POST /notify takes at most this many recipients per request
# (iotnotify_handlers.notify_requests.MAX_RECIPIENTS; the SDK imports no handler).
_MAX_RECIPIENTS_PER_REQUEST = 1000
_SECONDS_PER_DAY = 86_400


class _Finite(click.FloatRange):
    """A :class:`click.FloatRange` that also refuses ``nan`` (NaN fails every
    comparison, so the range alone let it through to the arithmetic)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if number != number:  # NaN, the one float unequal to itself
            self.fail(f"{value!r} is not a number.", param, ctx)
        return number


def _share(what: str) -> tuple[click.ParamType[Any] | None, str]:
    return _Finite(0, 1), f"Share of {what} (0..1)."


# Every field of cost.Load: the range `iotnotify cost` accepts (sane bounds:
# AWS's own limits where there is one; click's --help prints the range) and
# the help text with its unit; None: the type is set in _cost_options.
_COST_OPTIONS: dict[str, tuple[click.ParamType[Any] | None, str]] = {
    "users": (click.IntRange(0, 1_000_000_000), "Users who subscribe (people)."),
    "notifications_per_user_per_day": (
        _Finite(0, _SECONDS_PER_DAY),
        "Notifications each user receives per day (at most one a second).",
    ),
    "connected_hours_per_day": (
        _Finite(0, 24),
        "Hours per day each user's client is connected.",
    ),
    "message_bytes": (
        click.IntRange(1, _MAX_MESSAGE_BYTES),
        "Bytes per notification (AWS IoT's limit is 128 KB; metered in 5 KB units).",
    ),
    "connects_per_user_per_day": (
        _Finite(0, _SECONDS_PER_DAY),
        "(Re)connects per user per day (AWS IoT allows one a second per client id); each "
        "is GET /token, GET /notifications, CONNECT and the SUBSCRIBEs.",
    ),
    "topics_per_connection": (
        click.IntRange(1, 50),
        "Topics each connection subscribes to (AWS IoT allows 50 per connection).",
    ),
    "monthly_active_fraction": _share("users who sign in or refresh a token in the month"),
    "cognito_plan": (None, "Cognito feature plan (priced per monthly active user)."),
    "inbox_fraction": _share("notifications kept in the inbox (not ephemeral)"),
    "inbox_ttl_days": (
        _Finite(0, 365),
        "Days a notification stays in the inbox (DynamoDB TTL).",
    ),
    "api_notify_fraction": _share("notifications sent through POST /notify, not the publisher"),
    "recipients_per_notify_request": (
        click.IntRange(1, _MAX_RECIPIENTS_PER_REQUEST),
        "Users per POST /notify request (the API takes at most 1000).",
    ),
    "lambda_memory_mb": (
        click.IntRange(128, 10_240),
        "Memory per Lambda function in MB (Lambda's range).",
    ),
    "lambda_ms_per_request": (
        _Finite(1, 900_000),
        "Milliseconds each Lambda invocation runs (Lambda stops one at 15 min).",
    ),
    "log_bytes_per_request": (
        click.IntRange(0, 1_000_000),
        "Bytes of CloudWatch Logs per request (Lambda's lines and an access-log line).",
    ),
    "log_retention_days": (
        click.IntRange(1, 3653),
        "Days CloudWatch Logs keeps them (3653: its longest fixed retention).",
    ),
    "xray_sampled_fraction": _share("requests traced by X-Ray beyond the first each second"),
    "days": (click.IntRange(1, 31), "Days in the billed month."),
    "skip_offline": (
        click.BOOL,
        "Price Publisher(skip_offline=True): no live publish to users who are away.",
    ),
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
        # A KeyError here is a new Load field without a range and help text:
        # add it to _COST_OPTIONS (tests/unit/test_cost.py checks every one).
        kind: Any
        kind, text = _COST_OPTIONS[spec.name]
        if isinstance(default, bool):
            flag = f"{name}/--no-{name[2:]}"
            option = click.option(flag, spec.name, default=default, show_default=True, help=text)
            func = option(func)
            continue
        if spec.name == "cognito_plan":
            kind = click.Choice(COGNITO_PLANS)
        func = click.option(
            name, spec.name, type=kind, default=default, show_default=True, help=text
        )(func)
    return func


@click.command()
@_cost_options
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
def cost(as_json: bool, **assumptions: Any) -> None:
    """Estimate the monthly AWS bill for a load, from dated list prices with volume tiers.

    Every assumption is an option; the output lists them all with the prices used.
    """
    from dataclasses import asdict
    from decimal import Decimal

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
                    # The same price table and sources the text output prints.
                    "prices": _price_table(),
                    "priceSources": list(PRICE_SOURCES),
                }
            )
        )
        return
    items = [
        (item.service, item.what, f"{item.quantity:,.2f}", item.unit, f"{item.usd:,.2f}")
        for item in figures.items
    ]
    footer = [
        ("total", "", "", "", f"{figures.total_usd:,.2f}"),
        ("(comparison)", "API Gateway WebSockets instead of IoT Core", "", "",
         f"{figures.apigw_websocket_equivalent_usd:,.2f}"),
    ]  # fmt: skip
    click.echo(
        _table(
            f"iotnotify on AWS, {load.days} days, {load.users:,} users, "
            f"{load.notifications_per_user_per_day:g} notifications/user/day "
            f"(us-east-1 list prices of {PRICES_AS_OF})",
            ("service", "item", "quantity", "unit", "USD"),
            items,
            footer=footer,
            right={2, 4},
        )
    )
    # Rows are rounded one by one, so they may add up to a cent or two more or
    # less than the total of the unrounded amounts: say so instead of letting
    # a reader find a total that does not add up.
    # (Summed as printed, so the note agrees with the figures on the screen.)
    rows_sum = sum(Decimal(f"{item.usd:.2f}") for item in figures.items)
    if rows_sum != Decimal(f"{figures.total_usd:.2f}"):
        click.echo(
            f"(each row is rounded to the cent; the rows add up to ${rows_sum:,.2f}, "
            f"the total is the sum before rounding)"
        )
    verdict = "saves" if saving >= 0 else "costs"
    click.echo(
        f"\nPublisher(skip_offline=True) with {online:.0%} of users online "
        f"(--connected-hours {load.connected_hours_per_day:g}) {verdict} "
        f"${abs(saving):,.2f} a month"
        + (" (this estimate already uses it)" if load.skip_offline else "")
    )
    assumptions_rows = [
        (_COST_SHORT.get(name, "--" + name.replace("_", "-")), f"{value}")
        for name, value in asdict(load).items()
    ]
    click.echo()
    click.echo(
        _table("assumptions (each one an option)", ("option", "value"), assumptions_rows, right={1})
    )
    click.echo()
    click.echo(
        _table(
            f"list prices used (us-east-1, {PRICES_AS_OF}; volume tiers)",
            ("price", "USD per unit, by monthly volume"),
            _price_rows(),
        )
    )
    click.echo("\nSources: " + ", ".join(PRICE_SOURCES))


def _table(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    footer: Sequence[Sequence[str]] = (),
    right: set[int] | None = None,
) -> str:
    """``rows`` under ``headers`` in aligned columns, two spaces apart, ruled
    under the header and above ``footer``; columns in ``right`` right-justified.

    Never wrapped or cut to the terminal's width: piped into a file or
    ``grep``, every figure stays whole.
    """
    every = [headers, *rows, *footer]
    widths = [max(len(row[column]) for row in every) for column in range(len(headers))]
    flush_right = right or set()

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if column in flush_right else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    lines = [title, line(headers), rule, *(line(row) for row in rows)]
    if footer:
        lines += [rule, *(line(row) for row in footer)]
    return "\n".join(lines)


def _price_table() -> dict[str, Any]:
    """The prices used, for ``--json``: ``{name: [{"upTo": n | None, "usd": p}, ...]}``,
    per feature plan for Cognito (``{"cognito_mau": {"lite": [...], ...}}``)."""
    from dataclasses import fields

    from iotnotify.cost import PRICES, Tier

    def bands(tiers: tuple[Tier, ...]) -> list[dict[str, float | None]]:
        # 12 significant digits: 0.80 / 1e6 is 8.000000000000001e-07 in binary.
        return [{"upTo": tier.up_to, "usd": float(f"{tier.price:.12g}")} for tier in tiers]

    table: dict[str, Any] = {}
    for spec in fields(PRICES):
        value = getattr(PRICES, spec.name)
        if isinstance(value, dict):
            table[spec.name] = {plan: bands(tiers) for plan, tiers in value.items()}
        else:
            table[spec.name] = bands(value)
    return table


def _price_rows() -> list[tuple[str, str]]:
    from dataclasses import fields

    from iotnotify.cost import PRICES, Tier

    def show(tiers: tuple[Tier, ...]) -> str:
        if len(tiers) == 1:  # a flat price: "above" alone named no band
            return f"{tiers[0].price:.10g} at any volume"
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
