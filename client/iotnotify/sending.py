"""Publishers for the CLI: through a local stack's state file, or an AWS stage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import boto3

from iotnotify.contract import validate_user_id
from iotnotify.naming import ResourceNames
from iotnotify.publisher import Publisher
from iotnotify.state_file import DEFAULT_STATE_FILE, LocalState, StateFileError

__all__ = ["publisher_for_aws", "publisher_for_local"]

Resolver = Callable[[str], str]


def publisher_for_local(state_file: Path | None) -> tuple[Publisher, Resolver]:
    """A publisher signing as the local stack's publisher identity."""
    state = LocalState.read(state_file or DEFAULT_STATE_FILE)
    session = boto3.session.Session(
        region_name=state.region,
        aws_access_key_id=state.publisher["accessKeyId"],
        aws_secret_access_key=state.publisher["secretAccessKey"],
    )
    publisher = Publisher.create(
        app=state.app,
        stage=state.stage,
        endpoint=state.iotDataUrl,
        inbox_table=ResourceNames(state.app, state.stage, state.stage).inbox_table,
        session=session,
        dynamodb_endpoint_url=state.awsEndpointUrl,
    )

    def resolve(user: str) -> str:
        # Demo names (alice) map to their Cognito sub; anything else is a user id.
        try:
            return str(state.user(user)["sub"])
        except StateFileError:
            return validate_user_id(user)

    return publisher, resolve


def publisher_for_aws(*, app: str, stage: str, region: str | None) -> tuple[Publisher, Resolver]:
    """A publisher for a deployed stage, with the caller's AWS credentials."""
    session = boto3.session.Session(region_name=region)
    names = ResourceNames(app, stage, stage)
    publisher = Publisher.create(
        app=app, stage=stage, inbox_table=names.inbox_table, session=session
    )
    return publisher, validate_user_id
