"""The offline stack's data directory: moto's state kept, and refused when unsafe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import jwt
import pytest
from moto import mock_aws
from moto.core.base_backend import BackendDict

from iotnotify_emulator.tls import generate_certificates
from iotnotify_local.persistence import (
    CA_MARK_FILE,
    PERSISTED_SERVICES,
    DataDir,
    DataDirError,
)
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
    saved_stack(session, tmp_path)  # made the stack's ca/ (with its mark)
    for name in ("ca.pem", "ca.key", "server.pem", "server.key"):  # what the CA writes
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
    assert left == [
        "ca",
        f"ca/{CA_MARK_FILE}",
        "ca/my-own.pem",
        "lock",
        "notes",
        "notes/a.txt",
        "thesis.txt",
    ]
    assert (tmp_path / "thesis.txt").read_text() == "mine"


def _tree(path: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(path)): None if p.is_dir() else p.read_bytes() for p in path.rglob("*")
    }


@pytest.mark.parametrize("content", ["my lock notes\n", "", "12 34\n"], ids=str)
def test_a_users_own_file_named_lock_is_refused_not_overwritten(
    tmp_path: Path, content: str
) -> None:
    # `--data-dir .` in a folder with a file of one's own named `lock`: the
    # stack truncated it and wrote its pid into it.
    (tmp_path / "lock").write_text(content)
    before = _tree(tmp_path)
    for fresh in (False, True):
        with pytest.raises(DataDirError, match=r"lock file .*it is left as it is"):
            DataDir.open(tmp_path, fresh=fresh)
        assert _tree(tmp_path) == before  # not changed, and nothing added


def test_a_folder_or_link_named_lock_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a" / "lock").mkdir(parents=True)
    with pytest.raises(DataDirError, match="a directory"):
        DataDir.open(tmp_path / "a")
    (tmp_path / "mine.txt").write_text("mine")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "lock").symlink_to(tmp_path / "mine.txt")
    with pytest.raises(DataDirError, match="symbolic link"):
        DataDir.open(tmp_path / "b")
    assert (tmp_path / "mine.txt").read_text() == "mine"


def _own_ca(directory: Path) -> dict[str, bytes | None]:
    """A CA of the user's own in ``directory``: the file names the emulator uses."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "my company's root")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True)
    (directory / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "ca.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return _tree(directory)


@pytest.mark.parametrize("fresh", [False, True], ids=["restart", "fresh"])
def test_a_users_own_ca_folder_is_refused_not_reused_or_removed(
    tmp_path: Path, fresh: bool
) -> None:
    # A `ca/` of the user's own in the data directory: its ca.pem and ca.key
    # signed the emulator's server certificate as if the stack had made them
    # (and --fresh deleted them).
    before = _own_ca(tmp_path / "ca")
    with pytest.raises(DataDirError, match=r"ca was not made by `iotnotify local`"):
        DataDir.open(tmp_path, fresh=fresh)
    assert _tree(tmp_path / "ca") == before
    # An empty folder, a file or a link of that name are not the stack's either.
    for make in ("empty", "file", "link"):
        other = tmp_path / make
        other.mkdir()
        if make == "empty":
            (other / "ca").mkdir()
        elif make == "file":
            (other / "ca").write_text("mine")
        else:
            (other / "ca").symlink_to(tmp_path / "ca")
        with pytest.raises(DataDirError, match="not made by"):
            DataDir.open(other, fresh=fresh)
    assert _tree(tmp_path / "ca") == before


def test_the_stacks_own_lock_and_ca_are_reused_across_restarts(tmp_path: Path) -> None:
    data = DataDir.open(tmp_path)
    try:
        ca = generate_certificates(data.ca_dir).ca_file.read_bytes()  # what the emulator does
        assert str(os.getpid()) in (tmp_path / "lock").read_text()
    finally:
        data.close()
    for _ in range(2):
        data = DataDir.open(tmp_path)
        try:
            assert generate_certificates(data.ca_dir).ca_file.read_bytes() == ca
        finally:
            data.close()


def test_a_stale_lock_of_a_dead_stack_is_taken_over(tmp_path: Path) -> None:
    # A stack killed while it held the directory leaves its lock file behind.
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; from pathlib import Path; "
            "from iotnotify_local.persistence import DataDir; "
            "DataDir.open(Path(sys.argv[1])); print(os.getpid()); os._exit(0)",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    dead = child.stdout.strip()
    assert dead in (tmp_path / "lock").read_text()
    data = DataDir.open(tmp_path)
    try:
        text = (tmp_path / "lock").read_text()
        assert str(os.getpid()) in text
        assert dead not in text.split()
    finally:
        data.close()


def test_a_lock_and_ca_of_a_stack_before_the_marks_still_open(tmp_path: Path) -> None:
    # What earlier versions left: a lock holding only a pid, a ca/ holding only
    # the emulator's four files.
    generate_certificates(tmp_path / "ca")
    ca = (tmp_path / "ca" / "ca.pem").read_bytes()
    (tmp_path / "lock").write_text("4242")
    data = DataDir.open(tmp_path)
    try:
        assert generate_certificates(data.ca_dir).ca_file.read_bytes() == ca
        assert (tmp_path / "lock").read_text().split()[-1] == str(os.getpid())
    finally:
        data.close()
    DataDir.open(tmp_path).close()
