"""``iotnotify local`` provisions what the CDK stack synthesises.

The stage ``local`` is synthesised and provisioned into moto side by side;
the IAM documents, names, keys and redrive settings must be equal once the
template's ``${AWS::Region}``/``${AWS::AccountId}`` are resolved.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from infra_helpers import Synth, allowed, normalise, synth
from moto import mock_aws

from iotnotify_local.provision import LocalResources, provision

REGION = "us-east-1"


@pytest.fixture(scope="module")
def template() -> Synth:
    return synth("local")


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LocalResources, Any]]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        yield provision(session, app="iotnotify", stage="local"), session


def resolved(grants: dict[str, set[str]], account: str) -> dict[str, set[str]]:
    def fix(arn: str) -> str:
        return arn.replace("${AWS::Region}", REGION).replace("${AWS::AccountId}", account)

    return {action: {fix(r) for r in resources} for action, resources in grants.items()}


def moto_grants(document: Any) -> dict[str, set[str]]:
    if isinstance(document, str):
        document = json.loads(document)
    statements = []
    for s in document["Statement"]:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        statements.append({"Effect": s["Effect"], "Action": actions, "Resource": resources})
    return allowed(statements)


def logical(template: Synth, prefix: str, kind: str) -> str:
    return next(k for k in template.resources(kind) if k.startswith(prefix))


def test_subscriber_role_ceiling_is_identical(template: Synth, local: tuple) -> None:
    resources, session = local
    role_id = logical(template, "IotSubscriberRole", "AWS::IAM::Role")
    synthesised = resolved(allowed(template.statements_of_role(role_id)), resources.account)
    role_name = resources.subscriber_role_arn.rsplit("/", 1)[1]
    document = session.client("iam").get_role_policy(RoleName=role_name, PolicyName="ceiling")
    assert moto_grants(document["PolicyDocument"]) == synthesised
    assert template.props(role_id)["MaxSessionDuration"] == 3600
    role = session.client("iam").get_role(RoleName=role_name)["Role"]
    assert role["MaxSessionDuration"] == 3600


def test_publisher_grant_is_identical(template: Synth, local: tuple) -> None:
    resources, session = local
    policy_id = logical(template, "IotPublisherPolicy", "AWS::IAM::ManagedPolicy")
    document = template.props(policy_id)["PolicyDocument"]
    synthesised = resolved(
        allowed([normalise(s) for s in document["Statement"]]), resources.account
    )
    iam = session.client("iam")
    user_policy = iam.get_user_policy(UserName=resources.names.publisher_user, PolicyName="publish")
    assert moto_grants(user_policy["PolicyDocument"]) == synthesised
    role_name = resources.functions_role_arn.rsplit("/", 1)[1]
    role_policy = iam.get_role_policy(RoleName=role_name, PolicyName="publish")
    assert moto_grants(role_policy["PolicyDocument"]) == synthesised


def test_names_keys_and_redrive_are_identical(template: Synth, local: tuple) -> None:
    resources, session = local
    names = resources.names
    tables = {
        r["Properties"]["TableName"]: r["Properties"]
        for r in template.resources("AWS::DynamoDB::Table").values()
    }
    dynamodb = session.client("dynamodb")
    for name in (
        names.inbox_table,
        names.rooms_table,
        names.chat_history_table,
        names.games_table,
        names.presence_table,
    ):
        local_keys = dynamodb.describe_table(TableName=name)["Table"]["KeySchema"]
        assert local_keys == tables[name]["KeySchema"]
    for name in (names.inbox_table, names.chat_history_table, names.presence_table):
        assert tables[name]["TimeToLiveSpecification"] == {
            "AttributeName": "expiresAt",
            "Enabled": True,
        }
        ttl = dynamodb.describe_time_to_live(TableName=name)
        assert ttl["TimeToLiveDescription"]["AttributeName"] == "expiresAt"
    queues = {
        r["Properties"]["QueueName"]: r["Properties"]
        for r in template.resources("AWS::SQS::Queue").values()
    }
    assert set(queues) == {names.task_queue, names.task_dlq, names.chat_dlq, names.presence_dlq}
    attributes = session.client("sqs").get_queue_attributes(
        QueueUrl=resources.task_queue_url, AttributeNames=["RedrivePolicy"]
    )["Attributes"]
    local_redrive = json.loads(attributes["RedrivePolicy"])
    assert (
        local_redrive["maxReceiveCount"]
        == queues[names.task_queue]["RedrivePolicy"]["maxReceiveCount"]
    )
    assert local_redrive["deadLetterTargetArn"].endswith(f":{names.task_dlq}")
    pools = [r["Properties"] for r in template.resources("AWS::Cognito::UserPool").values()]
    assert [p["UserPoolName"] for p in pools] == [names.user_pool]
    assert pools[0]["UsernameAttributes"] == ["email"]
    local_pool = session.client("cognito-idp").describe_user_pool(
        UserPoolId=resources.user_pool_id
    )["UserPool"]
    assert local_pool["UsernameConfiguration"] == pools[0]["UsernameConfiguration"]
    ssm = session.client("ssm").get_parameter(Name=names.notify_api_key_parameter)
    assert ssm["Parameter"]["Type"] == "SecureString"
    outputs = json.dumps(template.raw.get("Outputs", {}))
    assert names.notify_api_key_parameter in outputs


def test_offline_topic_rules_equal_the_synthesised_ones(template: Synth, local: tuple) -> None:
    """The emulator runs the very rule CloudFormation creates: same name, same SQL,
    a Lambda action on the same function, the error action on the same DLQ."""
    from iotnotify.contract import TopicScheme
    from iotnotify_emulator.rules import LambdaAction, SqsAction
    from iotnotify_local.topic_rules import emulator_rules

    resources, session = local
    sqs = session.client("sqs")
    offline = emulator_rules(
        TopicScheme("iotnotify", "local"),
        handlers={"moderator": lambda event, context: None, "presence": lambda e, c: None},
        sqs=sqs,
        dead_letter_queue_urls={
            "moderator": resources.chat_dlq_url,
            "presence": resources.presence_dlq_url,
        },
    )
    expected = {
        "iotnotify_local_chat_moderation": (
            resources.names.chat_moderator_function,
            resources.chat_dlq_url,
        ),
        "iotnotify_local_presence": (
            resources.names.presence_function,
            resources.presence_dlq_url,
        ),
    }
    synthesised = {
        r["Properties"]["RuleName"]: r["Properties"]["TopicRulePayload"]
        for r in template.resources("AWS::IoT::TopicRule").values()
    }
    assert {rule.name for rule in offline} == set(synthesised)
    functions = {
        k: r["Properties"].get("FunctionName")  # CDK's own custom-resource handlers have none
        for k, r in template.resources("AWS::Lambda::Function").items()
    }
    queues = {
        k: r["Properties"]["QueueName"] for k, r in template.resources("AWS::SQS::Queue").items()
    }
    for rule in offline:
        payload = synthesised[rule.name]
        assert rule.statement.sql == payload["Sql"]
        [action] = rule.actions
        [cfn_action] = payload["Actions"]
        assert isinstance(action, LambdaAction)
        function_id = cfn_action["Lambda"]["FunctionArn"]["Fn::GetAtt"][0]
        function_name, dlq_url = expected[rule.name]
        assert functions[function_id] == function_name
        assert isinstance(rule.error_action, SqsAction)
        queue_id = payload["ErrorAction"]["Sqs"]["QueueUrl"]["Ref"]
        assert rule.error_action.queue_url == dlq_url
        assert rule.error_action.queue_url.endswith(f"/{queues[queue_id]}")


def test_a_game_server_may_make_every_call_the_python_publisher_makes(
    template: Synth, local: tuple
) -> None:
    # Publisher.create(app, stage, inbox_table=..., games_table=...,
    # presence_table=...) writes the inbox before every publish
    # (PutItem; BatchWriteItem in a fan-out), registers games (UpdateItem),
    # reads presence for skip_offline (Query) and, without endpoint=, finds
    # the data endpoint (iot:DescribeEndpoint). The publisher policy alone
    # grants iot:Publish: on AWS every notify failed on the inbox write,
    # while moto, which enforces no IAM, let the same code work offline.
    resources, session = local
    names = resources.names
    policy_id = logical(template, "GameServerPolicy", "AWS::IAM::ManagedPolicy")
    props = template.props(policy_id)
    assert props["ManagedPolicyName"] == names.game_server_policy
    synthesised = resolved(
        allowed([normalise(s) for s in props["PolicyDocument"]["Statement"]]), resources.account
    )
    table = f"arn:aws:dynamodb:{REGION}:{resources.account}:table"
    assert synthesised == {
        "dynamodb:PutItem": {f"{table}/{names.inbox_table}"},
        "dynamodb:BatchWriteItem": {f"{table}/{names.inbox_table}"},
        "dynamodb:UpdateItem": {f"{table}/{names.games_table}"},
        "dynamodb:Query": {f"{table}/{names.presence_table}"},
        "iot:DescribeEndpoint": {"*"},
    }
    # The local game server identity holds the same grant.
    iam = session.client("iam")
    user_policy = iam.get_user_policy(UserName=names.publisher_user, PolicyName="game-server")
    assert moto_grants(user_policy["PolicyDocument"]) == synthesised


def test_the_local_api_has_the_synthesised_methods_auth_and_required_parameters(
    template: Synth,
) -> None:
    from iotnotify_local.stack import api_routes

    auth = {"COGNITO_USER_POOLS": "cognito", "AWS_IAM": "iam", "NONE": "none"}
    resources = template.resources("AWS::ApiGateway::Resource")

    def path_of(logical_id: str) -> str:
        props = resources[logical_id]["Properties"]
        parent = props["ParentId"]
        prefix = "" if "Fn::GetAtt" in parent else path_of(parent["Ref"])
        return f"{prefix}/{props['PathPart']}"

    synthesised = {}
    for method in template.resources("AWS::ApiGateway::Method").values():
        props = method["Properties"]
        if props["HttpMethod"] == "OPTIONS":
            continue
        required = sorted(k for k, v in (props.get("RequestParameters") or {}).items() if v)
        synthesised[(props["HttpMethod"], path_of(props["ResourceId"]["Ref"]))] = (
            auth[props["AuthorizationType"]],
            required,
        )
    local = {
        (route.method, route.path): (
            route.auth,
            sorted(
                [f"method.request.header.{h}" for h in route.required_headers]
                + [f"method.request.querystring.{q}" for q in route.required_query]
            ),
        )
        for route in api_routes()
    }
    assert local == synthesised
