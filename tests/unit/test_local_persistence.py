"""The offline stack's data directory: moto's state kept, and refused when unsafe."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import jwt
import pytest
from moto import mock_aws
from moto.core.base_backend import BackendDict

from iotnotify_local.persistence import PERSISTED_SERVICES, DataDir, DataDirError
from iotnotify_local.provision import LocalResources, provision

WHERE = {"app": "iotnotify", "stage": "local", "region": "us-east-1"}


@pytest.fixture
def session() -> Iterator[boto3.session.Session]:
    with mock_aws():
        yield boto3.session.Session(
            region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )


def restart() -> None:
    """What a new process starts with: moto knows nothing."""
    BackendDict.reset()


def saved_stack(session: boto3.session.Session, path: Path) -> LocalResources:
    resources = provision(session, app="iotnotify", stage="local")
    session.client("dynamodb").put_item(
        TableName=resources.names.inbox_table,
        Item={"userId": {"S": resources.users[0].sub}, "id": {"S": "01J0000000000000000000000"}},
    )
    data = DataDir.open(path)
    try:
        data.save(resources, **WHERE)
    finally:
        data.close()
    return resources


def test_users_passwords_subs_and_items_come_back(
    session: boto3.session.Session, tmp_path: Path
) -> None:
    # Given a provisioned, saved stack
    before = saved_stack(session, tmp_path)
    # When a new process restores it
    restart()
    assert session.client("dynamodb").list_tables()["TableNames"] == []
    data = DataDir.open(tmp_path)
    try:
        after = data.load(**WHERE)
    finally:
        data.close()
    # Then the same resources, users and items are there
    assert after == before
    alice = before.users[0]
    answer = session.client("cognito-idp").initiate_auth(
        ClientId=before.user_pool_client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": alice.username, "PASSWORD": alice.password},
    )
    claims = jwt.decode(
        answer["AuthenticationResult"]["IdToken"], options={"verify_signature": False}
    )
    assert claims["sub"] == alice.sub
    items = session.client("dynamodb").scan(TableName=before.names.inbox_table)["Items"]
    assert [item["userId"]["S"] for item in items] == [alice.sub]
    key = session.client("ssm").get_parameter(
        Name=before.names.notify_api_key_parameter, WithDecryption=True
    )["Parameter"]["Value"]
    assert key == before.notify_api_key


def test_an_empty_directory_loads_nothing_and_fresh_empties_it(
    session: boto3.session.Session, tmp_path: Path
) -> None:
    data = DataDir.open(tmp_path / "new")
    try:
        assert data.load(**WHERE) is None
    finally:
        data.close()
    saved_stack(session, tmp_path)
    data = DataDir.open(tmp_path, fresh=True)
    try:
        assert data.load(**WHERE) is None
    finally:
        data.close()


def test_state_saved_by_other_provisioning_code_is_refused(
    session: boto3.session.Session, tmp_path: Path
) -> None:
    saved_stack(session, tmp_path)
    saved = json.loads((tmp_path / "resources.json").read_text())
    saved["header"]["provision"] = "0" * 16
    (tmp_path / "resources.json").write_text(json.dumps(saved))
    data = DataDir.open(tmp_path)
    try:
        with pytest.raises(DataDirError, match="--fresh"):
            data.load(**WHERE)
        with pytest.raises(DataDirError, match="--fresh"):
            data.load(app="iotnotify", stage="other", region="us-east-1")
    finally:
        data.close()


def test_a_pickle_others_can_write_is_not_loaded(
    session: boto3.session.Session, tmp_path: Path
) -> None:
    saved_stack(session, tmp_path)
    (tmp_path / "moto.pickle").chmod(0o666)
    data = DataDir.open(tmp_path)
    try:
        with pytest.raises(DataDirError, match="writable by others"):
            data.load(**WHERE)
    finally:
        data.close()


def test_one_directory_one_stack(tmp_path: Path) -> None:
    first = DataDir.open(tmp_path)
    try:
        with pytest.raises(DataDirError, match="in use"):
            DataDir.open(tmp_path)
    finally:
        first.close()
    DataDir.open(tmp_path).close()  # free again once the first has closed


def test_every_service_provisioning_uses_is_kept(session: boto3.session.Session) -> None:
    # Given a freshly provisioned stack (only the services it touched hold state)
    BackendDict.reset()
    provision(session, app="iotnotify", stage="local")
    used = {backends.service_name for backends in BackendDict._instances if len(backends)}
    # Then the data directory keeps every one of them
    assert used
    assert used <= set(PERSISTED_SERVICES)


def test_fresh_removes_only_what_iotnotify_wrote_and_keeps_the_users_own_files(
    session: boto3.session.Session, tmp_path: Path
) -> None:
    # `iotnotify local --fresh --data-dir .` (or ~) emptied the whole folder:
    # a user's own files and folders went with the stack's state.
    saved_stack(session, tmp_path)
    for name in ("ca.pem", "ca.key", "server.pem", "server.key"):  # what the CA writes
        (tmp_path / "ca" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "ca" / name).write_text("stack's")
    (tmp_path / "moto.pickle.tmp").write_text("a save a crash interrupted")
    (tmp_path / "thesis.txt").write_text("mine")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    (tmp_path / "ca" / "my-own.pem").write_text("mine")

    data = DataDir.open(tmp_path, fresh=True)
    try:
        assert data.load(**WHERE) is None  # the stack's state is gone
    finally:
        data.close()

    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == ["ca", "ca/my-own.pem", "lock", "notes", "notes/a.txt", "thesis.txt"]
    assert (tmp_path / "thesis.txt").read_text() == "mine"
