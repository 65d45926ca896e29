"""Every resource of one stage, asserted on the synthesised template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk.assertions import Match
from infra_helpers import Synth, render, synth

from iotnotify_handlers.settings import ENV
from iotnotify_handlers.tasks import MAX_DEMO_WORK_SECONDS
from iotnotify_infra.functions import FUNCTION_SPECS
from iotnotify_infra.stack import ROOMS_TABLE_ENV


@pytest.fixture(scope="module")
def dev() -> Synth:
    return synth("dev")


def test_resource_counts(dev: Synth) -> None:
    t = dev.template
    t.resource_count_is("AWS::Cognito::UserPool", 1)
    t.resource_count_is("AWS::Cognito::UserPoolClient", 1)
    # inbox, rooms, chat history, games, presence
    t.resource_count_is("AWS::DynamoDB::Table", 5)
    t.resource_count_is("AWS::SQS::Queue", 4)  # tasks, tasks DLQ, chat DLQ, presence DLQ
    t.resource_count_is("AWS::IoT::TopicRule", 2)  # chat moderation, presence
    t.resource_count_is("AWS::ApiGateway::RestApi", 1)
    t.resource_count_is("AWS::ApiGateway::Authorizer", 1)
    t.resource_count_is("AWS::Lambda::EventSourceMapping", 1)
    t.resource_count_is("AWS::S3::Bucket", 1)
    t.resource_count_is("AWS::CloudFront::Distribution", 1)
    t.resource_count_is("AWS::CloudFront::OriginAccessControl", 1)
    t.resource_count_is("Custom::CDKBucketDeployment", 1)
    t.resource_count_is("Custom::AWS", 1)  # the IoT endpoint lookup
    t.resource_count_is("AWS::IAM::ManagedPolicy", 3)  # publisher, game server, notify caller
    # No SSM parameter is created: the API key is referenced, set by hand.
    t.resource_count_is("AWS::SSM::Parameter", 0)
    functions = dev.resources("AWS::Lambda::Function").values()
    names = {r["Properties"].get("FunctionName") for r in functions}
    assert {dev.config.name(s.suffix) for s in FUNCTION_SPECS} <= names


def test_user_pool_email_sign_in_and_self_sign_up(dev: Synth) -> None:
    dev.template.has_resource_properties(
        "AWS::Cognito::UserPool",
        {
            "UserPoolName": "iotnotify-dev-users",
            "UsernameAttributes": ["email"],
            "AutoVerifiedAttributes": ["email"],
            "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": False},
        },
    )


def test_user_pool_sign_in_ignores_the_case_of_the_e_mail(dev: Synth) -> None:
    # Issue 12 item 8: ALICE@example.com must sign in as alice@example.com.
    dev.template.has_resource_properties(
        "AWS::Cognito::UserPool",
        {"UsernameConfiguration": {"CaseSensitive": False}},
    )


def test_user_pool_feature_plan_is_set_explicitly_to_lite(dev: Synth) -> None:
    # Issue 12 item 11: left unset, a new pool is Essentials (~3x Lite per MAU).
    dev.template.has_resource_properties("AWS::Cognito::UserPool", {"UserPoolTier": "LITE"})


def test_user_pool_feature_plan_is_configurable() -> None:
    from iotnotify_infra.config import StageConfig, StageConfigError

    context = {"stageName": "dev", "cognitoFeaturePlan": "Essentials"}
    assert StageConfig.from_context(context.get).cognito_feature_plan == "essentials"
    with pytest.raises(StageConfigError, match="cognitoFeaturePlan"):
        StageConfig(cognito_feature_plan="gold")


def test_public_client_allows_srp_password_and_refresh(dev: Synth) -> None:
    dev.template.has_resource_properties(
        "AWS::Cognito::UserPoolClient",
        {
            "GenerateSecret": False,
            "ExplicitAuthFlows": Match.array_equals(
                ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
            ),
            "RefreshTokenValidity": Match.any_value(),
        },
    )


def test_outputs_name_what_clients_need(dev: Synth) -> None:
    outputs = dev.raw["Outputs"]
    for key in (
        "UserPoolId",
        "UserPoolClientId",
        "ApiUrl",
        "IotEndpoint",
        "Region",
        "WebUrl",
        "GameServerPolicyArn",
    ):
        assert key in outputs, key
    assert render(outputs["IotEndpoint"]["Value"]).endswith(".endpointAddress}")
    assert outputs["NotifyApiKeyParameter"]["Value"] == "/iotnotify/dev/notify-api-key"


def test_inbox_table(dev: Synth) -> None:
    dev.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": "iotnotify-dev-inbox",
            "KeySchema": [
                {"AttributeName": "userId", "KeyType": "HASH"},
                {"AttributeName": "id", "KeyType": "RANGE"},
            ],
            "AttributeDefinitions": Match.array_equals(
                [
                    {"AttributeName": "userId", "AttributeType": "S"},
                    {"AttributeName": "id", "AttributeType": "S"},
                ]
            ),
            "BillingMode": "PAY_PER_REQUEST",
            "TimeToLiveSpecification": {"AttributeName": "expiresAt", "Enabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        },
    )


def test_rooms_table(dev: Synth) -> None:
    dev.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": "iotnotify-dev-rooms",
            "KeySchema": [{"AttributeName": "room", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
        },
    )


def test_chat_history_table_expires_entries(dev: Synth) -> None:
    dev.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": "iotnotify-dev-chat-history",
            "KeySchema": [
                {"AttributeName": "room", "KeyType": "HASH"},
                {"AttributeName": "id", "KeyType": "RANGE"},
            ],
            "TimeToLiveSpecification": {"AttributeName": "expiresAt", "Enabled": True},
            "BillingMode": "PAY_PER_REQUEST",
        },
    )


def test_dev_stage_data_is_deleted_with_the_stack(dev: Synth) -> None:
    for table in dev.resources("AWS::DynamoDB::Table").values():
        assert table["DeletionPolicy"] == "Delete"


def test_task_queue_has_dlq_after_three_receives(dev: Synth) -> None:
    queues = dev.resources("AWS::SQS::Queue")
    by_name = {q["Properties"]["QueueName"]: k for k, q in queues.items()}
    dlq = by_name["iotnotify-dev-tasks-dlq"]
    main = dev.props(by_name["iotnotify-dev-tasks"])
    assert main["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]},
        "maxReceiveCount": 3,
    }
    assert main["SqsManagedSseEnabled"] is True
    # At least six times the worker's timeout (AWS guidance for SQS sources).
    assert main["VisibilityTimeout"] >= 6 * dev.function("task-worker")["Timeout"]


def test_worker_event_source_reports_batch_item_failures(dev: Synth) -> None:
    dev.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "FunctionName": {"Ref": dev.function_id("task-worker")},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "EventSourceArn": {"Fn::GetAtt": [Match.string_like_regexp("TasksQueue"), "Arn"]},
        },
    )


@pytest.mark.parametrize("spec", FUNCTION_SPECS, ids=lambda s: s.suffix)
def test_function_runtime_tracing_logging(dev: Synth, spec) -> None:  # type: ignore[no-untyped-def]
    fn = dev.function(spec.suffix)
    assert fn["Handler"] == spec.handler
    assert fn["Runtime"] == "python3.12"
    assert fn["Architectures"] == ["arm64"]
    assert fn["TracingConfig"] == {"Mode": "Active"}
    layers = [render(layer) for layer in fn["Layers"]]
    assert len(layers) == 1
    assert ":017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-arm64:" in layers[0]
    assert "${AWS::Region}" in layers[0]
    env = fn["Environment"]["Variables"]
    assert env["POWERTOOLS_SERVICE_NAME"] == "iotnotify"
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
    # The function logs to its own group, which has a retention.
    group = dev.props(fn["LoggingConfig"]["LogGroup"]["Ref"])
    assert group["LogGroupName"] == f"/aws/lambda/{dev.config.name(spec.suffix)}"
    assert group["RetentionInDays"] == 30


@pytest.mark.parametrize("spec", FUNCTION_SPECS, ids=lambda s: s.suffix)
def test_function_environment_is_names_and_arns_only(dev: Synth, spec) -> None:  # type: ignore[no-untyped-def]
    env = dev.function(spec.suffix)["Environment"]["Variables"]
    ours = {k for k in env if not k.startswith("POWERTOOLS_")}
    # Exactly the variables settings.ENV names: AWS_REGION comes from Lambda,
    # and the iot-data URL override exists only for the local emulator.
    # Powertools' own settings (service, log level, metrics namespace) are
    # checked by name below, not counted as ours.
    expected = {
        v
        for k, v in ENV.items()
        if k not in ("region", "iot_data_url") and not v.startswith("POWERTOOLS_")
    }
    expected |= {ROOMS_TABLE_ENV}
    assert ours == expected
    assert env[ENV["metrics_namespace"]] == "iotnotify"
    assert env[ENV["app"]] == "iotnotify"
    assert env[ENV["stage"]] == "dev"
    assert env[ENV["ssm_stage"]] == "dev"
    assert env[ENV["iot_endpoint"]] == {"Fn::GetAtt": [_lookup_id(dev), "endpointAddress"]}
    assert render(env[ENV["subscriber_role_arn"]]).startswith("${IotSubscriberRole")
    assert render(env[ENV["inbox_table"]]).startswith("${StorageInbox")
    assert render(env[ROOMS_TABLE_ENV]).startswith("${StorageRooms")
    assert render(env[ENV["history_table"]]).startswith("${StorageChatHistory")
    assert render(env[ENV["task_queue_url"]]).startswith("${TasksQueue")
    text = json.dumps(env).lower()
    for secret_word in ("secret", "password", 'apikey":', 'api_key":'):
        assert secret_word not in text


def _lookup_id(dev: Synth) -> str:
    (logical_id,) = dev.resources("Custom::AWS")
    return logical_id


def test_iot_endpoint_looked_up_at_deploy_time(dev: Synth) -> None:
    (resource,) = dev.resources("Custom::AWS").values()
    create = json.loads(render(resource["Properties"]["Create"]))
    assert create["service"] == "Iot"
    assert create["action"] == "describeEndpoint"
    assert create["parameters"] == {"endpointType": "iot:Data-ATS"}
    assert resource["Properties"]["InstallLatestAwsSdk"] is False


ROUTES = {
    ("/token", "GET"): ("COGNITO_USER_POOLS", "token"),
    ("/notify", "POST"): ("AWS_IAM", "notify"),
    ("/notify/key", "POST"): ("NONE", "notify"),
    ("/notifications", "GET"): ("COGNITO_USER_POOLS", "notifications"),
    ("/task", "POST"): ("COGNITO_USER_POOLS", "task"),
    ("/chats", "GET"): ("COGNITO_USER_POOLS", "chats"),
    ("/chats", "POST"): ("COGNITO_USER_POOLS", "chats"),
    ("/chats/{room}/members", "POST"): ("COGNITO_USER_POOLS", "chats"),
    ("/chats/{room}/messages", "GET"): ("COGNITO_USER_POOLS", "chats"),
    ("/games", "POST"): ("AWS_IAM", "games"),
    ("/games/key", "POST"): ("NONE", "games"),
    ("/presence", "GET"): ("COGNITO_USER_POOLS", "presence"),
}


def _paths(dev: Synth) -> dict[str, str]:
    """logical id of each API resource -> its full path."""
    resources = dev.resources("AWS::ApiGateway::Resource")
    paths: dict[str, str] = {}

    def path_of(logical_id: str) -> str:
        if logical_id not in paths:
            props = resources[logical_id]["Properties"]
            parent = props["ParentId"]
            prefix = "" if "Fn::GetAtt" in parent else path_of(parent["Ref"])
            paths[logical_id] = f"{prefix}/{props['PathPart']}"
        return paths[logical_id]

    for logical_id in resources:
        path_of(logical_id)
    return paths


def test_routes_auth_and_proxy_integrations(dev: Synth) -> None:
    paths = _paths(dev)
    seen = {}
    for method in dev.resources("AWS::ApiGateway::Method").values():
        props = method["Properties"]
        if props["HttpMethod"] == "OPTIONS":
            continue
        path = paths.get(props["ResourceId"].get("Ref", ""), "/")
        seen[(path, props["HttpMethod"])] = props
    assert set(seen) == set(ROUTES)
    authorizer = next(iter(dev.resources("AWS::ApiGateway::Authorizer")))
    for route, (auth, suffix) in ROUTES.items():
        props = seen[route]
        assert props["AuthorizationType"] == auth, route
        if auth == "COGNITO_USER_POOLS":
            assert props["AuthorizerId"] == {"Ref": authorizer}, route
        integration = props["Integration"]
        assert integration["Type"] == "AWS_PROXY", route
        uri = render(integration["Uri"])
        assert "${" + dev.function_id(suffix) + ".Arn}" in uri, route
    # The key route makes API Gateway refuse calls without the header.
    for key_route in ("/notify/key", "/games/key"):
        assert seen[(key_route, "POST")]["RequestParameters"] == {
            "method.request.header.x-api-key": True
        }


def test_cognito_authorizer_uses_the_user_pool(dev: Synth) -> None:
    (authorizer,) = dev.resources("AWS::ApiGateway::Authorizer").values()
    assert authorizer["Properties"]["Type"] == "COGNITO_USER_POOLS"
    assert render(authorizer["Properties"]["ProviderARNs"])[0].startswith("${IdentityUserPool")


def test_api_stage_throttling_tracing_access_logs(dev: Synth) -> None:
    dev.template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": "dev",
            "TracingEnabled": True,
            "AccessLogSetting": Match.object_like({"DestinationArn": Match.any_value()}),
            "MethodSettings": Match.array_with(
                [
                    Match.object_like(
                        {
                            "HttpMethod": "*",
                            "ResourcePath": "/*",
                            "ThrottlingRateLimit": 50,
                            "ThrottlingBurstLimit": 100,
                        }
                    )
                ]
            ),
        },
    )


def test_cors_preflight_allows_the_web_origin(dev: Synth) -> None:
    options = [
        m["Properties"]
        for m in dev.resources("AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == "OPTIONS"
    ]
    assert options, "CORS preflight methods"
    for props in options:
        assert props["AuthorizationType"] == "NONE"
        headers = props["Integration"]["IntegrationResponses"][0]["ResponseParameters"]
        origin = render(headers["method.response.header.Access-Control-Allow-Origin"])
        assert origin.startswith("'https://${SiteDistribution")
        assert origin.endswith(".DomainName}'")
        assert "X-Api-Key" in headers["method.response.header.Access-Control-Allow-Headers"]


def test_web_bucket_is_private_and_served_through_oac(dev: Synth) -> None:
    dev.template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            }
        },
    )
    (oac,) = dev.resources("AWS::CloudFront::OriginAccessControl")
    (dist,) = dev.resources("AWS::CloudFront::Distribution").values()
    config = dist["Properties"]["DistributionConfig"]
    assert config["DefaultRootObject"] == "index.html"
    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    (origin,) = config["Origins"]
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": [oac, "Id"]}
    # The bucket policy lets CloudFront (this distribution only) read.
    (policy,) = dev.resources("AWS::S3::BucketPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    reads = [s for s in statements if s.get("Principal") == {"Service": "cloudfront.amazonaws.com"}]
    assert reads
    assert all(s["Effect"] == "Allow" for s in reads)


def test_web_config_json_carries_the_runtime_settings(dev: Synth) -> None:
    (deployment,) = dev.resources("Custom::CDKBucketDeployment").values()
    props = deployment["Properties"]
    assert render(props["DestinationBucketName"]).startswith("${SiteBucket")
    assert props["DistributionPaths"] == ["/*"]  # invalidate on every deploy
    _site_key, config_key = props["SourceObjectKeys"]
    config_dir = dev.outdir / f"asset.{config_key.removesuffix('.zip')}"
    text = (config_dir / "config.json").read_text()
    # Deploy-time values are markers in the asset that the deployment
    # handler replaces with JSON strings (quotes included).
    for marker, value in props["SourceMarkers"][1].items():
        text = text.replace(marker, render(value))
    config = json.loads(text)
    assert set(config) >= {"apiUrl", "region", "iotEndpoint", "userPoolId", "userPoolClientId"}
    assert "${ApiRestApi" in config["apiUrl"]
    assert config["region"] == "${AWS::Region}"
    assert config["iotEndpoint"] == f"${{{_lookup_id(dev)}.endpointAddress}}"
    assert config["userPoolId"].startswith("${IdentityUserPool")
    assert config["userPoolClientId"].startswith("${IdentityUserPoolWebClient")


def test_placeholder_page_is_generated_when_web_dist_is_missing(tmp_path: Path) -> None:
    from infra_helpers import new_app

    from iotnotify_infra import StageConfig
    from iotnotify_infra.stack import IotNotifyStack

    app = new_app(stageName="nodist")
    config = StageConfig.from_context(app.node.try_get_context)
    stack = IotNotifyStack(app, config.stack_name, config=config, web_dist=tmp_path / "empty")
    assert stack.web.uses_placeholder
    assembly = app.synth()
    page = Path(assembly.directory) / "iotnotify-web-placeholder-nodist" / "index.html"
    assert "web/dist" in page.read_text()


def test_api_gateways_own_errors_have_the_apis_error_shape(dev: Synth) -> None:
    # DESIGN: every error of the HTTP API is {"error", "message"} with CORS
    # headers. API Gateway answers some itself (the Cognito authorizer's 401,
    # throttling's 429, an unknown route), by default as {"message": ...};
    # its gateway responses must give them the API's shape and codes.
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in dev.resources("AWS::ApiGateway::GatewayResponse").values()
    }
    for kind in ("DEFAULT_4XX", "DEFAULT_5XX", "UNAUTHORIZED", "THROTTLED"):
        assert kind in responses, kind
    for kind, props in responses.items():
        template = props["ResponseTemplates"]["application/json"]
        # $context.error.messageString is the message as a quoted JSON string
        body = json.loads(template.replace("$context.error.messageString", '"the message"'))
        assert set(body) == {"error", "message"}, kind
        assert body["error"], kind
        assert "gatewayresponse.header.Access-Control-Allow-Origin" in props["ResponseParameters"]

    def code(kind: str) -> str:
        template = responses[kind]["ResponseTemplates"]["application/json"]
        return str(json.loads(template.replace("$context.error.messageString", '""'))["error"])

    assert code("UNAUTHORIZED") == "unauthorized"
    assert code("THROTTLED") == "too_many_requests"
    # an unknown route (API Gateway's "Missing Authentication Token") is the 404
    # the local API answers
    missing = responses["MISSING_AUTHENTICATION_TOKEN"]
    assert missing["StatusCode"] == "404"
    assert "not_found" in missing["ResponseTemplates"]["application/json"]


def test_a_full_batch_of_the_slowest_demo_tasks_finishes_within_the_worker_timeout(
    dev: Synth,
) -> None:
    # The deployed worker runs demo_processor, whose workSeconds any signed-in
    # user chooses. A batch that outlives the function's timeout fails whole:
    # every task in it (other users' too) is received again and, after
    # maxReceiveCount such batches, dead-lettered without having failed.
    [mapping] = dev.resources("AWS::Lambda::EventSourceMapping").values()
    batch = mapping["Properties"]["BatchSize"]
    timeout = dev.function("task-worker")["Timeout"]
    # Half the timeout is left for the owners' inbox writes and publishes.
    assert batch * MAX_DEMO_WORK_SECONDS <= timeout / 2


def test_the_page_is_served_with_security_headers_and_config_json_uncached(dev: Synth) -> None:
    # A meta CSP cannot forbid framing (frame-ancestors is ignored in <meta>):
    # without the header any site could frame the signed-in page (clickjacking).
    (dist,) = dev.resources("AWS::CloudFront::Distribution").values()
    config = dist["Properties"]["DistributionConfig"]
    (policy_id,) = dev.resources("AWS::CloudFront::ResponseHeadersPolicy")
    policy = dev.props(policy_id)["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    assert policy["ContentSecurityPolicy"]["ContentSecurityPolicy"] == "frame-ancestors 'none'"
    assert policy["FrameOptions"] == {"FrameOption": "DENY", "Override": True}
    assert policy["ContentTypeOptions"] == {"Override": True}
    assert policy["ReferrerPolicy"] == {"ReferrerPolicy": "no-referrer", "Override": True}
    assert policy["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31_536_000
    behaviours = [config["DefaultCacheBehavior"], *config["CacheBehaviors"]]
    assert all(b["ResponseHeadersPolicyId"] == {"Ref": policy_id} for b in behaviours)
    # config.json names the stage's API and pool: a redeploy's must be read at once.
    (config_json,) = [b for b in config["CacheBehaviors"] if b["PathPattern"] == "/config.json"]
    # CloudFront's managed CachingDisabled policy (developer guide, "Use managed cache policies").
    assert config_json["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
