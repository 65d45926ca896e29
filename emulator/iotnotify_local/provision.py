"""Create, in moto, the same resources the CDK stack creates on AWS.

Names come from :class:`iotnotify.naming.ResourceNames` and IAM documents
from :mod:`iotnotify.policies`, the definitions ``infra/`` uses, so what is
allowed offline is what is allowed on AWS. Locally one role stands in for
the functions' roles (moto does not enforce IAM on DynamoDB, SQS or SSM; the
IoT emulator does enforce the publish grant, which is the one that matters).
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

import boto3

from iotnotify.contract import TopicScheme
from iotnotify.naming import ResourceNames
from iotnotify.policies import (
    compact_json,
    game_server_policy,
    notify_caller_policy,
    publisher_policy,
    subscriber_ceiling_policy,
)

__all__ = [
    "DEMO_DENYLIST",
    "DEMO_USERS",
    "DemoUser",
    "LocalResources",
    "PublisherKeys",
    "ensure_game_and_presence_tables",
    "provision",
]

DEMO_USERS: Final = ("alice", "bob")
DEMO_DENYLIST: Final = ("darn", "heck")
MAX_RECEIVE_COUNT: Final = 3


@dataclass(frozen=True, slots=True)
class DemoUser:
    name: str
    username: str  # the sign-in name (an e-mail address, as on the CDK pool)
    password: str
    sub: str  # the user id: topics and client ids are built from it


@dataclass(frozen=True, slots=True)
class PublisherKeys:
    accessKeyId: str  # noqa: N815 - the state file's field names
    secretAccessKey: str  # noqa: N815


@dataclass(frozen=True, slots=True)
class LocalResources:
    region: str
    account: str
    names: ResourceNames
    user_pool_id: str
    user_pool_client_id: str
    subscriber_role_arn: str
    functions_role_arn: str
    task_queue_url: str
    task_dlq_url: str
    users: tuple[DemoUser, ...]
    publisher: PublisherKeys
    notify_api_key: str = field(repr=False)
    api_id: str = "local"  # the REST API id in execute-api ARNs
    chat_dlq_url: str = ""  # the chat rule's error action and the moderator's failures
    presence_dlq_url: str = ""  # the presence rule's error action and the function's failures

    def users_json(self) -> list[dict[str, Any]]:
        return [asdict(user) for user in self.users]


def _password() -> str:
    # Meets Cognito's default policy: upper, lower, digit, symbol, length >= 8.
    body = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(14))
    return f"Aa1!{body}"


def _trust(principal: dict[str, Any]) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}],
        }
    )


def ensure_game_and_presence_tables(session: boto3.session.Session, names: ResourceNames) -> str:
    """Create the games and presence tables (unless they exist) and the
    presence DLQ; returns the DLQ's URL.

    Keys and TTL as ``infra/`` (games: ``gameId``; presence: ``userId`` +
    ``sessionId`` with TTL on ``expiresAt``).
    """
    dynamodb = session.client("dynamodb")
    existing = set(dynamodb.list_tables()["TableNames"])
    tables: tuple[tuple[str, tuple[tuple[str, Literal["HASH", "RANGE"]], ...]], ...] = (
        (names.games_table, (("gameId", "HASH"),)),
        (names.presence_table, (("userId", "HASH"), ("sessionId", "RANGE"))),
    )
    for table, keys in tables:
        if table in existing:
            continue
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": n, "KeyType": t} for n, t in keys],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n, _ in keys],
            BillingMode="PAY_PER_REQUEST",
        )
        if table == names.presence_table:
            dynamodb.update_time_to_live(
                TableName=table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"},
            )
    return str(session.client("sqs").create_queue(QueueName=names.presence_dlq)["QueueUrl"])


def provision(
    session: boto3.session.Session, *, app: str, stage: str, ssm_stage: str | None = None
) -> LocalResources:
    """Create every resource in the moto account ``session`` points at."""
    region = session.region_name or "us-east-1"
    names = ResourceNames(app, stage, ssm_stage or stage)
    scheme = TopicScheme(app, stage)
    account = session.client("sts").get_caller_identity()["Account"]
    iam = session.client("iam")

    functions_role = iam.create_role(
        RoleName=names.functions_role,
        AssumeRolePolicyDocument=_trust({"Service": "lambda.amazonaws.com"}),
    )["Role"]
    iam.put_role_policy(
        RoleName=names.functions_role,
        PolicyName="publish",
        PolicyDocument=compact_json(publisher_policy(scheme, region=region, account=account)),
    )
    subscriber_role = iam.create_role(
        RoleName=names.subscriber_role,
        AssumeRolePolicyDocument=_trust({"AWS": functions_role["Arn"]}),
        MaxSessionDuration=3600,
    )["Role"]
    iam.put_role_policy(
        RoleName=names.subscriber_role,
        PolicyName="ceiling",
        PolicyDocument=compact_json(
            subscriber_ceiling_policy(scheme, region=region, account=account)
        ),
    )
    iam.create_user(UserName=names.publisher_user)
    iam.put_user_policy(
        UserName=names.publisher_user,
        PolicyName="publish",
        PolicyDocument=compact_json(publisher_policy(scheme, region=region, account=account)),
    )
    # What the Python publisher needs beyond iot:Publish, as the CDK stack's
    # game-server policy grants it (moto enforces neither; the parity test
    # compares the documents).
    iam.put_user_policy(
        UserName=names.publisher_user,
        PolicyName="game-server",
        PolicyDocument=compact_json(
            game_server_policy(
                region=region,
                account=account,
                inbox_table=names.inbox_table,
                games_table=names.games_table,
                presence_table=names.presence_table,
            )
        ),
    )
    key = iam.create_access_key(UserName=names.publisher_user)["AccessKey"]
    # API Gateway ids are 10 lower-case letters and digits.
    api_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(10))
    # As on AWS, only an identity granted execute-api:Invoke on the route may
    # call POST /notify with SigV4; the publisher user is that backend here.
    caller = iam.create_policy(
        PolicyName=f"{names.app}-{names.stage}-notify-caller",
        PolicyDocument=compact_json(
            notify_caller_policy(region=region, account=account, api_id=api_id, stage=stage)
        ),
    )["Policy"]
    iam.attach_user_policy(UserName=names.publisher_user, PolicyArn=caller["Arn"])

    dynamodb = session.client("dynamodb")
    tables: tuple[tuple[str, tuple[tuple[str, Literal["HASH", "RANGE"]], ...]], ...] = (
        (names.inbox_table, (("userId", "HASH"), ("id", "RANGE"))),
        (names.rooms_table, (("room", "HASH"),)),
        (names.chat_history_table, (("room", "HASH"), ("id", "RANGE"))),
    )
    for table, keys in tables:
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": n, "KeyType": t} for n, t in keys],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n, _ in keys],
            BillingMode="PAY_PER_REQUEST",
        )
    for table in (names.inbox_table, names.chat_history_table):
        dynamodb.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"},
        )

    presence_dlq_url = ensure_game_and_presence_tables(session, names)
    sqs = session.client("sqs")
    chat_dlq_url = sqs.create_queue(QueueName=names.chat_dlq)["QueueUrl"]
    dlq_url = sqs.create_queue(QueueName=names.task_dlq)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=names.task_queue,
        Attributes={
            "VisibilityTimeout": "2",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
            ),
        },
    )["QueueUrl"]

    # On AWS this parameter is created beside the API key (it is shared by
    # ephemeral stages); locally a short demo list stands in.
    session.client("ssm").put_parameter(
        Name=names.chat_denylist_parameter,
        Value=",".join(DEMO_DENYLIST),
        Type="StringList",
        Overwrite=True,
    )
    api_key = secrets.token_urlsafe(24)
    session.client("ssm").put_parameter(
        Name=names.notify_api_key_parameter, Value=api_key, Type="SecureString", Overwrite=True
    )

    cognito = session.client("cognito-idp")
    pool_id = cognito.create_user_pool(
        PoolName=names.user_pool,
        UsernameAttributes=["email"],
        AutoVerifiedAttributes=["email"],
        # As the CDK pool; moto 5 stores it without enforcing it (clients lower-case).
        UsernameConfiguration={"CaseSensitive": False},
    )["UserPool"]["Id"]
    client_id = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName=names.user_pool_client,
        GenerateSecret=False,
        ExplicitAuthFlows=[
            "ALLOW_USER_PASSWORD_AUTH",
            "ALLOW_USER_SRP_AUTH",
            "ALLOW_REFRESH_TOKEN_AUTH",
        ],
    )["UserPoolClient"]["ClientId"]
    users = []
    for name in DEMO_USERS:
        username = f"{name}@example.com"
        password = _password()
        created = cognito.admin_create_user(
            UserPoolId=pool_id,
            Username=username,
            UserAttributes=[
                {"Name": "email", "Value": username},
                {"Name": "email_verified", "Value": "true"},
            ],
            MessageAction="SUPPRESS",
        )["User"]
        cognito.admin_set_user_password(
            UserPoolId=pool_id, Username=username, Password=password, Permanent=True
        )
        sub = next(a["Value"] for a in created["Attributes"] if a["Name"] == "sub")
        users.append(DemoUser(name=name, username=username, password=password, sub=sub))

    return LocalResources(
        region=region,
        account=account,
        names=names,
        user_pool_id=pool_id,
        user_pool_client_id=client_id,
        subscriber_role_arn=subscriber_role["Arn"],
        functions_role_arn=functions_role["Arn"],
        task_queue_url=queue_url,
        task_dlq_url=dlq_url,
        chat_dlq_url=chat_dlq_url,
        presence_dlq_url=presence_dlq_url,
        users=tuple(users),
        publisher=PublisherKeys(key["AccessKeyId"], key["SecretAccessKey"]),
        notify_api_key=api_key,
        api_id=api_id,
    )
