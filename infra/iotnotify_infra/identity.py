"""Identity: who a subscriber is.

A Cognito user pool with e-mail sign-in and self sign-up, and one public app
client (no secret: it ships inside the browser page and the desktop app)
allowing SRP and USER_PASSWORD_AUTH. The ID token it issues is what
API Gateway's Cognito authorizer checks and whose ``sub`` becomes the user id.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cognito as cognito
from constructs import Construct

from iotnotify_infra.config import StageConfig
from iotnotify_infra.nag import suppress

__all__ = ["Identity"]


class Identity(Construct):
    """Cognito user pool and its public app client."""

    user_pool: cognito.UserPool
    client: cognito.UserPoolClient

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        self.user_pool = cognito.UserPool(
            self,
            "UserPool",
            user_pool_name=config.names.user_pool,
            self_sign_up_enabled=True,
            # Explicit, so the bill is a choice: Lite unless -c cognitoFeaturePlan=...
            feature_plan=cognito.FeaturePlan[config.cognito_feature_plan.upper()],
            sign_in_aliases=cognito.SignInAliases(email=True),
            # ALICE@example.com is alice@example.com (the page also lower-cases).
            # CloudFormation replaces a pool whose UsernameConfiguration changes.
            sign_in_case_sensitive=False,
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            password_policy=cognito.PasswordPolicy(
                min_length=10,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
            ),
            removal_policy=RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY,
        )
        self.client = self.user_pool.add_client(
            "WebClient",
            user_pool_client_name=config.names.user_pool_client,
            generate_secret=False,
            auth_flows=cognito.AuthFlow(user_srp=True, user_password=True),
            # Refresh tokens let the tray app and the page stay signed in for
            # a month without storing the password.
            refresh_token_validity=Duration.days(30),
            id_token_validity=Duration.hours(1),
            access_token_validity=Duration.hours(1),
            prevent_user_existence_errors=True,
            enable_token_revocation=True,
        )
        suppress(
            self.user_pool,
            {
                "AwsSolutions-COG2": (
                    "MFA is left to the operator: subscribers only receive their own "
                    "notifications and the sample apps sign in non-interactively."
                ),
                "AwsSolutions-COG3": (
                    "Threat protection needs the Cognito Plus feature plan (a per-user "
                    "charge); an idle ephemeral stage must cost nothing."
                ),
                "AwsSolutions-COG8": "Plus feature plan not used; see COG3.",
            },
        )
