"""Publish notifications to users through AWS IoT Core's ``iot-data`` API.

Used by Lambda functions and Python game servers. Every send is QoS 0 (IoT
meters QoS 1 acks too and subscribers catch up from the inbox anyway) and,
unless the caller marks it ephemeral, the notification is written to the
user's inbox *before* it is published, so anything a client sees live is
also there when it catches up: no gaps.

Fan-out (:meth:`Publisher.notify_many`) runs publishes concurrently on a
bounded thread pool (boto3 clients are thread-safe) and reports one result
per recipient instead of failing the whole batch on one error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from iotnotify.contract import Notification, Topic, TopicScheme, validate_user_id
from iotnotify.endpoints import IotEndpoint
from iotnotify.errors import ContractError, IotNotifyError, PublishError, Throttled
from iotnotify.inbox import Inbox

__all__ = ["DEFAULT_FANOUT_WORKERS", "DeliveryResult", "Publisher"]

DEFAULT_FANOUT_WORKERS: Final = 16
_THROTTLING_CODES: Final = frozenset(
    {"ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"}
)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What happened to one recipient of a fan-out."""

    user_id: str
    ok: bool
    notification_id: str | None = None
    error: str | None = None


def _translate(exc: Exception, what: str) -> IotNotifyError:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _THROTTLING_CODES:
            return Throttled(f"{what}: throttled ({code})")
    return PublishError(f"{what}: {exc}")


class Publisher:
    """Sends notifications to users, games and everyone in one deployment.

    ``iot_data`` is a boto3 ``iot-data`` client whose endpoint is the
    account's ``iot:Data-ATS`` host (or the local emulator); ``inbox`` is
    optional so a game server without table access can still publish
    ephemeral notifications.
    """

    def __init__(
        self,
        *,
        scheme: TopicScheme,
        iot_data: Any,
        inbox: Inbox | None = None,
        max_workers: int = DEFAULT_FANOUT_WORKERS,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._scheme = scheme
        self._iot_data = iot_data
        self._inbox = inbox
        self._max_workers = max_workers

    @property
    def scheme(self) -> TopicScheme:
        return self._scheme

    def publish(self, topic: Topic, note: Notification) -> None:
        """Publish one envelope to one topic, QoS 0."""
        payload = note.to_json()  # raises PayloadTooLarge before any AWS call
        try:
            self._iot_data.publish(topic=topic.value, qos=0, payload=payload)
        except (BotoCoreError, ClientError) as exc:
            raise _translate(exc, f"publish to {topic.value}") from exc

    def notify(
        self,
        user_id: str,
        *,
        title: str,
        body: str = "",
        type: str = "notification",
        data: Mapping[str, Any] | None = None,
        ephemeral: bool = False,
    ) -> Notification:
        """Send one notification to one user; returns what was sent."""
        topic = self._scheme.user_notifications(user_id)
        note = Notification.create(title=title, body=body, type=type, data=data)
        if not ephemeral and self._inbox is not None:
            self._inbox.put(user_id, note)
        self.publish(topic, note)
        return note

    def notify_many(
        self,
        user_ids: Iterable[str],
        *,
        title: str,
        body: str = "",
        type: str = "notification",
        data: Mapping[str, Any] | None = None,
        ephemeral: bool = False,
    ) -> list[DeliveryResult]:
        """Send the same notification to many users concurrently.

        Returns one :class:`DeliveryResult` per recipient, in the order given;
        duplicates are sent once. Invalid user ids fail alone.
        """
        note = Notification.create(title=title, body=body, type=type, data=data)
        recipients = list(dict.fromkeys(user_ids))
        results: dict[str, DeliveryResult] = {}
        valid: list[str] = []
        for user_id in recipients:
            try:
                validate_user_id(user_id)
            except ContractError as exc:
                results[user_id] = DeliveryResult(user_id, ok=False, error=str(exc))
            else:
                valid.append(user_id)
        if not ephemeral and self._inbox is not None and valid:
            self._inbox.put_many((user_id, note) for user_id in valid)

        def send(user_id: str) -> DeliveryResult:
            try:
                self.publish(self._scheme.user_notifications(user_id), note)
            except IotNotifyError as exc:
                return DeliveryResult(user_id, ok=False, notification_id=note.id, error=str(exc))
            return DeliveryResult(user_id, ok=True, notification_id=note.id)

        with ThreadPoolExecutor(
            max_workers=min(self._max_workers, max(1, len(valid))),
            thread_name_prefix="iotnotify-fanout",
        ) as pool:
            for result in pool.map(send, valid):
                results[result.user_id] = result
        return [results[user_id] for user_id in recipients]

    def broadcast(
        self,
        *,
        title: str,
        body: str = "",
        type: str = "broadcast",
        data: Mapping[str, Any] | None = None,
    ) -> Notification:
        """Send to everyone subscribed to the deployment's broadcast topic.

        Broadcasts are not written to every inbox: that would cost one write
        per user for a message that is usually only interesting live.
        """
        note = Notification.create(title=title, body=body, type=type, data=data)
        self.publish(self._scheme.broadcast(), note)
        return note

    def notify_game(
        self,
        game_id: str,
        *,
        title: str,
        body: str = "",
        type: str = "game",
        data: Mapping[str, Any] | None = None,
    ) -> Notification:
        """Send to a per-game topic (all players of one game)."""
        note = Notification.create(title=title, body=body, type=type, data=data)
        self.publish(self._scheme.game(game_id), note)
        return note

    @classmethod
    def create(
        cls,
        *,
        app: str,
        stage: str,
        region: str | None = None,
        endpoint: str = "",
        inbox_table: str = "",
        inbox_ttl_days: int = 7,
        session: boto3.session.Session | None = None,
        max_workers: int = DEFAULT_FANOUT_WORKERS,
        dynamodb_endpoint_url: str | None = None,
    ) -> Publisher:
        """A publisher wired to AWS (or to whatever the endpoints point at).

        ``endpoint`` is the data endpoint as a host (``xyz-ats.iot...``, used
        over https) or a full URL (the local emulator's ``http://...``); when
        empty it is discovered once with DescribeEndpoint, unless the standard
        ``AWS_ENDPOINT_URL_IOT_DATA_PLANE`` setting already points boto3 at it.
        """
        session = session or boto3.session.Session(region_name=region)
        iot_data = _iot_data_client(session, endpoint)
        inbox = None
        if inbox_table:
            dynamodb = session.resource("dynamodb", endpoint_url=dynamodb_endpoint_url)
            table = dynamodb.Table(inbox_table)
            inbox = Inbox(table, ttl_days=inbox_ttl_days)
        return cls(
            scheme=TopicScheme(app, stage), iot_data=iot_data, inbox=inbox, max_workers=max_workers
        )

    def close(self) -> None:
        """Nothing to release today; kept so callers can use ``with``."""

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _iot_data_client(session: boto3.session.Session, endpoint: str) -> Any:
    if endpoint:
        url = endpoint if endpoint.startswith(("http://", "https://")) else f"https://{endpoint}"
        return session.client("iot-data", endpoint_url=url)
    client = session.client("iot-data")
    # botocore honours AWS_ENDPOINT_URL_IOT_DATA_PLANE / AWS_ENDPOINT_URL; only
    # when it fell back to the generic regional host do we ask for the
    # account's own ATS endpoint.
    if urlsplit(client.meta.endpoint_url).hostname != _generic_data_host(session):
        return client
    host = IotEndpoint(iot_client=session.client("iot")).host()
    return session.client("iot-data", endpoint_url=f"https://{host}")


def _generic_data_host(session: boto3.session.Session) -> str:
    return f"data-ats.iot.{session.region_name}.amazonaws.com"
