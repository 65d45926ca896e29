"""moto's DynamoDB as the offline stack serves it: a transaction is atomic.

Each test forces the interleaving that loses data in plain moto: while a
TransactWriteItems is between two of its actions (moto has already
deep-copied the tables it names), another request is sent to the same
moto server from another thread. The transaction waits for that request
for at most ``OTHER_REQUEST_WAIT_S``: in plain moto it lands inside the
transaction (and is undone by its rollback, or sees half of it); with
:func:`serialise_dynamodb` it waits for the transaction to end.
"""

from __future__ import annotations

import pickle
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.server import ThreadedMotoServer

from iotnotify_local.moto_dynamodb import dynamodb_paused, serialise_dynamodb
from iotnotify_local.persistence import _snapshot

REGION = "us-east-1"
# How long the transaction holds still for the other request. In plain moto
# that request completes within milliseconds; with the lock it cannot start.
OTHER_REQUEST_WAIT_S = 1.5


@dataclass
class Moto:
    client: Any
    table: str


@pytest.fixture
def moto() -> Iterator[Moto]:
    serialise_dynamodb()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        client = boto3.client(
            "dynamodb",
            region_name=REGION,
            endpoint_url=f"http://{host}:{port}",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # moto accepts any key
        )
        # moto's backends live as long as this process: a table of this test's own.
        table = f"rooms-{uuid.uuid4().hex[:8]}"
        client.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "room", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "room", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield Moto(client, table)
        client.delete_table(TableName=table)
    finally:
        server.stop()


def _key(name: str) -> dict[str, Any]:
    return {"room": {"S": name}}


def _during_transaction(
    monkeypatch: pytest.MonkeyPatch, at_key: str, other_request: Callable[[], None]
) -> threading.Thread:
    """Run ``other_request`` on another thread when the transaction reads ``at_key``.

    moto's transaction reads each target item (``DynamoDBBackend.get_item``)
    after copying the tables and after applying the actions before it.
    Returns the thread, to join after the transaction.
    """
    original = DynamoDBBackend.get_item
    done = threading.Event()

    def run_other() -> None:
        other_request()
        done.set()

    thread = threading.Thread(target=run_other)

    def get_item(self: Any, table_name: str, keys: dict[str, Any], *args: Any) -> Any:
        if keys == _key(at_key) and not thread.is_alive() and not done.is_set():
            thread.start()
            done.wait(OTHER_REQUEST_WAIT_S)
        return original(self, table_name, keys, *args)

    monkeypatch.setattr(DynamoDBBackend, "get_item", get_item)
    return thread


def test_a_cancelled_transaction_keeps_a_put_made_meanwhile(
    moto: Moto, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a taken room name
    moto.client.put_item(TableName=moto.table, Item={"room": {"S": "taken"}})
    # When a create of that name (a transaction that cancels) runs while
    # another request creates "other"
    other = _during_transaction(
        monkeypatch,
        "taken",
        lambda: moto.client.put_item(TableName=moto.table, Item={"room": {"S": "other"}}),
    )
    with pytest.raises(ClientError) as cancelled:
        moto.client.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": moto.table,
                        "Item": {"room": {"S": "taken"}, "owner": {"S": "dave"}},
                        "ConditionExpression": "attribute_not_exists(room)",
                    }
                }
            ]
        )
    other.join(timeout=30)
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    # Then the other request's room exists, and the taken one is unchanged
    assert "Item" in moto.client.get_item(TableName=moto.table, Key=_key("other"))
    assert "owner" not in moto.client.get_item(TableName=moto.table, Key=_key("taken"))["Item"]


def test_a_read_sees_all_of_a_transaction_or_none_of_it(
    moto: Moto, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[dict[str, Any]]] = []

    def read_both() -> None:
        answer = moto.client.transact_get_items(
            TransactItems=[
                {"Get": {"TableName": moto.table, "Key": _key("room-a")}},
                {"Get": {"TableName": moto.table, "Key": _key("room-b")}},
            ]
        )
        seen.append(answer["Responses"])

    # When a reader runs while a transaction has written room-a but not yet room-b
    reader = _during_transaction(monkeypatch, "room-b", read_both)
    moto.client.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": moto.table, "Item": {"room": {"S": name}}}}
            for name in ("room-a", "room-b")
        ]
    )
    reader.join(timeout=30)
    # Then it saw both rooms (it ran after the transaction), not just one
    assert [("Item" in each) for each in seen[0]] == [True, True]


def test_dynamodb_paused_holds_requests_until_the_block_ends(moto: Moto) -> None:
    written = threading.Event()

    def write() -> None:
        moto.client.put_item(TableName=moto.table, Item={"room": {"S": "later"}})
        written.set()

    writer = threading.Thread(target=write)
    with dynamodb_paused():
        writer.start()
        # The request reached moto but cannot run while the block holds the lock.
        assert not written.wait(OTHER_REQUEST_WAIT_S)
        table = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].tables[moto.table]
        assert table.get_item(DynamoType({"S": "later"})) is None
    writer.join(timeout=30)
    assert written.is_set()
    assert "Item" in moto.client.get_item(TableName=moto.table, Key=_key("later"))


def test_a_data_directory_snapshot_holds_all_of_a_transaction_or_none_of_it(
    moto: Moto, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshots: list[bytes] = []
    # When the data directory snapshots moto while a transaction has written
    # room-a but not yet room-b (the autosave runs on a thread of its own)
    saver = _during_transaction(monkeypatch, "room-b", lambda: snapshots.append(_snapshot()))
    moto.client.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": moto.table, "Item": {"room": {"S": name}}}}
            for name in ("room-a", "room-b")
        ]
    )
    saver.join(timeout=30)
    # Then what it saved holds both rooms (it waited for the transaction), not one
    saved = pickle.loads(snapshots[0])["dynamodb"][DEFAULT_ACCOUNT_ID][REGION]
    table = saved.tables[moto.table]
    assert [
        table.get_item(DynamoType({"S": name})) is not None for name in ("room-a", "room-b")
    ] == [
        True,
        True,
    ]
