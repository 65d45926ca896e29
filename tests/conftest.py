"""Shared fixtures: a moto-backed AWS account with iotnotify's resources.

Handlers are pointed at it exactly as on AWS, through their environment
(names and ARNs only); moto intercepts the SDK calls in-process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from iotnotify.contract import TopicScheme
from iotnotify.policies import compact_json, subscriber_ceiling_policy

REGION = "us-east-1"
APP = "iotnotify"
STAGE = "test"
# moto intercepts iot-data only on the generic regional host.
IOT_ENDPOINT = "data-ats.iot.us-east-1.amazonaws.com"
API_KEY = "k3y-for-tests-only"  # a fake key inside moto, never a real secret


@dataclass
class FakeAccount:
    """Names and handles of the resources created in moto."""

    session: boto3.session.Session
    role_arn: str
    table_name: str
    queue_url: str
    dlq_url: str
    scheme: TopicScheme
    env: dict[str, str]

    @property
    def sts(self) -> Any:
        return self.session.client("sts")

    def table(self) -> Any:
        return self.session.resource("dynamodb").Table(self.table_name)

    def published(self) -> list[tuple[str, bytes]]:
        """What moto's iot-data recorded, as (topic, payload)."""
        from moto.iotdata.models import iotdata_backends

        return list(iotdata_backends[DEFAULT_ACCOUNT_ID][REGION].published_payloads)


@dataclass(frozen=True)
class FakeUserPool:
    """A moto Cognito user pool whose users have the subs a test chooses."""

    session: boto3.session.Session
    pool_id: str

    @property
    def issuer(self) -> str:
        """The ``iss`` claim of the pool's ID tokens (what the authorizer passes on)."""
        return f"https://cognito-idp.{REGION}.amazonaws.com/{self.pool_id}"

    def add(self, *subs: str) -> None:
        """Users whose ``sub`` is each of ``subs``. Cognito makes every sub a
        UUID; moto lets a test set it, so tests keep readable user ids."""
        client = self.session.client("cognito-idp")
        for sub in subs:
            client.admin_create_user(UserPoolId=self.pool_id, Username=sub)
            client.admin_update_user_attributes(
                UserPoolId=self.pool_id,
                Username=sub,
                UserAttributes=[{"Name": "sub", "Value": sub}],
            )


@pytest.fixture
def user_pool(account: FakeAccount) -> FakeUserPool:
    """A user pool with alice, bob, carol and dave (members must be users of it)."""
    client = account.session.client("cognito-idp")
    pool = FakeUserPool(account.session, client.create_user_pool(PoolName="test")["UserPool"]["Id"])
    pool.add("alice", "bob", "carol", "dave")
    return pool


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_IOT_DATA_PLANE", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)


def create_inbox_table(session: boto3.session.Session, name: str) -> None:
    session.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "userId", "KeyType": "HASH"},
            {"AttributeName": "id", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "userId", "AttributeType": "S"},
            {"AttributeName": "id", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def create_history_table(session: boto3.session.Session, name: str) -> None:
    session.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "room", "KeyType": "HASH"},
            {"AttributeName": "id", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "room", "AttributeType": "S"},
            {"AttributeName": "id", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def create_games_and_presence_tables(session: boto3.session.Session) -> None:
    """The games and presence tables, as ``iotnotify local`` provisions them."""
    from iotnotify.naming import ResourceNames
    from iotnotify_local.provision import ensure_game_and_presence_tables

    ensure_game_and_presence_tables(session, ResourceNames(APP, STAGE, STAGE))


@pytest.fixture
def account(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAccount]:
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        scheme = TopicScheme(APP, STAGE)
        iam = session.client("iam")
        role = iam.create_role(
            RoleName=f"{APP}-{STAGE}-subscriber",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"AWS": f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:root"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
            MaxSessionDuration=3600,
        )["Role"]
        iam.put_role_policy(
            RoleName=role["RoleName"],
            PolicyName="ceiling",
            PolicyDocument=compact_json(
                subscriber_ceiling_policy(scheme, region=REGION, account=DEFAULT_ACCOUNT_ID)
            ),
        )
        table_name = f"{APP}-{STAGE}-inbox"
        create_inbox_table(session, table_name)
        session.client("dynamodb").create_table(
            TableName=f"{APP}-{STAGE}-rooms",
            KeySchema=[{"AttributeName": "room", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "room", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        create_history_table(session, f"{APP}-{STAGE}-chat-history")
        create_games_and_presence_tables(session)
        sqs = session.client("sqs")
        dlq_url = sqs.create_queue(QueueName=f"{APP}-{STAGE}-tasks-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        queue_url = sqs.create_queue(
            QueueName=f"{APP}-{STAGE}-tasks",
            Attributes={
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})
            },
        )["QueueUrl"]
        session.client("ssm").put_parameter(
            Name=f"/{APP}/{STAGE}/notify-api-key", Value=API_KEY, Type="SecureString"
        )
        env = {
            "IOTNOTIFY_APP": APP,
            "IOTNOTIFY_STAGE": STAGE,
            "IOTNOTIFY_INBOX_TABLE": table_name,
            "IOTNOTIFY_ROOMS_TABLE": f"{APP}-{STAGE}-rooms",
            "IOTNOTIFY_CHAT_HISTORY_TABLE": f"{APP}-{STAGE}-chat-history",
            "IOTNOTIFY_GAMES_TABLE": f"{APP}-{STAGE}-games",
            "IOTNOTIFY_PRESENCE_TABLE": f"{APP}-{STAGE}-presence",
            "IOTNOTIFY_SUBSCRIBER_ROLE_ARN": role["Arn"],
            "IOTNOTIFY_TASK_QUEUE_URL": queue_url,
            "IOTNOTIFY_IOT_ENDPOINT": IOT_ENDPOINT,
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        from iotnotify_handlers import clients

        clients.reset()
        yield FakeAccount(
            session=session,
            role_arn=role["Arn"],
            table_name=table_name,
            queue_url=queue_url,
            dlq_url=dlq_url,
            scheme=scheme,
            env=env,
        )
        clients.reset()


def rest_event(
    *,
    method: str = "GET",
    path: str = "/",
    claims: dict[str, Any] | None = None,
    query: dict[str, str] | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    iam_user_arn: str | None = None,
) -> dict[str, Any]:
    """An API Gateway REST proxy event as the Cognito or IAM authorizer leaves it."""
    context: dict[str, Any] = {"identity": {"userArn": iam_user_arn}}
    if claims is not None:
        context["authorizer"] = {"claims": claims}
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers or {},
        "queryStringParameters": query,
        "body": body if body is None or isinstance(body, str) else json.dumps(body),
        "isBase64Encoded": False,
        "requestContext": context,
    }
