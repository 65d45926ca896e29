"""Token vending: short-lived IoT credentials scoped to one user.

The subscriber role's own policy is a ceiling; each session is narrowed with
a session policy naming only this user's client ids and topics, so even a
client that ignores our SDK cannot read another user's messages. The Lambda
itself runs under a role, so ``AssumeRole`` is role chaining: STS caps the
session at one hour.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from iotnotify.contract import Channel, client_id_prefix, validate_user_id
from iotnotify.endpoints import IotEndpoint
from iotnotify.policies import compact_json, subscriber_session_policy
from iotnotify.presign import presign_mqtt_url
from iotnotify_handlers.errors import ServiceUnavailable
from iotnotify_handlers.settings import Settings

__all__ = ["TokenVendor", "account_of_arn", "session_name_for"]


def account_of_arn(arn: str) -> str:
    """The account id field of an ARN (``arn:aws:iam::123456789012:role/x``)."""
    parts = arn.split(":")
    if len(parts) < 6 or not parts[4].isdigit():
        raise ValueError(f"not an ARN with an account id: {arn!r}")
    return parts[4]


def session_name_for(user_id: str) -> str:
    """A RoleSessionName (2..64 of ``[\\w+=,.@-]``) naming the user.

    The session name shows up as the principal in CloudTrail and in IoT's
    lifecycle events, so it is the user id itself whenever STS allows.
    """
    return user_id if len(user_id) >= 2 else f"user-{user_id}"


def _iso(moment: datetime | str) -> str:
    if isinstance(moment, str):
        return moment
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class TokenVendor:
    settings: Settings
    sts: Any
    endpoint: IotEndpoint

    def vend(self, user_id: str, *, channels: Sequence[Channel] = ()) -> dict[str, Any]:
        """The token response of DESIGN.md for ``user_id``.

        ``channels`` (already authorised by the caller) are granted in the
        session policy and listed, rooms under ``channels`` (``{room: {topic,
        inputTopic}}``) and games under ``games`` (``{gameId: {topic}}``); at
        most ``MAX_CHANNELS_PER_TOKEN`` (else
        :class:`iotnotify.policies.TooManyChannels`, a 400).
        """
        user_id = validate_user_id(user_id)
        settings = self.settings
        policy = subscriber_session_policy(
            settings.scheme,
            user_id,
            region=settings.region,
            account=account_of_arn(settings.subscriber_role_arn),
            channels=channels,
        )
        try:
            answer = self.sts.assume_role(
                RoleArn=settings.subscriber_role_arn,
                RoleSessionName=session_name_for(user_id),
                Policy=compact_json(policy),
                DurationSeconds=settings.token_duration_seconds,
            )
        except (BotoCoreError, ClientError) as exc:
            raise ServiceUnavailable("could not issue credentials, try again") from exc
        creds = answer["Credentials"]
        host = self.endpoint.host()
        url = presign_mqtt_url(
            endpoint=host,
            region=settings.region,
            access_key_id=creds["AccessKeyId"],
            secret_access_key=creds["SecretAccessKey"],
            session_token=creds["SessionToken"],
            scheme=settings.iot_ws_scheme,
            expires_seconds=settings.token_duration_seconds,
        )
        return {
            "endpoint": host,
            "region": settings.region,
            "url": url,
            "clientIdPrefix": client_id_prefix(user_id),
            "topics": [str(topic) for topic in settings.scheme.user_topics(user_id)],
            "credentials": {
                "accessKeyId": creds["AccessKeyId"],
                "secretAccessKey": creds["SecretAccessKey"],
                "sessionToken": creds["SessionToken"],
                "expiration": _iso(creds["Expiration"]),
            },
            "keepalive": settings.keepalive_seconds,
            # The server's clock in epoch milliseconds: a client's "since now"
            # starts here, not at its own (possibly skewed) clock, and not at
            # the HTTP Date header, whose whole seconds would replay up to a
            # second of notifications sent just before.
            "serverTime": int(time.time() * 1000),
            # Rooms and games may share a name, so each kind has its own map.
            "channels": {
                c.name: c.topics_json(settings.scheme) for c in channels if c.kind == "room"
            },
            "games": {c.name: c.topics_json(settings.scheme) for c in channels if c.kind == "game"},
        }
