"""Settings of the Lambda functions, read once per cold start.

The environment carries names and ARNs only, never a secret: the notify API
key lives in SSM Parameter Store and is fetched with a TTL cache at run time.
Domain modules receive a :class:`Settings`; only :func:`load_settings` reads
``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Final

from iotnotify.contract import DEFAULT_KEEPALIVE_SECONDS, TopicScheme

__all__ = ["ENV", "Settings", "SettingsError", "load_settings", "settings"]


class SettingsError(RuntimeError):
    """A required setting is missing or malformed; the function cannot start."""


# The environment variable of each setting. infra/ and `iotnotify local` set
# exactly these, so the names live here once.
ENV: Final = {
    "app": "IOTNOTIFY_APP",
    "stage": "IOTNOTIFY_STAGE",
    "ssm_stage": "IOTNOTIFY_SSM_STAGE",
    "region": "AWS_REGION",
    "inbox_table": "IOTNOTIFY_INBOX_TABLE",
    "subscriber_role_arn": "IOTNOTIFY_SUBSCRIBER_ROLE_ARN",
    "task_queue_url": "IOTNOTIFY_TASK_QUEUE_URL",
    "iot_endpoint": "IOTNOTIFY_IOT_ENDPOINT",
    "iot_ws_scheme": "IOTNOTIFY_IOT_WS_SCHEME",
    "iot_data_url": "IOTNOTIFY_IOT_DATA_URL",
    "rooms_table": "IOTNOTIFY_ROOMS_TABLE",
    "history_table": "IOTNOTIFY_CHAT_HISTORY_TABLE",
    "games_table": "IOTNOTIFY_GAMES_TABLE",
    "presence_table": "IOTNOTIFY_PRESENCE_TABLE",
    "max_rooms_per_user": "IOTNOTIFY_MAX_ROOMS_PER_USER",
    "chat_rate_messages": "IOTNOTIFY_CHAT_RATE_MESSAGES",
    "chat_rate_window": "IOTNOTIFY_CHAT_RATE_WINDOW_SECONDS",
    "chat_history_ttl_days": "IOTNOTIFY_CHAT_HISTORY_TTL_DAYS",
    "denylist_ttl": "IOTNOTIFY_DENYLIST_CACHE_SECONDS",
    "cors_origin": "IOTNOTIFY_CORS_ORIGIN",
    "token_duration": "IOTNOTIFY_TOKEN_DURATION_SECONDS",
    "keepalive": "IOTNOTIFY_KEEPALIVE_SECONDS",
    "inbox_ttl_days": "IOTNOTIFY_INBOX_TTL_DAYS",
    "api_key_ttl": "IOTNOTIFY_API_KEY_CACHE_SECONDS",
    # Powertools' own variable, which infra/ sets for every function.
    "metrics_namespace": "POWERTOOLS_METRICS_NAMESPACE",
}


@dataclass(frozen=True, slots=True)
class Settings:
    app: str
    stage: str
    ssm_stage: str
    region: str
    inbox_table: str
    subscriber_role_arn: str = ""
    task_queue_url: str = ""
    # Host (and port, when not the scheme's default) of the iot:Data-ATS
    # endpoint; empty means "discover once with DescribeEndpoint".
    iot_endpoint: str = ""
    iot_ws_scheme: str = "wss"
    # Full URL of the iot-data HTTP API when it is not https://{iot_endpoint}
    # (the local emulator); empty on AWS.
    iot_data_url: str = ""
    rooms_table: str = ""
    history_table: str = ""
    games_table: str = ""
    # Empty: no presence (GET /presence answers 503, catch-ups leave no hint).
    presence_table: str = ""
    # Rooms one user may create (issue 10: 120 junk rooms from one user).
    max_rooms_per_user: int = 10
    # Per-sender chat rate: at most this many messages per window, every room.
    chat_rate_messages: int = 5
    chat_rate_window_seconds: int = 5
    chat_history_ttl_days: int = 30
    denylist_cache_seconds: int = 60
    # The web page's origin, echoed in Access-Control-Allow-Origin (API
    # Gateway answers preflights; responses must carry the header themselves).
    cors_origin: str = "*"
    # Role chaining (a Lambda assuming a role) caps sessions at one hour.
    token_duration_seconds: int = 3600
    keepalive_seconds: int = DEFAULT_KEEPALIVE_SECONDS
    inbox_ttl_days: int = 7
    api_key_cache_seconds: int = 300
    # CloudWatch namespace of the functions' metrics (embedded metric format in
    # the log); empty (the local stack) means counted in process only.
    metrics_namespace: str = ""

    def __post_init__(self) -> None:
        if not 900 <= self.token_duration_seconds <= 3600:
            raise SettingsError("token duration must be 900..3600 s (STS role chaining limits)")
        if self.iot_ws_scheme not in ("ws", "wss"):
            raise SettingsError("IoT WebSocket scheme must be ws or wss")
        # MQTT's Keep Alive is unsigned and the SDK refuses a token that
        # recommends a negative one: say so at cold start, not in every client.
        if self.keepalive_seconds < 0:
            raise SettingsError(
                f"keepalive ({ENV['keepalive']}) must be >= 0 seconds, not {self.keepalive_seconds}"
            )

    @property
    def scheme(self) -> TopicScheme:
        return TopicScheme(self.app, self.stage)

    @property
    def chat_denylist_parameter(self) -> str:
        """``/{app}/{ssmStage}/chat-denylist``: words the moderator masks (StringList)."""
        return f"/{self.app}/{self.ssm_stage}/chat-denylist"

    @property
    def notify_api_key_parameter(self) -> str:
        """``/{service}/{ssmStage}/notify-api-key``: shared by ephemeral stages."""
        return f"/{self.app}/{self.ssm_stage}/notify-api-key"


def _int(environ: Mapping[str, str], key: str, default: int) -> int:
    raw = environ.get(ENV[key], "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"{ENV[key]} must be an integer, got {raw!r}") from exc


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from an environment mapping (``os.environ`` by default)."""
    env = os.environ if environ is None else environ
    stage = env.get(ENV["stage"], "dev")
    region = env.get(ENV["region"]) or env.get("AWS_DEFAULT_REGION") or ""
    if not region:
        raise SettingsError("AWS_REGION is not set")
    return Settings(
        app=env.get(ENV["app"], "iotnotify"),
        stage=stage,
        ssm_stage=env.get(ENV["ssm_stage"]) or stage,
        region=region,
        inbox_table=env.get(ENV["inbox_table"], ""),
        subscriber_role_arn=env.get(ENV["subscriber_role_arn"], ""),
        task_queue_url=env.get(ENV["task_queue_url"], ""),
        iot_endpoint=env.get(ENV["iot_endpoint"], ""),
        iot_ws_scheme=env.get(ENV["iot_ws_scheme"], "wss"),
        iot_data_url=env.get(ENV["iot_data_url"], ""),
        rooms_table=env.get(ENV["rooms_table"], ""),
        history_table=env.get(ENV["history_table"], ""),
        games_table=env.get(ENV["games_table"], ""),
        presence_table=env.get(ENV["presence_table"], ""),
        max_rooms_per_user=_int(env, "max_rooms_per_user", 10),
        chat_rate_messages=_int(env, "chat_rate_messages", 5),
        chat_rate_window_seconds=_int(env, "chat_rate_window", 5),
        chat_history_ttl_days=_int(env, "chat_history_ttl_days", 30),
        denylist_cache_seconds=_int(env, "denylist_ttl", 60),
        cors_origin=env.get(ENV["cors_origin"]) or "*",
        token_duration_seconds=_int(env, "token_duration", 3600),
        keepalive_seconds=_int(env, "keepalive", DEFAULT_KEEPALIVE_SECONDS),
        inbox_ttl_days=_int(env, "inbox_ttl_days", 7),
        api_key_cache_seconds=_int(env, "api_key_ttl", 300),
        metrics_namespace=env.get(ENV["metrics_namespace"], ""),
    )


@cache
def settings() -> Settings:
    """The settings of this process, read on first use and then kept (cold start)."""
    return load_settings()
