"""The chat moderation rule in the synthesised template (issue 13).

The rule is the package's definition, its Lambda action invokes the
moderator, its error action writes to an SQS DLQ through a role only IoT can
assume, the invoke permission is scoped to this rule's ARN and account, and
the moderator may do exactly what its handler does.
"""

from __future__ import annotations

from typing import Any

import pytest
from infra_helpers import Synth, allowed, render, synth
from test_infra_iam import ACCOUNT, PARTITION, REGION, STAGE_TOPICS, grants_of

from iotnotify.contract import TopicScheme
from iotnotify.topic_rules import AWS_IOT_SQL_VERSION, chat_moderation_rule
from iotnotify_handlers.settings import ENV


@pytest.fixture(scope="module")
def dev() -> Synth:
    return synth("dev")


def only(dev: Synth, kind: str, **props: Any) -> tuple[str, dict[str, Any]]:
    """The one resource of ``kind`` whose properties include ``props``."""
    [(logical_id, resource)] = [
        (k, r)
        for k, r in dev.resources(kind).items()
        if all(r["Properties"].get(p) == v for p, v in props.items())
    ]
    return logical_id, resource["Properties"]


CHAT_RULE = {"RuleName": "iotnotify_dev_chat_moderation"}


def chat_dlq(dev: Synth) -> str:
    [logical_id] = [
        k
        for k, r in dev.resources("AWS::SQS::Queue").items()
        if r["Properties"]["QueueName"] == "iotnotify-dev-chat-dlq"
    ]
    return logical_id


def test_the_rule_is_the_packages_definition_with_lambda_and_error_actions(dev: Synth) -> None:
    _, rule = only(dev, "AWS::IoT::TopicRule", **CHAT_RULE)
    definition = chat_moderation_rule(TopicScheme("iotnotify", "dev"))
    payload = rule["TopicRulePayload"]
    assert rule["RuleName"] == definition.name == "iotnotify_dev_chat_moderation"
    assert payload["Sql"] == definition.sql
    assert payload["Sql"] == (
        "SELECT encode(*, 'base64') AS payload, topic(4) AS room, clientid() AS clientId, "
        "timestamp() AS receivedAt FROM 'iotnotify/dev/chat/+/input'"
    )
    assert payload["AwsIotSqlVersion"] == AWS_IOT_SQL_VERSION
    assert payload["RuleDisabled"] is False
    moderator = dev.function_id("chat-moderator")
    assert payload["Actions"] == [{"Lambda": {"FunctionArn": {"Fn::GetAtt": [moderator, "Arn"]}}}]
    sqs = payload["ErrorAction"]["Sqs"]
    assert sqs["QueueUrl"] == {"Ref": chat_dlq(dev)}
    assert sqs["UseBase64"] is False
    role_id = sqs["RoleArn"]["Fn::GetAtt"][0]
    role = dev.props(role_id)
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"Service": "iot.amazonaws.com"},
        }
    ]
    assert allowed(dev.statements_of_role(role_id)) == {
        "sqs:SendMessage": {"${" + chat_dlq(dev) + ".Arn}"}
    }


def test_only_this_rule_in_this_account_may_invoke_the_moderator(dev: Synth) -> None:
    rule_id, _ = only(dev, "AWS::IoT::TopicRule", **CHAT_RULE)
    moderator = dev.function_id("chat-moderator")
    permissions = [
        r["Properties"]
        for r in dev.resources("AWS::Lambda::Permission").values()
        if r["Properties"]["FunctionName"] == {"Fn::GetAtt": [moderator, "Arn"]}
    ]
    assert permissions == [
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Fn::GetAtt": [moderator, "Arn"]},
            "Principal": "iot.amazonaws.com",
            "SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]},
            "SourceAccount": {"Ref": "AWS::AccountId"},
        }
    ]


def test_the_dlq_is_encrypted_tls_only_and_catches_failed_invocations(dev: Synth) -> None:
    queue = dev.props(chat_dlq(dev))
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    moderator = dev.function_id("chat-moderator")
    _, invoke_config = only(dev, "AWS::Lambda::EventInvokeConfig", FunctionName={"Ref": moderator})
    assert invoke_config["FunctionName"] == {"Ref": moderator}
    assert invoke_config["MaximumRetryAttempts"] == 2
    assert invoke_config["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": [chat_dlq(dev), "Arn"]}}
    }
    policies = [
        r["Properties"]["PolicyDocument"]["Statement"]
        for r in dev.resources("AWS::SQS::QueuePolicy").values()
        if {"Ref": chat_dlq(dev)} in r["Properties"]["Queues"]
    ]
    [statements] = policies
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    )


def test_moderator_may_count_append_publish_read_denylist_and_dead_letter(dev: Synth) -> None:
    history = next(
        k
        for k, r in dev.resources("AWS::DynamoDB::Table").items()
        if r["Properties"]["TableName"] == "iotnotify-dev-chat-history"
    )
    grants = grants_of(dev, "chat-moderator")
    assert grants.pop("iot:Publish") == {STAGE_TOPICS}
    assert grants.pop("dynamodb:PutItem") == {"${" + history + ".Arn}"}
    # A repeated input reads back the message its first attempt stored.
    assert grants.pop("dynamodb:GetItem") == {"${" + history + ".Arn}"}
    assert grants.pop("dynamodb:UpdateItem") == {"${" + history + ".Arn}"}
    assert grants.pop("ssm:GetParameter") == {
        f"arn:{PARTITION}:ssm:{REGION}:{ACCOUNT}:parameter/iotnotify/dev/chat-denylist"
    }
    # The on-failure destination (CDK's SqsDestination uses grant_send_messages).
    for action in ("sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"):
        assert grants.pop(action) == {"${" + chat_dlq(dev) + ".Arn}"}
    assert grants == {}


def test_ephemeral_stages_read_the_shared_denylist() -> None:
    feat = synth("feat-x", "dev")
    statements = feat.statements_of_role(feat.role_of("chat-moderator"))
    resources = allowed(statements)["ssm:GetParameter"]
    assert {render(r) for r in resources} == {
        f"arn:{PARTITION}:ssm:{REGION}:{ACCOUNT}:parameter/iotnotify/dev/chat-denylist"
    }
    names = {r["Properties"]["RuleName"] for r in feat.resources("AWS::IoT::TopicRule").values()}
    assert names == {"iotnotify_feat_x_chat_moderation", "iotnotify_feat_x_presence"}


def test_the_presence_rule_reads_lifecycle_events_into_its_function(dev: Synth) -> None:
    """Issue 14: lifecycle events -> presence function, with the same DLQ set-up as chat."""
    from iotnotify.topic_rules import presence_rule

    definition = presence_rule(TopicScheme("iotnotify", "dev"))
    rule_id, rule = only(dev, "AWS::IoT::TopicRule", RuleName="iotnotify_dev_presence")
    payload = rule["TopicRulePayload"]
    assert payload["Sql"] == definition.sql
    assert "FROM '$aws/events/presence/+/+'" in payload["Sql"]
    # connect_failed events share that filter: presence is not invoked for them
    assert payload["Sql"].endswith("WHERE eventType = 'connected' OR eventType = 'disconnected'")
    function = dev.function_id("presence-events")
    assert payload["Actions"] == [{"Lambda": {"FunctionArn": {"Fn::GetAtt": [function, "Arn"]}}}]
    [dlq] = [
        k
        for k, r in dev.resources("AWS::SQS::Queue").items()
        if r["Properties"]["QueueName"] == "iotnotify-dev-presence-dlq"
    ]
    assert payload["ErrorAction"]["Sqs"]["QueueUrl"] == {"Ref": dlq}
    _, permission = only(
        dev,
        "AWS::Lambda::Permission",
        FunctionName={"Fn::GetAtt": [function, "Arn"]},
        Principal="iot.amazonaws.com",
    )
    assert permission["SourceArn"] == {"Fn::GetAtt": [rule_id, "Arn"]}
    assert permission["SourceAccount"] == {"Ref": "AWS::AccountId"}
    _, invoke_config = only(dev, "AWS::Lambda::EventInvokeConfig", FunctionName={"Ref": function})
    assert invoke_config["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": [dlq, "Arn"]}}
    }
    presence = next(
        r["Properties"]
        for r in dev.resources("AWS::DynamoDB::Table").values()
        if r["Properties"]["TableName"] == "iotnotify-dev-presence"
    )
    assert presence["KeySchema"] == [
        {"AttributeName": "userId", "KeyType": "HASH"},
        {"AttributeName": "sessionId", "KeyType": "RANGE"},
    ]
    assert presence["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}


def test_the_moderator_counts_rejections_in_the_apps_metrics_namespace(dev: Synth) -> None:
    # Rejected chat input is the EMF metric ChatInputRejected{reason} only
    # where this is set (chat_moderation.Rejections); locally it is not.
    variables = dev.function("chat-moderator")["Environment"]["Variables"]
    assert variables[ENV["metrics_namespace"]] == "iotnotify"
