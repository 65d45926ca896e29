"""Publishers for the CLI: through a local stack's state file, or an AWS stage.

Recipients are resolved against the deployment's Cognito user pool before
anything is sent, so ``send --user carol`` for a user who does not exist is
an error instead of a notification nobody can ever receive: a demo name of
the local stack (``alice``), a sign-in e-mail (a user who signed up on the
page) or a user id (the Cognito ``sub``). Cognito's ``ListUsers`` filter
supports ``email`` and ``sub`` with ``=`` (Amazon Cognito API reference,
ListUsers, "Filter").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from iotnotify.contract import validate_user_id
from iotnotify.errors import AuthError, IotNotifyError, UnknownUser
from iotnotify.naming import ResourceNames
from iotnotify.publisher import Publisher
from iotnotify.state_file import DEFAULT_STATE_FILE, LocalState

__all__ = ["UserDirectory", "publisher_for_aws", "publisher_for_local"]

Resolver = Callable[[str], str]


class UserDirectory:
    """Maps what a sender types to a user id, checking the user pool.

    ``cognito`` makes a boto3 ``cognito-idp`` client, called only when a
    name is not a demo name (a client costs start-up time a plain
    ``send --user alice`` should not pay); ``user_pool_id`` may be such a
    callable too. ``demo`` maps the local stack's demo names to their ids.
    Raises :class:`UnknownUser` for a name nobody in the pool has,
    :class:`AuthError` when the pool cannot be read.
    """

    def __init__(
        self,
        *,
        cognito: Callable[[], Any],
        user_pool_id: str | Callable[[Any], str],
        demo: Mapping[str, str],
    ) -> None:
        self._make_client = cognito
        self._pool = user_pool_id
        self.demo = dict(demo)
        self._client: Any = None

    @property
    def cognito(self) -> Any:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    @property
    def user_pool_id(self) -> str:
        if callable(self._pool):
            self._pool = self._pool(self.cognito)
        return self._pool

    def resolve(self, name: str) -> str:
        if name in self.demo:
            return self.demo[name]
        if "@" in name:
            if '"' in name or "\\" in name:
                raise UnknownUser(f"{name!r} is not an e-mail address")
            # Page sign-ups are stored lower case; try as typed first for old ones.
            candidates = dict.fromkeys((name.strip(), name.strip().lower()))
            for email in candidates:
                found = self._find(f'email = "{email}"')
                if found:
                    return found
        else:
            user_id = validate_user_id(name)
            found = self._find(f'sub = "{user_id}"')
            if found:
                return found
        known = f" (demo users: {', '.join(self.demo)})" if self.demo else ""
        raise UnknownUser(f"no user {name!r} in the user pool {self.user_pool_id}{known}")

    def _find(self, query: str) -> str | None:
        try:
            answer = self.cognito.list_users(UserPoolId=self.user_pool_id, Filter=query, Limit=2)
        except (BotoCoreError, ClientError) as exc:
            raise AuthError(f"cannot look up recipients in the user pool: {exc}") from exc
        for user in answer.get("Users", []):
            for attribute in user.get("Attributes", []):
                if attribute.get("Name") == "sub":
                    return str(attribute["Value"])
        return None


def publisher_for_local(
    state_file: Path | None, *, skip_offline: bool = False
) -> tuple[Publisher, Resolver]:
    """A publisher signing as the local stack's publisher identity, with the
    stack's inbox, games and presence tables."""
    state = LocalState.read(state_file or DEFAULT_STATE_FILE)
    session = boto3.session.Session(
        region_name=state.region,
        aws_access_key_id=state.publisher["accessKeyId"],
        aws_secret_access_key=state.publisher["secretAccessKey"],
    )
    names = ResourceNames(state.app, state.stage, state.stage)
    publisher = Publisher.create(
        app=state.app,
        stage=state.stage,
        endpoint=state.iotDataUrl,
        inbox_table=names.inbox_table,
        games_table=names.games_table,
        presence_table=names.presence_table,
        skip_offline=skip_offline,
        session=session,
        dynamodb_endpoint_url=state.awsEndpointUrl,
    )
    directory = UserDirectory(
        cognito=lambda: session.client("cognito-idp", endpoint_url=state.awsEndpointUrl),
        user_pool_id=state.userPoolId,
        demo={str(u["name"]): str(u["sub"]) for u in state.users if u.get("name")},
    )
    return publisher, directory.resolve


def publisher_for_aws(*, app: str, stage: str, region: str | None) -> tuple[Publisher, Resolver]:
    """A publisher for a deployed stage, with the caller's AWS credentials.

    Raises :class:`IotNotifyError` when no region is configured (``--region``,
    ``AWS_REGION``/``AWS_DEFAULT_REGION`` or the profile's region).
    """
    # botocore reads AWS_DEFAULT_REGION only (botocore/configprovider.py,
    # 'region'); AWS_REGION is the variable the other AWS SDKs and Lambda use.
    session = boto3.session.Session(region_name=region or os.environ.get("AWS_REGION") or None)
    if not session.region_name:
        raise IotNotifyError(
            "no AWS region: give --region, or set AWS_REGION or AWS_DEFAULT_REGION "
            "(or a region in your AWS profile)"
        )
    names = ResourceNames(app, stage, stage)
    publisher = Publisher.create(
        app=app,
        stage=stage,
        inbox_table=names.inbox_table,
        games_table=names.games_table,
        presence_table=names.presence_table,
        session=session,
    )
    directory = UserDirectory(
        cognito=lambda: session.client("cognito-idp"),
        user_pool_id=lambda cognito: _pool_id(cognito, names.user_pool),
        demo={},
    )
    return publisher, directory.resolve


def _pool_id(cognito: Any, name: str) -> str:
    try:
        for page in cognito.get_paginator("list_user_pools").paginate(MaxResults=60):
            for pool in page.get("UserPools", []):
                if pool.get("Name") == name:
                    return str(pool["Id"])
    except (BotoCoreError, ClientError) as exc:
        raise AuthError(f"cannot list user pools to find {name!r}: {exc}") from exc
    raise UnknownUser(f"no user pool named {name!r} in this account and region: is it deployed?")
