"""API: the REST API in front of the functions.

Routes (Lambda proxy integrations, so handlers receive REST proxy events):

==========================  ================  ==========================
route                       authorisation     function
==========================  ================  ==========================
``GET  /token``             Cognito ID token  token vending
``POST /notify``            IAM (SigV4)       notify
``POST /notify/key``        none at the edge  notify (checks the API key)
``GET  /notifications``     Cognito ID token  inbox catch-up
``POST /task``              Cognito ID token  enqueue a task
``GET|POST /chats``         Cognito ID token  chat rooms
``POST /chats/{room}/members`` Cognito        chat rooms (owner adds)
``GET /chats/{room}/messages`` Cognito        chat rooms (history)
``POST /games``             IAM (SigV4)       games (a server registers one)
``POST /games/key``         none at the edge  games (checks the API key)
``GET  /presence``          Cognito ID token  presence of channel co-members
==========================  ================  ==========================

Why two notify routes: IAM auth is the right default for backends that have
AWS credentials, but a game server on another host often has none. It can
send ``x-api-key`` to ``POST /notify/key`` instead; that route has no API
Gateway authoriser and the function itself compares the header with the
SecureString ``/{service}/{ssmStage}/notify-api-key`` (constant-time, cached
a few minutes). API Gateway's own API keys were not used: they are for usage
plans, AWS documents them as not an authorisation mechanism, and their value
would sit in the stack instead of in one rotatable parameter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from iotnotify.policies import BACKEND_ROUTES
from iotnotify_infra.config import StageConfig
from iotnotify_infra.functions import Functions, retention
from iotnotify_infra.nag import suppress

__all__ = ["CORS_ALLOW_HEADERS", "NOTIFY_KEY_PATH", "Api"]

NOTIFY_KEY_PATH = "/notify/key"
CORS_ALLOW_HEADERS = (
    "Content-Type",
    "Authorization",
    "X-Amz-Date",
    "X-Amz-Security-Token",
    "X-Api-Key",
)


# (gateway response type, status to answer or None for API Gateway's own, error code).
# An unknown path or method is API Gateway's MISSING_AUTHENTICATION_TOKEN, a
# 403 by default: answered as the 404 of DESIGN's contract (and of the local
# API). The defaults keep API Gateway's response type as their code.
_GATEWAY_ERRORS: Final = (
    (apigw.ResponseType.UNAUTHORIZED, None, "unauthorized"),
    (apigw.ResponseType.ACCESS_DENIED, None, "forbidden"),
    (apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN, "404", "not_found"),
    (apigw.ResponseType.THROTTLED, None, "too_many_requests"),
    (apigw.ResponseType.REQUEST_TOO_LARGE, None, "payload_too_large"),
    (apigw.ResponseType.BAD_REQUEST_PARAMETERS, None, "bad_request"),
    (apigw.ResponseType.BAD_REQUEST_BODY, None, "bad_request"),
    (apigw.ResponseType.INTEGRATION_TIMEOUT, None, "gateway_timeout"),
    (apigw.ResponseType.DEFAULT_4_XX, None, "$context.error.responseType"),
    (apigw.ResponseType.DEFAULT_5_XX, None, "$context.error.responseType"),
)
_NOT_FOUND_MESSAGE: Final = (
    "no such route: check the method and the path (a route authorised by IAM "
    "answers this too to a request without a SigV4 signature)"
)


def _error_template(code: str) -> str:
    """The body template of a gateway response: ``{"error": code, "message": ...}``."""
    message = (
        json.dumps(_NOT_FOUND_MESSAGE) if code == "not_found" else "$context.error.messageString"
    )
    return f'{{"error":"{code}","message":{message}}}'


class Api(Construct):
    """REST API with a Cognito authorizer, IAM auth on /notify, CORS and throttling."""

    rest_api: apigw.RestApi
    authorizer: apigw.CognitoUserPoolsAuthorizer
    access_logs: logs.LogGroup
    notify_caller_policy: iam.ManagedPolicy
    url: str

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        user_pool: cognito.IUserPool,
        functions: Functions,
        web_origins: Sequence[str],
    ) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        self.access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            log_group_name=f"/aws/apigateway/{config.name('api')}",
            retention=retention(config.log_retention_days),
            removal_policy=removal,
        )
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=config.name("api"),
            description=f"{config.stack_name}: token vending, notify, inbox, tasks, chats",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # The account-level CloudWatch role is a per-region singleton that
            # every stage would fight over; access logs need no role.
            cloud_watch_role=False,
            deploy_options=apigw.StageOptions(
                stage_name=config.stage,
                throttling_rate_limit=config.throttling_rate_limit,
                throttling_burst_limit=config.throttling_burst_limit,
                tracing_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
            ),
            default_cors_preflight_options=apigw.CorsOptions(
                allow_origins=list(web_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=list(CORS_ALLOW_HEADERS),
            ),
        )
        # Errors produced by API Gateway itself (401 from the authorizer,
        # 429 from throttling, an unknown route) must carry CORS headers too,
        # or the browser reports an opaque network error instead of the
        # status, and the API's one error shape {"error", "message"} with the
        # codes the functions and the local API use, not API Gateway's
        # default {"message": ...}. $context.error.messageString is the
        # message as a quoted JSON string (API Gateway developer guide,
        # "Gateway response types" and "$context variables for data models,
        # authorizers, mapping templates").
        for response_type, status, code in _GATEWAY_ERRORS:
            self.rest_api.add_gateway_response(
                f"Cors{response_type.response_type}",
                type=response_type,
                status_code=status,
                response_headers={
                    "Access-Control-Allow-Origin": f"'{web_origins[0]}'",
                    "Vary": "'Origin'",
                },
                templates={"application/json": _error_template(code)},
            )
        validator = self.rest_api.add_request_validator(
            "Validator", validate_request_parameters=True, validate_request_body=True
        )
        self.authorizer = apigw.CognitoUserPoolsAuthorizer(
            self,
            "Authorizer",
            authorizer_name=config.name("cognito"),
            cognito_user_pools=[user_pool],
        )
        authorizer = self.authorizer

        def route(
            resource: apigw.IResource,
            method: str,
            function: lambda_.IFunction,
            *,
            auth: apigw.AuthorizationType = apigw.AuthorizationType.COGNITO,
            parameters: dict[str, bool] | None = None,
        ) -> apigw.Method:
            return resource.add_method(
                method,
                apigw.LambdaIntegration(function, proxy=True),
                authorization_type=auth,
                authorizer=authorizer if auth == apigw.AuthorizationType.COGNITO else None,
                request_validator=validator,
                request_parameters=parameters,
            )

        root = self.rest_api.root
        route(root.add_resource("token"), "GET", functions.token)
        notify = root.add_resource("notify")
        notify_iam = route(notify, "POST", functions.notify, auth=apigw.AuthorizationType.IAM)
        key_route = route(
            notify.add_resource("key"),
            "POST",
            functions.notify,
            auth=apigw.AuthorizationType.NONE,
            # API Gateway rejects a call without the header before the
            # function (and its SSM read) runs.
            parameters={"method.request.header.x-api-key": True},
        )
        route(
            root.add_resource("notifications"),
            "GET",
            functions.notifications,
            parameters={"method.request.querystring.since": False},
        )
        route(root.add_resource("task"), "POST", functions.task)
        games = root.add_resource("games")
        games_iam = route(games, "POST", functions.games, auth=apigw.AuthorizationType.IAM)
        games_key_route = route(
            games.add_resource("key"),
            "POST",
            functions.games,
            auth=apigw.AuthorizationType.NONE,
            parameters={"method.request.header.x-api-key": True},
        )
        route(
            root.add_resource("presence"),
            "GET",
            functions.presence,
            parameters={"method.request.querystring.users": True},
        )
        chats = root.add_resource("chats")
        for method in ("GET", "POST"):
            route(chats, method, functions.chats)
        room = chats.add_resource("{room}")
        route(room.add_resource("members"), "POST", functions.chats)
        route(
            room.add_resource("messages"),
            "GET",
            functions.chats,
            parameters={
                "method.request.querystring.limit": False,
                "method.request.querystring.before": False,
            },
        )
        self.url = self.rest_api.url
        # What a backend's role needs to call the IAM-authorised route: that
        # one method of this stage, nothing else of the API.
        self.notify_caller_policy = iam.ManagedPolicy(
            self,
            "NotifyCallerPolicy",
            managed_policy_name=config.name("notify-caller"),
            description=f"{config.stack_name}: call POST /notify and POST /games (IAM auth)",
            statements=[
                iam.PolicyStatement(
                    actions=["execute-api:Invoke"],
                    resources=[
                        self.rest_api.arn_for_execute_api("POST", f"/{path}", config.stage)
                        for path in BACKEND_ROUTES
                    ],
                )
            ],
        )

        suppress(
            self.rest_api,
            {
                "AwsSolutions-APIG3": (
                    "No WAF web ACL: it costs a fixed monthly fee per stage; stage "
                    "throttling and Cognito/IAM auth bound abuse."
                ),
                "AwsSolutions-APIG6": (
                    "Execution logging needs the account-wide API Gateway CloudWatch "
                    "role (a regional singleton ephemeral stages must not own); access "
                    "logging is on for every method."
                ),
            },
        )
        # The CORS preflight methods must answer without credentials (browsers
        # send none on OPTIONS); the rest of the routes are covered below.
        for resource in self.rest_api.root.node.find_all():
            if isinstance(resource, apigw.Method) and resource.http_method == "OPTIONS":
                suppress(
                    resource,
                    {
                        "AwsSolutions-APIG4": "CORS preflight: browsers send OPTIONS "
                        "without credentials, so it cannot require any.",
                        "AwsSolutions-COG4": "CORS preflight: see APIG4.",
                    },
                )
        for key_method in (key_route, games_key_route):
            suppress(
                key_method,
                {
                    "AwsSolutions-APIG4": (
                        "The API-key alternative for servers without AWS credentials: the "
                        "function authorises the x-api-key header against the SSM "
                        "SecureString itself."
                    ),
                    "AwsSolutions-COG4": "Server-to-server route; see APIG4.",
                },
            )
        for iam_method in (notify_iam, games_iam):
            suppress(
                iam_method,
                {
                    "AwsSolutions-COG4": (
                        "POST /notify and POST /games are for backends, authorised with IAM "
                        "(SigV4), not for signed-in users."
                    )
                },
            )
