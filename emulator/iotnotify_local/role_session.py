"""A boto3 session that acts as the functions' role, renewing itself.

On Lambda the runtime hands each function its role's credentials and renews
them. Locally the handlers run in this process, so they get a boto3 session
whose credentials come from ``sts:AssumeRole`` on the functions role (in
moto) and are renewed by botocore before they expire. The credentials live
in the session's memory only, never in the process environment.
"""

from __future__ import annotations

from typing import Any

import boto3
import botocore.session
from botocore.credentials import CredentialProvider, RefreshableCredentials

__all__ = ["assumed_role_session"]


class _AssumeRoleProvider(CredentialProvider):
    METHOD = "iotnotify-local-assume-role"
    CANONICAL_NAME = "iotnotify-local"

    def __init__(self, sts: Any, role_arn: str, session_name: str, duration: int) -> None:
        super().__init__()
        self._sts = sts
        self._role_arn = role_arn
        self._session_name = session_name
        self._duration = duration

    def _fetch(self) -> dict[str, str]:
        creds = self._sts.assume_role(
            RoleArn=self._role_arn,
            RoleSessionName=self._session_name,
            DurationSeconds=self._duration,
        )["Credentials"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    def load(self) -> RefreshableCredentials:
        return RefreshableCredentials.create_from_metadata(
            metadata=self._fetch(), refresh_using=self._fetch, method=self.METHOD
        )


def assumed_role_session(
    *, sts: Any, role_arn: str, session_name: str, region: str, duration: int = 3600
) -> boto3.session.Session:
    """A session whose every client signs as ``role_arn``, renewed as it nears expiry."""
    core = botocore.session.get_session()
    resolver = core.get_component("credential_provider")
    resolver.insert_before("env", _AssumeRoleProvider(sts, role_arn, session_name, duration))
    return boto3.session.Session(botocore_session=core, region_name=region)
