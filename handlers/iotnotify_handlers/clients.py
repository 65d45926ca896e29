"""AWS clients and domain services of this Lambda process, created once.

Created lazily on first use (after settings are read) and kept for the life
of the execution environment, as Lambda best practice says. Tests and
``iotnotify local`` point them elsewhere through the standard endpoint
settings (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_IOT_DATA_PLANE``), not by
patching; :func:`reset` drops them so a test can start from a cold start.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities.parameters import SSMProvider

from iotnotify.endpoints import IotEndpoint
from iotnotify.games import GameRegistry
from iotnotify.inbox import Inbox
from iotnotify.presence import PresenceTable
from iotnotify.publisher import Publisher
from iotnotify_handlers.chat_history import ChatHistory
from iotnotify_handlers.chat_moderation import Denylist, Moderator, Rejections
from iotnotify_handlers.chat_rooms import ChatRooms
from iotnotify_handlers.settings import settings
from iotnotify_handlers.user_directory import UserDirectory

__all__ = [
    "chat_history",
    "chat_rooms",
    "configure",
    "games",
    "inbox",
    "iot_data",
    "iot_endpoint",
    "moderator",
    "presence",
    "publisher",
    "reset",
    "session",
    "sqs",
    "ssm_provider",
    "sts",
    "user_directory",
]


_configured_session: boto3.session.Session | None = None


def configure(*, session: boto3.session.Session | None) -> None:
    """Build every client from ``session`` (None: the default credential chain).

    ``iotnotify local`` passes a session acting as the functions role, which
    is what the Lambda runtime provides on AWS.
    """
    global _configured_session
    _configured_session = session
    reset()


@cache
def session() -> boto3.session.Session:
    if _configured_session is not None:
        return _configured_session
    return boto3.session.Session(region_name=settings().region)


@cache
def sts() -> Any:
    return session().client("sts")


@cache
def sqs() -> Any:
    return session().client("sqs")


@cache
def iot_endpoint() -> IotEndpoint:
    configured = settings().iot_endpoint
    iot_client = None if configured else session().client("iot")
    return IotEndpoint(configured=configured, iot_client=iot_client)


@cache
def inbox() -> Inbox:
    table = session().resource("dynamodb").Table(settings().inbox_table)
    return Inbox(table, ttl_days=settings().inbox_ttl_days)


@cache
def chat_rooms() -> ChatRooms:
    table = session().resource("dynamodb").Table(settings().rooms_table)
    return ChatRooms(table, settings().scheme, max_rooms_per_user=settings().max_rooms_per_user)


@cache
def games() -> GameRegistry:
    return GameRegistry(session().resource("dynamodb").Table(settings().games_table))


@cache
def presence() -> PresenceTable | None:
    """The presence table, or None where the deployment has none."""
    name = settings().presence_table
    return PresenceTable(session().resource("dynamodb").Table(name)) if name else None


@cache
def chat_history() -> ChatHistory:
    table = session().resource("dynamodb").Table(settings().history_table)
    return ChatHistory(table, ttl_days=settings().chat_history_ttl_days)


@cache
def iot_data() -> Any:
    """A boto3 ``iot-data`` client on the account's ATS endpoint (or the emulator)."""
    s = settings()
    url = s.iot_data_url or f"https://{iot_endpoint().host()}"
    return session().client("iot-data", endpoint_url=url)


@cache
def moderator() -> Moderator:
    s = settings()
    denylist = Denylist(
        ssm_provider(), parameter=s.chat_denylist_parameter, ttl_seconds=s.denylist_cache_seconds
    )
    return Moderator(
        scheme=s.scheme,
        history=chat_history(),
        iot_data=iot_data(),
        denylist=denylist.words,
        rate_messages=s.chat_rate_messages,
        rate_window_seconds=s.chat_rate_window_seconds,
        rejections=Rejections(s.metrics_namespace),
    )


@cache
def publisher() -> Publisher:
    s = settings()
    return Publisher.create(
        app=s.app,
        stage=s.stage,
        region=s.region,
        # Local stacks name the emulator's HTTP URL; on AWS it is the same
        # ATS host the subscribers connect to, over HTTPS.
        endpoint=s.iot_data_url or s.iot_endpoint,
        inbox_table=s.inbox_table,
        inbox_ttl_days=s.inbox_ttl_days,
        games_table=s.games_table,
        session=session(),
    )


@cache
def user_directory() -> UserDirectory:
    return UserDirectory(session().client("cognito-idp"))


@cache
def ssm_provider() -> SSMProvider:
    return SSMProvider(boto3_client=session().client("ssm"))


def reset() -> None:
    """Forget every client and the settings (a fresh cold start, for tests)."""
    for factory in (
        session,
        sts,
        sqs,
        iot_endpoint,
        inbox,
        chat_rooms,
        chat_history,
        games,
        presence,
        iot_data,
        moderator,
        publisher,
        ssm_provider,
        user_directory,
    ):
        factory.cache_clear()
    settings.cache_clear()
