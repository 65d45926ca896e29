"""Data: the notification inbox, chat rooms and history, games and presence.

QoS 0 drops what is sent while a client is away, so every notification
worth keeping is also written to the inbox (``userId`` + sortable ``id``),
read back with ``GET /notifications?since=``. Entries expire through the
``expiresAt`` TTL attribute, so the table does not grow without bound.
Chat history (``room`` + message ``id``) expires the same way; the chat
moderator also keeps its per-sender rate counters there (``#rate#{user}``).
Games (``gameId`` -> players) are written by game servers; presence keeps
one record per MQTT session (``userId`` + ``sessionId``, expiring through
``expiresAt``), written by the presence rule's function
(:mod:`iotnotify.presence`).
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from iotnotify_infra.config import StageConfig

__all__ = ["Storage"]


class Storage(Construct):
    """The inbox, rooms, chat-history, games and presence tables (on-demand,
    point-in-time recovery)."""

    inbox: dynamodb.Table
    rooms: dynamodb.Table
    chat_history: dynamodb.Table
    games: dynamodb.Table
    presence: dynamodb.Table

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        pitr = dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True)
        self.inbox = dynamodb.Table(
            self,
            "Inbox",
            table_name=config.names.inbox_table,
            partition_key=dynamodb.Attribute(name="userId", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            time_to_live_attribute="expiresAt",
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=pitr,
            removal_policy=removal,
        )
        self.rooms = dynamodb.Table(
            self,
            "Rooms",
            table_name=config.names.rooms_table,
            partition_key=dynamodb.Attribute(name="room", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=pitr,
            removal_policy=removal,
        )
        self.games = dynamodb.Table(
            self,
            "Games",
            table_name=config.names.games_table,
            partition_key=dynamodb.Attribute(name="gameId", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=pitr,
            removal_policy=removal,
        )
        self.presence = dynamodb.Table(
            self,
            "Presence",
            table_name=config.names.presence_table,
            partition_key=dynamodb.Attribute(name="userId", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sessionId", type=dynamodb.AttributeType.STRING),
            time_to_live_attribute="expiresAt",
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=pitr,
            # Rebuilt from the next lifecycle events: nothing worth keeping.
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.chat_history = dynamodb.Table(
            self,
            "ChatHistory",
            table_name=config.names.chat_history_table,
            partition_key=dynamodb.Attribute(name="room", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            time_to_live_attribute="expiresAt",
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=pitr,
            removal_policy=removal,
        )
