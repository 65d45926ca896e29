"""What iotnotify costs on AWS for a given load, from list prices.

Prices are AWS's us-east-1 list prices (AWS IoT Core and API Gateway
pricing pages), kept here as data so the estimate is auditable. IoT Core
meters messages in 5 KB units and counts every delivery (one publish to one
subscriber is two messages: the inbound publish and the outbound delivery);
PINGREQ/PINGRESP are not metered, which is why an idle connection costs only
connection-minutes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

__all__ = ["PRICES", "CostEstimate", "Load", "Prices", "estimate"]

MINUTES_PER_MONTH: Final = 30 * 24 * 60
METERING_UNIT_BYTES: Final = 5 * 1024


@dataclass(frozen=True, slots=True)
class Prices:
    iot_connection_minute: float = 0.08 / 1_000_000
    iot_message: float = 1.00 / 1_000_000
    api_rest_request: float = 3.50 / 1_000_000
    apigw_ws_message: float = 1.00 / 1_000_000
    apigw_ws_connection_minute: float = 0.25 / 1_000_000


PRICES: Final = Prices()


@dataclass(frozen=True, slots=True)
class Load:
    users: int
    notifications_per_user_per_day: float
    connected_hours_per_day: float = 24.0
    message_bytes: int = 512
    # Each (re)connect costs a GET /token and a GET /notifications.
    connects_per_user_per_day: float = 2.0


@dataclass(frozen=True, slots=True)
class CostEstimate:
    connection_minutes: float
    iot_messages: float
    api_requests: float
    iot_connectivity_usd: float
    iot_messaging_usd: float
    api_usd: float
    apigw_websocket_equivalent_usd: float

    @property
    def total_usd(self) -> float:
        return self.iot_connectivity_usd + self.iot_messaging_usd + self.api_usd


def estimate(load: Load, prices: Prices = PRICES) -> CostEstimate:
    """Monthly cost (30 days) of ``load``, plus the same on API Gateway WebSockets."""
    if load.users < 0 or load.notifications_per_user_per_day < 0:
        raise ValueError("users and notifications must not be negative")
    if not 0 <= load.connected_hours_per_day <= 24:
        raise ValueError("connected hours per day must be within 0..24")
    connected_fraction = load.connected_hours_per_day / 24
    connection_minutes = load.users * MINUTES_PER_MONTH * connected_fraction
    units = math.ceil(load.message_bytes / METERING_UNIT_BYTES)
    publishes = load.users * load.notifications_per_user_per_day * 30
    iot_messages = publishes * 2 * units  # inbound publish + outbound delivery
    api_requests = load.users * load.connects_per_user_per_day * 30 * 2
    apigw_ws = (
        connection_minutes * prices.apigw_ws_connection_minute
        + publishes * math.ceil(load.message_bytes / (32 * 1024)) * prices.apigw_ws_message
    )
    return CostEstimate(
        connection_minutes=connection_minutes,
        iot_messages=iot_messages,
        api_requests=api_requests,
        iot_connectivity_usd=connection_minutes * prices.iot_connection_minute,
        iot_messaging_usd=iot_messages * prices.iot_message,
        api_usd=api_requests * prices.api_rest_request,
        apigw_websocket_equivalent_usd=apigw_ws,
    )
