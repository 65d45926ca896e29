"""What iotnotify costs on AWS for a given load: every service it bills, from list prices.

One table of AWS list prices (us-east-1, :data:`PRICES`, dated
:data:`PRICES_AS_OF`) with volume tiers, and a :class:`Load` whose every
assumption is a visible, settable field (``iotnotify cost --help`` lists
them). :func:`estimate` returns one :class:`LineItem` per billed dimension,
each with its quantity, unit and dollars, so the arithmetic can be checked
line by line.

Metering rules used, from the pricing pages named in :data:`PRICE_SOURCES`:

* **AWS IoT Core**: connectivity per connection-minute; messaging in 5 KB
  units, and every delivery counts (one iot-data publish to one subscriber
  is two messages: the inbound publish and the outbound delivery; a publish
  to a user with no connection is the inbound message alone). CONNECT
  and each SUBSCRIBE are metered (so every reconnect costs messages);
  PINGREQ/PINGRESP, CONNACK, SUBACK and DISCONNECT are not. The rules
  engine bills each rule triggered and each action executed: the presence
  rule runs on every connect and disconnect (lifecycle events).
* **Presence and skip-offline**: every connect and disconnect is one
  presence-function invocation and one presence write, and every catch-up
  one more write (its hint). With ``skip_offline`` the publisher reads a
  recipient's presence (one strongly consistent query, one read unit)
  instead of publishing to someone offline: at ``connected_hours_per_day``
  out of 24 a user is online for that share of the sends, and the rest
  cost neither the inbound publish nor anything else in IoT Core.
* **API Gateway REST**: per request (``GET /token`` and ``GET /notifications``
  per connect, ``POST /notify`` when used), tiered by monthly volume.
* **Lambda** (arm64): per request, and per GB-second of duration.
* **DynamoDB on-demand**: one write request unit per KB of item per inbox
  write, read units for catch-up queries (4 KB each, eventually consistent
  reads cost half), storage per GB-month (items live ``inbox_ttl_days``).
* **Cognito user pools**: per monthly active user (a user who signs in or
  refreshes a token in the month), priced by the pool's feature plan; the
  first 10,000 MAU of Lite and Essentials are free.
* **CloudWatch Logs**: ingestion per GB and storage per GB-month.
* **X-Ray**: traces recorded, after sampling (default rule: the first
  request each second, then 5 %).

Account-wide free tiers other than Cognito's MAU band are not subtracted:
they are shared with everything else in the account.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Final

from iotnotify.errors import InvalidArgument

__all__ = [
    "COGNITO_PLANS",
    "PRICES",
    "PRICES_AS_OF",
    "PRICE_SOURCES",
    "CostEstimate",
    "LineItem",
    "Load",
    "Prices",
    "Tier",
    "estimate",
    "skip_offline_saving",
    "tiered",
]

PRICES_AS_OF: Final = "2025-06-01"
PRICE_SOURCES: Final = (
    "https://aws.amazon.com/iot-core/pricing/",
    "https://aws.amazon.com/api-gateway/pricing/",
    "https://aws.amazon.com/lambda/pricing/",
    "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    "https://aws.amazon.com/cognito/pricing/",
    "https://aws.amazon.com/cloudwatch/pricing/",
    "https://aws.amazon.com/xray/pricing/",
)
METERING_UNIT_BYTES: Final = 5 * 1024
_MILLION: Final = 1_000_000
_GB: Final = 1024**3
COGNITO_PLANS: Final = ("lite", "essentials", "plus")


@dataclass(frozen=True, slots=True)
class Tier:
    """A volume band: ``price`` per unit for units up to ``up_to`` (None: no limit)."""

    up_to: float | None
    price: float


def tiered(quantity: float, tiers: tuple[Tier, ...]) -> float:
    """Dollars for ``quantity`` units under volume ``tiers`` (each band at its own price)."""
    if quantity < 0:
        raise InvalidArgument("a quantity cannot be negative")
    total, floor = 0.0, 0.0
    for tier in tiers:
        ceiling = math.inf if tier.up_to is None else tier.up_to
        if quantity <= floor:
            break
        total += (min(quantity, ceiling) - floor) * tier.price
        floor = ceiling
    return total


def _per_million(*bands: tuple[float | None, float]) -> tuple[Tier, ...]:
    return tuple(Tier(up_to, dollars / _MILLION) for up_to, dollars in bands)


@dataclass(frozen=True, slots=True)
class Prices:
    """AWS list prices, us-east-1, as of :data:`PRICES_AS_OF` (one table, all services)."""

    iot_connection_minute: tuple[Tier, ...] = _per_million((None, 0.08))
    iot_message: tuple[Tier, ...] = _per_million(
        (1_000_000_000, 1.00), (5_000_000_000, 0.80), (None, 0.70)
    )
    api_rest_request: tuple[Tier, ...] = _per_million(
        (333_000_000, 3.50), (1_000_000_000, 2.80), (20_000_000_000, 2.38), (None, 1.51)
    )
    lambda_request: tuple[Tier, ...] = _per_million((None, 0.20))
    # arm64 duration, per GB-second.
    lambda_gb_second: tuple[Tier, ...] = (
        Tier(7_500_000_000, 0.0000133334),
        Tier(18_750_000_000, 0.0000120001),
        Tier(None, 0.0000106667),
    )
    dynamodb_write_unit: tuple[Tier, ...] = _per_million((None, 0.625))
    dynamodb_read_unit: tuple[Tier, ...] = _per_million((None, 0.125))
    dynamodb_gb_month: tuple[Tier, ...] = (Tier(None, 0.25),)
    cognito_mau: dict[str, tuple[Tier, ...]] = field(
        default_factory=lambda: {
            "lite": (
                Tier(10_000, 0.0),
                Tier(100_000, 0.0055),
                Tier(1_000_000, 0.0046),
                Tier(10_000_000, 0.00325),
                Tier(None, 0.0025),
            ),
            "essentials": (Tier(10_000, 0.0), Tier(None, 0.015)),
            "plus": (Tier(None, 0.02),),
        }
    )
    logs_ingested_gb: tuple[Tier, ...] = (Tier(None, 0.50),)
    logs_stored_gb_month: tuple[Tier, ...] = (Tier(None, 0.03),)
    xray_trace: tuple[Tier, ...] = _per_million((None, 5.00))
    iot_rule_triggered: tuple[Tier, ...] = _per_million((None, 0.15))
    iot_rule_action: tuple[Tier, ...] = _per_million((None, 0.15))
    # For comparison only: the same load on API Gateway WebSockets.
    apigw_ws_message: tuple[Tier, ...] = _per_million((1_000_000_000, 1.00), (None, 0.80))
    apigw_ws_connection_minute: tuple[Tier, ...] = _per_million((None, 0.25))


PRICES: Final = Prices()


@dataclass(frozen=True, slots=True)
class Load:
    """A month of use; every field is an assumption ``iotnotify cost`` shows and lets you set."""

    users: int
    notifications_per_user_per_day: float
    connected_hours_per_day: float = 24.0
    message_bytes: int = 512
    # Each (re)connect: GET /token, GET /notifications, CONNECT and one SUBSCRIBE per topic.
    connects_per_user_per_day: float = 2.0
    topics_per_connection: int = 2
    # Users who sign in or refresh a token in the month (Cognito MAU).
    monthly_active_fraction: float = 1.0
    cognito_plan: str = "lite"
    # Notifications kept in the inbox (not ephemeral): one DynamoDB write each.
    inbox_fraction: float = 1.0
    inbox_ttl_days: float = 7.0
    # Sent through POST /notify (API Gateway + Lambda) instead of the Python publisher.
    api_notify_fraction: float = 0.0
    recipients_per_notify_request: int = 1
    lambda_memory_mb: int = 256
    lambda_ms_per_request: float = 100.0
    log_bytes_per_request: int = 1500  # Lambda's lines plus an API Gateway access-log line
    log_retention_days: int = 30
    xray_sampled_fraction: float = 0.05  # beyond the first request each second
    days: int = 30
    # Publisher(skip_offline=True): no live publish to users who are away.
    skip_offline: bool = False

    def check(self) -> None:
        """Raises :class:`~iotnotify.errors.InvalidArgument` (a ``ValueError``) for a
        load that cannot happen.

        Every number must be finite and not negative (NaN fails every comparison and
        infinity passes ``>= 0``, so both would reach the arithmetic and make the total
        NaN). Lambda memory is 128..10240 MB
        (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html).
        """
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value) or value < 0:
                raise InvalidArgument(f"{spec.name} must be a finite number >= 0, not {value!r}")
        if not 128 <= self.lambda_memory_mb <= 10_240:
            raise InvalidArgument("lambda_memory_mb must be within 128..10240 (Lambda's range)")
        if self.users < 0 or self.notifications_per_user_per_day < 0:
            raise InvalidArgument("users and notifications must not be negative")
        if not 0 <= self.connected_hours_per_day <= 24:
            raise InvalidArgument("connected hours per day must be within 0..24")
        for name in (
            "monthly_active_fraction",
            "inbox_fraction",
            "api_notify_fraction",
            "xray_sampled_fraction",
        ):
            if not 0 <= getattr(self, name) <= 1:
                raise InvalidArgument(f"{name} must be within 0..1")
        if self.cognito_plan not in COGNITO_PLANS:
            raise InvalidArgument(f"cognito_plan must be one of {', '.join(COGNITO_PLANS)}")
        if min(self.message_bytes, self.recipients_per_notify_request, self.days) < 1:
            raise InvalidArgument("message bytes, recipients per request and days must be >= 1")
        if min(self.connects_per_user_per_day, self.topics_per_connection) < 0:
            raise InvalidArgument("connects and topics must not be negative")


@dataclass(frozen=True, slots=True)
class LineItem:
    service: str
    what: str
    quantity: float
    unit: str
    usd: float


@dataclass(frozen=True, slots=True)
class CostEstimate:
    load: Load
    items: tuple[LineItem, ...]
    apigw_websocket_equivalent_usd: float

    @property
    def total_usd(self) -> float:
        return sum(item.usd for item in self.items)

    def item(self, what: str) -> LineItem:
        return next(i for i in self.items if i.what == what)

    def by_service(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for item in self.items:
            totals[item.service] = totals.get(item.service, 0.0) + item.usd
        return totals

    # The three figures earlier versions returned, kept for callers.
    @property
    def connection_minutes(self) -> float:
        return self.item("connection-minutes").quantity

    @property
    def iot_messages(self) -> float:
        return self.item("messages (5 KB units)").quantity

    @property
    def iot_connectivity_usd(self) -> float:
        return self.item("connection-minutes").usd

    @property
    def iot_messaging_usd(self) -> float:
        return self.item("messages (5 KB units)").usd


def _xray_traces(requests: float, days: int, sampled: float) -> float:
    # X-Ray's default sampling rule: a reservoir of one request per second,
    # then `sampled` of the rest.
    reservoir = days * 86_400
    return min(requests, reservoir) + sampled * max(0.0, requests - reservoir)


def estimate(load: Load, prices: Prices = PRICES) -> CostEstimate:
    """Monthly cost (``load.days``) of ``load`` on AWS, plus the same on API Gateway WebSockets.

    Raises :class:`~iotnotify.errors.InvalidArgument` (a ``ValueError``) for a
    load :meth:`Load.check` refuses, or one so large
    that a figure overflows to infinity or NaN.
    """
    load.check()
    days = load.days
    connected_fraction = load.connected_hours_per_day / 24
    connection_minutes = load.users * days * 24 * 60 * connected_fraction
    notifications = load.users * load.notifications_per_user_per_day * days
    connects = load.users * load.connects_per_user_per_day * days
    units = math.ceil(load.message_bytes / METERING_UNIT_BYTES)
    # Inbound publish + outbound delivery to the share online; the inbound
    # publish alone for the rest, or nothing at all with skip_offline.
    per_send = 2 * connected_fraction if load.skip_offline else 1 + connected_fraction
    # CONNECT + one SUBSCRIBE per topic per connect.
    iot_messages = notifications * per_send * units + connects * (1 + load.topics_per_connection)
    # The presence rule: one lifecycle event per connect and per disconnect.
    lifecycle_events = connects * 2

    notify_requests = notifications * load.api_notify_fraction / load.recipients_per_notify_request
    api_requests = connects * 2 + notify_requests
    invocations = api_requests + lifecycle_events
    gb_seconds = invocations * (load.lambda_ms_per_request / 1000) * (load.lambda_memory_mb / 1024)

    item_bytes = load.message_bytes + 100  # keys, TTL attribute, attribute names
    inbox_writes = notifications * load.inbox_fraction
    write_units = inbox_writes * math.ceil(item_bytes / 1024)
    # Every connect queries the inbox (at least one read unit); what arrived
    # while offline is read back once. Eventually consistent: half price.
    missed = inbox_writes * (1 - connected_fraction)
    read_units = 0.5 * (connects + missed * item_bytes / 4096)
    # Presence: a write per lifecycle event and per catch-up hint; with
    # skip_offline one strongly consistent read (a whole unit) per send.
    presence_writes = lifecycle_events + connects
    presence_reads = notifications if load.skip_offline else 0.0
    stored_gb = load.users * load.notifications_per_user_per_day * load.inbox_fraction
    stored_gb *= load.inbox_ttl_days * item_bytes / _GB

    mau = load.users * load.monthly_active_fraction
    logs_gb = invocations * load.log_bytes_per_request / _GB
    logs_stored = logs_gb * load.log_retention_days / days
    traces = _xray_traces(invocations, days, load.xray_sampled_fraction)

    p = prices
    items = (
        LineItem("IoT Core", "connection-minutes", connection_minutes, "minutes",
                 tiered(connection_minutes, p.iot_connection_minute)),
        LineItem("IoT Core", "messages (5 KB units)", iot_messages, "messages",
                 tiered(iot_messages, p.iot_message)),
        LineItem("IoT Core", "rules triggered (presence)", lifecycle_events, "rules",
                 tiered(lifecycle_events, p.iot_rule_triggered)),
        LineItem("IoT Core", "rule actions (presence)", lifecycle_events, "actions",
                 tiered(lifecycle_events, p.iot_rule_action)),
        LineItem("API Gateway", "REST requests", api_requests, "requests",
                 tiered(api_requests, p.api_rest_request)),
        LineItem("Lambda", "requests", invocations, "requests",
                 tiered(invocations, p.lambda_request)),
        LineItem("Lambda", "duration", gb_seconds, "GB-seconds",
                 tiered(gb_seconds, p.lambda_gb_second)),
        LineItem("DynamoDB", "inbox writes", write_units, "write units",
                 tiered(write_units, p.dynamodb_write_unit)),
        LineItem("DynamoDB", "catch-up reads", read_units, "read units",
                 tiered(read_units, p.dynamodb_read_unit)),
        LineItem("DynamoDB", "inbox storage", stored_gb, "GB-months",
                 tiered(stored_gb, p.dynamodb_gb_month)),
        LineItem("DynamoDB", "presence writes", presence_writes, "write units",
                 tiered(presence_writes, p.dynamodb_write_unit)),
        LineItem("DynamoDB", "presence reads (skip_offline)", presence_reads, "read units",
                 tiered(presence_reads, p.dynamodb_read_unit)),
        LineItem("Cognito", f"monthly active users ({load.cognito_plan})", mau, "MAU",
                 tiered(mau, p.cognito_mau[load.cognito_plan])),
        LineItem("CloudWatch Logs", "ingested", logs_gb, "GB",
                 tiered(logs_gb, p.logs_ingested_gb)),
        LineItem("CloudWatch Logs", "stored", logs_stored, "GB-months",
                 tiered(logs_stored, p.logs_stored_gb_month)),
        LineItem("X-Ray", "traces recorded", traces, "traces", tiered(traces, p.xray_trace)),
    )  # fmt: skip
    websocket = tiered(connection_minutes, p.apigw_ws_connection_minute) + tiered(
        notifications * math.ceil(load.message_bytes / (32 * 1024)), p.apigw_ws_message
    )
    # Finite inputs can still overflow (--per-day 1e308: inf messages, then
    # inf * 0 = NaN): refuse, or the table reads "nan" and --json prints
    # NaN/Infinity, which is not JSON (RFC 8259).
    for what, value in (
        *((item.what, number) for item in items for number in (item.quantity, item.usd)),
        ("API Gateway WebSockets comparison", websocket),
    ):
        if not math.isfinite(value):
            raise InvalidArgument(f"the load is too large to estimate: {what} overflows")
    return CostEstimate(load=load, items=items, apigw_websocket_equivalent_usd=websocket)


def skip_offline_saving(load: Load, prices: Prices = PRICES) -> float:
    """Dollars a month ``Publisher(skip_offline=True)`` saves on ``load`` (negative: it costs).

    The share of users online is ``connected_hours_per_day / 24``.
    """
    without = estimate(replace(load, skip_offline=False), prices).total_usd
    return without - estimate(replace(load, skip_offline=True), prices).total_usd
