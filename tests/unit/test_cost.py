"""The cost model: IoT Core's metering rules, every billed service, volume tiers, arithmetic."""

from __future__ import annotations

import json
from dataclasses import fields, replace

import click
import pytest
from click.testing import CliRunner

from iotnotify.cli import cli
from iotnotify.cost import (
    COGNITO_PLANS,
    PRICE_SOURCES,
    PRICES,
    PRICES_AS_OF,
    Load,
    Tier,
    estimate,
    skip_offline_saving,
    tiered,
)

MONTH_MINUTES = 30 * 24 * 60


def _quiet(**overrides: object) -> Load:
    """One user, nothing sent, never reconnecting: each test turns on what it checks."""
    fields: dict[str, object] = {
        "users": 1,
        "notifications_per_user_per_day": 0,
        "connects_per_user_per_day": 0,
    }
    fields.update(overrides)
    return Load(**fields)  # type: ignore[arg-type]


def test_an_idle_connected_user_costs_only_connection_minutes_and_mau() -> None:
    idle = estimate(_quiet())
    assert idle.iot_messaging_usd == 0
    assert idle.connection_minutes == MONTH_MINUTES
    assert idle.iot_connectivity_usd == pytest.approx(MONTH_MINUTES * 0.08 / 1e6)
    # Inside Cognito Lite's free 10,000 MAU, nothing else runs.
    assert idle.total_usd == pytest.approx(idle.iot_connectivity_usd)


def test_messages_are_metered_in_5kb_units_and_count_both_directions() -> None:
    small = estimate(_quiet(notifications_per_user_per_day=1, message_bytes=5 * 1024))
    large = estimate(_quiet(notifications_per_user_per_day=1, message_bytes=5 * 1024 + 1))
    assert small.iot_messages == 30 * 2
    assert large.iot_messages == 30 * 2 * 2


def test_each_connect_costs_a_connect_and_a_subscribe_per_topic_and_two_api_calls() -> None:
    figures = estimate(_quiet(connects_per_user_per_day=2, topics_per_connection=3))
    connects = 2 * 30
    assert figures.iot_messages == connects * (1 + 3)
    assert figures.item("REST requests").quantity == connects * 2
    assert figures.item("REST requests").usd == pytest.approx(connects * 2 * 3.50 / 1e6)
    # Lambda: the two API calls plus the presence function on connect and on disconnect.
    assert figures.item("requests").usd == pytest.approx(connects * 4 * 0.20 / 1e6)
    assert figures.item("rules triggered (presence)").quantity == connects * 2
    assert figures.item("presence writes").quantity == connects * 3  # 2 events + catch-up hint
    # 100 ms at 256 MB per request is 0.025 GB-s, arm64 price.
    gb_s = connects * 4 * 0.1 * 0.25
    assert figures.item("duration").quantity == pytest.approx(gb_s)
    assert figures.item("duration").usd == pytest.approx(gb_s * 0.0000133334)


def test_inbox_writes_are_one_write_unit_per_kb_of_item() -> None:
    one_kb = estimate(_quiet(notifications_per_user_per_day=10, message_bytes=512))
    two_kb = estimate(_quiet(notifications_per_user_per_day=10, message_bytes=1100))
    assert one_kb.item("inbox writes").quantity == 300
    assert two_kb.item("inbox writes").quantity == 600  # 1,200-byte items
    assert one_kb.item("inbox writes").usd == pytest.approx(300 * 0.625 / 1e6)
    ephemeral = estimate(_quiet(notifications_per_user_per_day=10, inbox_fraction=0))
    assert ephemeral.item("inbox writes").usd == 0


def test_inbox_storage_follows_the_ttl() -> None:
    week = estimate(_quiet(users=1000, notifications_per_user_per_day=10))
    fortnight = estimate(_quiet(users=1000, notifications_per_user_per_day=10, inbox_ttl_days=14))
    stored = 1000 * 10 * 7 * 612 / 1024**3
    assert week.item("inbox storage").quantity == pytest.approx(stored)
    assert fortnight.item("inbox storage").usd == pytest.approx(2 * stored * 0.25)


def test_volume_tiers_price_each_band_at_its_own_rate() -> None:
    assert tiered(1_500_000_000, PRICES.iot_message) == pytest.approx(1000 + 400)
    assert tiered(6_000_000_000, PRICES.iot_message) == pytest.approx(1000 + 3200 + 700)
    bands = (Tier(10, 1.0), Tier(None, 0.5))
    assert tiered(4, bands) == 4
    assert tiered(14, bands) == 12
    with pytest.raises(ValueError):
        tiered(-1, bands)


@pytest.mark.parametrize(
    ("plan", "mau", "usd"),
    [
        ("lite", 10_000, 0.0),
        ("lite", 100_000, 90_000 * 0.0055),
        ("lite", 150_000, 90_000 * 0.0055 + 50_000 * 0.0046),
        ("essentials", 100_000, 90_000 * 0.015),
        ("plus", 100_000, 100_000 * 0.02),
    ],
)
def test_cognito_monthly_active_users_by_feature_plan(plan: str, mau: int, usd: float) -> None:
    figures = estimate(_quiet(users=mau, cognito_plan=plan, connected_hours_per_day=0))
    assert figures.item(f"monthly active users ({plan})").usd == pytest.approx(usd)


def test_only_the_active_fraction_counts_as_mau() -> None:
    figures = estimate(_quiet(users=200_000, monthly_active_fraction=0.25))
    assert figures.item("monthly active users (lite)").quantity == 50_000


def test_logs_and_traces_follow_function_invocations() -> None:
    figures = estimate(_quiet(users=100_000, connects_per_user_per_day=2))
    # Per connect: GET /token, GET /notifications and two presence events.
    requests = 100_000 * 2 * 30 * 4
    logs_gb = requests * 1500 / 1024**3
    assert figures.item("ingested").usd == pytest.approx(logs_gb * 0.50)
    assert figures.item("stored").usd == pytest.approx(logs_gb * 0.03)  # 30-day retention
    reservoir = 30 * 86_400
    traces = reservoir + 0.05 * (requests - reservoir)
    assert figures.item("traces recorded").quantity == pytest.approx(traces)
    assert figures.item("traces recorded").usd == pytest.approx(traces * 5 / 1e6)


def test_the_total_is_the_sum_of_the_lines() -> None:
    figures = estimate(Load(users=5000, notifications_per_user_per_day=20, api_notify_fraction=1))
    assert figures.total_usd == pytest.approx(sum(item.usd for item in figures.items))
    assert set(figures.by_service()) == {
        "IoT Core",
        "API Gateway",
        "Lambda",
        "DynamoDB",
        "Cognito",
        "CloudWatch Logs",
        "X-Ray",
    }


def test_part_time_connections_cost_proportionally_less() -> None:
    full = estimate(_quiet(users=100))
    half = estimate(_quiet(users=100, connected_hours_per_day=12))
    assert half.iot_connectivity_usd == pytest.approx(full.iot_connectivity_usd / 2)


def test_impossible_loads_are_refused() -> None:
    with pytest.raises(ValueError):
        estimate(_quiet(users=-1))
    with pytest.raises(ValueError):
        estimate(_quiet(connected_hours_per_day=25))
    with pytest.raises(ValueError):
        estimate(_quiet(cognito_plan="gold"))


@pytest.mark.parametrize(
    "field",
    ["notifications_per_user_per_day", "inbox_ttl_days", "lambda_ms_per_request"],
)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_loads_with_non_finite_or_negative_numbers_are_refused(field: str, value: float) -> None:
    # NaN fails every comparison and infinity passes ">= 0": both used to reach the
    # arithmetic and come out as a total of NaN (printed as invalid JSON by --json).
    with pytest.raises(ValueError, match=field):
        estimate(_quiet(**{field: value}))


@pytest.mark.parametrize("megabytes", [0, 127, 10_241])
def test_lambda_memory_outside_lambdas_range_is_refused(megabytes: int) -> None:
    with pytest.raises(ValueError, match=r"128\.\.10240"):
        estimate(_quiet(lambda_memory_mb=megabytes))


@pytest.mark.parametrize("text", ["nan", "inf"])
def test_cli_refuses_a_non_finite_assumption_instead_of_printing_nan(text: str) -> None:
    result = CliRunner().invoke(cli, ["cost", "--json", "--per-day", text])
    assert result.exit_code == 2, result.output
    assert "--per-day" in result.output
    assert "NaN" not in result.output


def test_cli_shows_and_takes_every_assumption_and_dates_the_prices() -> None:
    result = CliRunner().invoke(
        cli, ["cost", "--json", "--users", "20000", "--cognito-plan", "essentials", "--days", "31"]
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["pricesAsOf"] == PRICES_AS_OF
    assert answer["assumptions"]["days"] == 31
    cognito = next(i for i in answer["items"] if i["service"] == "Cognito")
    assert cognito["usd"] == pytest.approx(10_000 * 0.015)
    assert answer["totalUsd"] == pytest.approx(sum(i["usd"] for i in answer["items"]))
    table = CliRunner().invoke(cli, ["cost", "--users", "1000", "--per-day", "10"])
    assert table.exit_code == 0
    for text in ("DynamoDB", "Lambda", "Cognito", "CloudWatch Logs", "X-Ray", "--inbox-ttl-days"):
        assert text in table.output
    assert PRICES_AS_OF in table.output


@pytest.mark.parametrize("hours", [0, 6, 12, 24])
def test_skip_offline_bills_no_message_for_users_who_are_away(hours: int) -> None:
    """Issue 14 §5: sends to offline users cost the inbound publish without
    skip_offline and nothing in IoT with it; each send then reads presence."""
    load = _quiet(connected_hours_per_day=hours, notifications_per_user_per_day=1)
    online = hours / 24
    sends = 30  # one user, one notification a day, 30 days
    plain = estimate(load)
    skipping = estimate(replace(load, skip_offline=True))
    assert plain.iot_messages == pytest.approx(sends * (1 + online))
    assert skipping.iot_messages == pytest.approx(sends * 2 * online)
    assert skipping.item("presence reads (skip_offline)").quantity == sends
    assert plain.item("presence reads (skip_offline)").quantity == 0
    saved = (sends * (1 - online)) * 1.00 / 1e6 - sends * 0.125 / 1e6
    assert skip_offline_saving(load) == pytest.approx(saved)
    assert skip_offline_saving(load) == pytest.approx(plain.total_usd - skipping.total_usd)


def test_skip_offline_costs_more_than_it_saves_when_everyone_is_online() -> None:
    load = _quiet(connected_hours_per_day=24, notifications_per_user_per_day=1)
    assert skip_offline_saving(load) < 0


def test_cost_command_prints_the_skip_offline_saving() -> None:
    args = ["cost", "--users", "1000", "--per-day", "10", "--connected-hours", "6", "--json"]
    answer = json.loads(CliRunner().invoke(cli, args).output)
    assert answer["skipOffline"]["onlineShare"] == 0.25
    load = Load(users=1000, notifications_per_user_per_day=10, connected_hours_per_day=6)
    assert answer["skipOffline"]["savingUsd"] == pytest.approx(skip_offline_saving(load))
    assert answer["skipOffline"]["savingUsd"] > 0
    text = CliRunner().invoke(cli, args[:-1]).output
    assert "skip_offline=True) with 25% of users online" in text


def test_a_load_whose_figures_overflow_is_refused_not_priced_nan() -> None:
    # Finite, so Load.check passes, but notifications * days overflows.
    with pytest.raises(ValueError, match="too large"):
        estimate(_quiet(notifications_per_user_per_day=1e308))


def test_cost_command_refuses_an_overflowing_load_instead_of_printing_nan() -> None:
    # (--per-day's range stops it before the estimate would overflow.)
    for extra in ([], ["--json"]):
        result = CliRunner().invoke(cli, ["cost", "--per-day", "1e308", *extra])
        assert result.exit_code == 2, result.output
        assert "--per-day" in result.output
        assert "nan" not in result.output.lower()
        assert "Infinity" not in result.output


def test_cost_json_carries_the_price_table_and_sources_the_text_prints() -> None:
    answer = json.loads(CliRunner().invoke(cli, ["cost", "--json", "--users", "10"]).output)
    assert answer["priceSources"] == list(PRICE_SOURCES)
    assert answer["prices"]["iot_message"] == [
        {"upTo": 1_000_000_000, "usd": 1e-06},
        {"upTo": 5_000_000_000, "usd": 8e-07},
        {"upTo": None, "usd": 7e-07},
    ]
    assert set(answer["prices"]["cognito_mau"]) == set(COGNITO_PLANS)
    assert set(answer["prices"]) == {spec.name for spec in fields(PRICES)}


def test_cost_help_gives_every_number_a_bounded_range_and_a_unit() -> None:
    # `iotnotify cost --help` showed bare "x>=0" ranges and no help text:
    # fractions above 1, 25 connected hours or a 1 GB message were accepted.
    from iotnotify.cli_cost import cost

    options = [p for p in cost.params if isinstance(p, click.Option) and p.name != "help"]
    assert {o.name for o in options} >= {f.name for f in fields(Load)}
    for option in options:
        assert option.help, f"{option.opts[0]} has no help text"
        if isinstance(option.type, (click.IntRange, click.FloatRange)):
            assert option.type.min is not None, option.opts
            assert option.type.max is not None, option.opts
    text = CliRunner().invoke(cli, ["cost", "--help"]).output
    assert "0<=x<=24" in text
    assert "Hours per day" in text
    assert "1<=x<=131072" in text
    assert "Bytes per notification" in text
    assert "x>=0" not in text


def test_cost_ranges_follow_the_limits_they_name() -> None:
    from iotnotify.cli_cost import _COST_OPTIONS
    from iotnotify.contract import MAX_PAYLOAD_BYTES
    from iotnotify_handlers.notify_requests import MAX_RECIPIENTS

    message_bytes = _COST_OPTIONS["message_bytes"][0]
    recipients = _COST_OPTIONS["recipients_per_notify_request"][0]
    assert isinstance(message_bytes, click.IntRange)
    assert message_bytes.max == MAX_PAYLOAD_BYTES
    assert isinstance(recipients, click.IntRange)
    assert recipients.max == MAX_RECIPIENTS


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--connected-hours", "25"),
        ("--monthly-active-fraction", "1.5"),
        ("--inbox-fraction", "-0.1"),
        ("--message-bytes", str(128 * 1024 + 1)),
        ("--topics-per-connection", "51"),
        ("--recipients-per-notify-request", "1001"),
        ("--lambda-memory-mb", "64"),
        ("--days", "32"),
        ("--per-day", "nan"),
    ],
)
def test_cost_refuses_an_out_of_range_option_naming_it(option: str, value: str) -> None:
    result = CliRunner().invoke(cli, ["cost", "--json", option, value])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output


def _price_line(text: str, name: str) -> str:
    """The price column of the row named ``name`` in ``cost``'s price table."""
    (line,) = [row for row in text.splitlines() if row.startswith(f"{name}  ")]
    return line[len(name) :].strip()


def test_cost_price_table_says_a_flat_price_holds_at_any_volume() -> None:
    # A one-tier price read "2e-07 above" (above what?); a tiered one still
    # ends with "above" after the last band's limit.
    text = CliRunner().invoke(cli, ["cost", "--users", "10"]).output
    assert _price_line(text, "lambda_request") == "2e-07 at any volume"
    assert _price_line(text, "cognito_mau (plus)") == "0.02 at any volume"
    assert _price_line(text, "iot_message") == (
        "1e-06 up to 1,000,000,000; 8e-07 up to 5,000,000,000; 7e-07 above"
    )
