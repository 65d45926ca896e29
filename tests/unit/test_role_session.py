"""The local functions' session signs as the role and renews itself."""

from __future__ import annotations

import json
import os

import boto3
import pytest
from moto import mock_aws

from iotnotify_local.role_session import assumed_role_session


def test_the_session_acts_as_the_role_without_touching_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "admin")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "admin")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    with mock_aws():
        admin = boto3.session.Session(region_name="us-east-1")
        role = admin.client("iam").create_role(
            RoleName="functions",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]
        environment_before = dict(os.environ)
        session = assumed_role_session(
            sts=admin.client("sts"),
            role_arn=role["Arn"],
            session_name="fn",
            region="us-east-1",
            duration=900,
        )
        credentials = session.get_credentials()
        assert credentials.method == "iotnotify-local-assume-role"
        assert credentials.access_key != "admin"
        assert credentials.token
        # botocore renews these itself before expiry: they are refreshable.
        assert hasattr(credentials, "refresh_needed")
        identity = session.client("sts").get_caller_identity()
        assert ":assumed-role/functions/fn" in identity["Arn"]
        assert dict(os.environ) == environment_before
