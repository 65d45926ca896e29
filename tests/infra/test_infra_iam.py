"""Every IAM statement of every function and of the subscriber role.

Least privilege is asserted as equality: a new permission anywhere fails a
test until someone writes it down here on purpose.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

import pytest
from infra_helpers import Synth, allowed, as_list, render, synth

from iotnotify.contract import TopicScheme
from iotnotify.policies import publisher_policy, subscriber_ceiling_policy

REGION, ACCOUNT = "${AWS::Region}", "${AWS::AccountId}"
PARTITION = "${AWS::Partition}"
XRAY = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}
STAGE_TOPICS = f"arn:aws:iot:{REGION}:{ACCOUNT}:topic/iotnotify/dev/*"


@pytest.fixture(scope="module")
def dev() -> Synth:
    return synth("dev")


def grants_of(dev: Synth, suffix: str) -> dict[str, set[str]]:
    """A function's grants less the baseline every function has (its own
    log group and X-Ray), which are asserted once below."""
    grants = allowed(dev.statements_of_role(dev.role_of(suffix)))
    log_group = dev.function(suffix)["LoggingConfig"]["LogGroup"]["Ref"]
    for action in LOGS:
        assert grants.pop(action) == {"${" + log_group + ".Arn}"}
    for action in XRAY:
        # X-Ray has no resource-level permissions: '*' is the only resource.
        assert grants.pop(action) == {"*"}
    return grants


def logical(dev: Synth, prefix: str, kind: str) -> str:
    (match,) = [k for k in dev.resources(kind) if k.startswith(prefix)]
    return match


def test_function_roles_have_no_managed_aws_policies(dev: Synth) -> None:
    for suffix in ("token", "notify", "notifications", "task", "task-worker", "chats"):
        assert "ManagedPolicyArns" not in dev.props(dev.role_of(suffix)), suffix


def test_no_wildcard_resource_except_where_aws_has_no_resource_type(dev: Synth) -> None:
    ok_star = XRAY | {
        "iot:DescribeEndpoint",
        "cloudfront:GetInvalidation",
        "cloudfront:CreateInvalidation",
    }
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for logical_id, resource in dev.resources(kind).items():
            statements = resource["Properties"]["PolicyDocument"]["Statement"]
            for statement in statements:
                if statement.get("Resource") == "*" or "*" in (statement.get("Resource") or []):
                    actions = statement["Action"]
                    actions = set(actions if isinstance(actions, list) else [actions])
                    assert actions <= ok_star, (logical_id, actions)


def test_token_function_assumes_the_subscriber_role_and_reads_rooms(dev: Synth) -> None:
    role = logical(dev, "IotSubscriberRole", "AWS::IAM::Role")
    rooms = "${" + logical(dev, "StorageRooms", "AWS::DynamoDB::Table") + ".Arn}"
    games = "${" + logical(dev, "StorageGames", "AWS::DynamoDB::Table") + ".Arn}"
    assert grants_of(dev, "token") == {
        "sts:AssumeRole": {"${" + role + ".Arn}"},
        # ?rooms=&games=: may the caller use each channel (exists, allowed)?
        "dynamodb:GetItem": {rooms, games},
        # A member asking a token for a room joins it (visible to presence).
        "dynamodb:UpdateItem": {rooms},
    }


def test_subscriber_role_is_trusted_only_by_the_token_function(dev: Synth) -> None:
    role = dev.props(logical(dev, "IotSubscriberRole", "AWS::IAM::Role"))
    assert role["MaxSessionDuration"] == 3600
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"AWS": {"Fn::GetAtt": [dev.role_of("token"), "Arn"]}},
        }
    ]


def test_subscriber_role_policy_is_the_ceiling_and_publishes_only_room_inputs(
    dev: Synth,
) -> None:
    role_id = logical(dev, "IotSubscriberRole", "AWS::IAM::Role")
    statements = dev.statements_of_role(role_id)
    grants = allowed(statements)
    assert grants == {
        "iot:Connect": {f"arn:aws:iot:{REGION}:{ACCOUNT}:client/*.*"},
        "iot:Subscribe": {f"arn:aws:iot:{REGION}:{ACCOUNT}:topicfilter/iotnotify/dev/*"},
        "iot:Receive": {f"arn:aws:iot:{REGION}:{ACCOUNT}:topic/iotnotify/dev/*"},
        # Clients write only to rooms' input topics, which the moderation rule reads.
        "iot:Publish": {f"arn:aws:iot:{REGION}:{ACCOUNT}:topic/iotnotify/dev/chat/*/input"},
    }
    assert not any(fnmatchcase("iot:RetainPublish", a) for a in grants)
    # The very document policies.py builds (one definition for AWS and local).
    expected = subscriber_ceiling_policy(
        TopicScheme("iotnotify", "dev"), region=REGION, account=ACCOUNT
    )
    assert [s["Sid"] for s in statements] == [s["Sid"] for s in expected["Statement"]]


def test_notify_publishes_in_stage_writes_inbox_reads_api_key_and_games(dev: Synth) -> None:
    inbox = logical(dev, "StorageInbox", "AWS::DynamoDB::Table")
    games = logical(dev, "StorageGames", "AWS::DynamoDB::Table")
    assert grants_of(dev, "notify") == {
        "iot:Publish": {STAGE_TOPICS},
        "dynamodb:PutItem": {"${" + inbox + ".Arn}"},
        "dynamodb:BatchWriteItem": {"${" + inbox + ".Arn}"},
        "dynamodb:GetItem": {"${" + games + ".Arn}"},
        "ssm:GetParameter": {
            f"arn:{PARTITION}:ssm:{REGION}:{ACCOUNT}:parameter/iotnotify/dev/notify-api-key"
        },
    }


def test_notifications_can_only_query_the_inbox_and_leave_a_catch_up_hint(dev: Synth) -> None:
    inbox = logical(dev, "StorageInbox", "AWS::DynamoDB::Table")
    presence = logical(dev, "StoragePresence", "AWS::DynamoDB::Table")
    assert grants_of(dev, "notifications") == {
        "dynamodb:Query": {"${" + inbox + ".Arn}"},
        "dynamodb:PutItem": {"${" + presence + ".Arn}"},
    }


def test_games_registers_games_and_reads_the_api_key_only(dev: Synth) -> None:
    games = logical(dev, "StorageGames", "AWS::DynamoDB::Table")
    grants = grants_of(dev, "games")
    assert grants.pop("dynamodb:UpdateItem") == {"${" + games + ".Arn}"}
    [parameter] = [render(r) for r in grants.pop("ssm:GetParameter")]
    assert parameter.endswith(":parameter/iotnotify/dev/notify-api-key")
    assert grants == {}


def test_presence_reads_memberships_and_sessions_only(dev: Synth) -> None:
    arn = {
        name: "${" + logical(dev, f"Storage{name}", "AWS::DynamoDB::Table") + ".Arn}"
        for name in ("Rooms", "Games", "Presence")
    }
    assert grants_of(dev, "presence") == {
        "dynamodb:Scan": {arn["Rooms"], arn["Games"]},
        "dynamodb:Query": {arn["Presence"]},
    }
    grants = grants_of(dev, "presence-events")
    assert grants.pop("dynamodb:UpdateItem") == {arn["Presence"]}
    # The on-failure destination (the presence rule's DLQ).
    assert set(grants) == {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}


def test_task_can_only_send_to_the_task_queue(dev: Synth) -> None:
    queue = logical(dev, "TasksQueue", "AWS::SQS::Queue")
    assert grants_of(dev, "task") == {"sqs:SendMessage": {"${" + queue + ".Arn}"}}


def test_worker_consumes_queue_publishes_only_under_stage_prefix(dev: Synth) -> None:
    queue = "${" + logical(dev, "TasksQueue", "AWS::SQS::Queue") + ".Arn}"
    inbox = "${" + logical(dev, "StorageInbox", "AWS::DynamoDB::Table") + ".Arn}"
    grants = grants_of(dev, "task-worker")
    assert grants == {
        "iot:Publish": {STAGE_TOPICS},
        "dynamodb:PutItem": {inbox},
        "dynamodb:BatchWriteItem": {inbox},
        "sqs:ReceiveMessage": {queue},
        "sqs:DeleteMessage": {queue},
        "sqs:ChangeMessageVisibility": {queue},
        "sqs:GetQueueAttributes": {queue},
        "sqs:GetQueueUrl": {queue},
    }
    # Under IAM's matching, the grant covers this stage's topics and no other.
    (pattern,) = grants["iot:Publish"]
    prefix = f"arn:aws:iot:{REGION}:{ACCOUNT}:topic/"
    assert fnmatchcase(prefix + "iotnotify/dev/user/al/notifications", pattern)
    assert not fnmatchcase(prefix + "iotnotify/prod/user/al/notifications", pattern)
    assert not fnmatchcase(prefix + "other/dev/broadcast", pattern)


def test_chats_manages_rooms_and_reads_history_only(dev: Synth) -> None:
    rooms = "${" + logical(dev, "StorageRooms", "AWS::DynamoDB::Table") + ".Arn}"
    history = "${" + logical(dev, "StorageChatHistory", "AWS::DynamoDB::Table") + ".Arn}"
    pool = "${" + logical(dev, "IdentityUserPool", "AWS::Cognito::UserPool") + ".Arn}"
    assert grants_of(dev, "chats") == {
        "cognito-idp:ListUsers": {pool},  # members must be users of the pool
        "dynamodb:GetItem": {rooms},
        "dynamodb:PutItem": {rooms},
        "dynamodb:UpdateItem": {rooms},
        "dynamodb:ConditionCheckItem": {rooms},
        "dynamodb:Scan": {rooms},
        "dynamodb:Query": {history},
    }


def test_publisher_policy_is_policies_publisher_policy(dev: Synth) -> None:
    (props,) = [
        r["Properties"]
        for r in dev.resources("AWS::IAM::ManagedPolicy").values()
        if r["Properties"]["ManagedPolicyName"] == "iotnotify-dev-publisher"
    ]
    assert props["ManagedPolicyName"] == "iotnotify-dev-publisher"
    expected = publisher_policy(TopicScheme("iotnotify", "dev"), region=REGION, account=ACCOUNT)
    (statement,) = props["PolicyDocument"]["Statement"]
    assert statement["Sid"] == expected["Statement"][0]["Sid"]
    assert statement["Action"] == "iot:Publish"
    # Attached to the three publishing functions and nothing else.
    assert sorted(r["Ref"] for r in props["Roles"]) == sorted(
        [dev.role_of("notify"), dev.role_of("task-worker"), dev.role_of("chat-moderator")]
    )


def test_endpoint_lookup_may_only_describe_the_endpoint(dev: Synth) -> None:
    (policy,) = [
        r for k, r in dev.resources("AWS::IAM::Policy").items() if k.startswith("IotEndpointLookup")
    ]
    assert policy["Properties"]["PolicyDocument"]["Statement"] == [
        {"Action": "iot:DescribeEndpoint", "Effect": "Allow", "Resource": "*"}
    ]


def test_queues_refuse_plain_http(dev: Synth) -> None:
    policies = dev.resources("AWS::SQS::QueuePolicy").values()
    assert len(policies) == 4  # tasks, tasks DLQ, chat DLQ, presence DLQ
    for policy in policies:
        (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_notify_caller_policy_allows_only_post_notify_and_post_games(dev: Synth) -> None:
    policies = {
        r["Properties"]["ManagedPolicyName"]: r["Properties"]
        for r in dev.resources("AWS::IAM::ManagedPolicy").values()
    }
    props = policies["iotnotify-dev-notify-caller"]
    assert "Roles" not in props  # for the operator to attach to a backend
    (statement,) = props["PolicyDocument"]["Statement"]
    assert statement["Action"] == "execute-api:Invoke"
    resources = [render(r) for r in as_list(statement["Resource"])]
    assert sorted(r.rsplit("/dev/", 1)[1] for r in resources) == ["POST/games", "POST/notify"]
    assert all("${ApiRestApi" in r for r in resources)
