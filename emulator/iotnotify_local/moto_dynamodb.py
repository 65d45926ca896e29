"""moto's DynamoDB, one request at a time, so transactions are atomic here as on AWS.

**The fault.** ``iotnotify local`` serves moto with ``ThreadedMotoServer``
(werkzeug, one thread per request), and moto's DynamoDB is not written for
concurrent requests. moto 5's ``DynamoDBBackend.transact_write_items``
(``moto/dynamodb/models/__init__.py``) deep-copies every table the
transaction names before it starts, applies the actions one by one to the
live tables, and on any cancel (a failed condition, a validation error)
puts those *copies* back (``self.tables[name] = original_table_state[name]``).
Everything another request wrote to those tables in between is lost with
them: a room created, a member added, the quota counter of another create.
A transaction that succeeds is not atomic either: a read that runs between
two of its actions sees half of it. On AWS a transaction is all-or-nothing
and serializable with PutItem, UpdateItem, DeleteItem, GetItem,
BatchWriteItem (per item) and other transactions, and a cancelled one
changes nothing ("Amazon DynamoDB Transactions: How it works", sections
TransactWriteItems API and "Isolation levels for DynamoDB transactions",
DynamoDB developer guide). ``chat_rooms.ChatRooms.create`` relies on that:
a conditional put of the room and a conditional quota increment in one
transaction. Without this module, 30 parallel creates by one user made 11
rooms under a quota of 10, and a 409 (taken name) undid rooms other users
had just been told were created.

**The fix.** :func:`serialise_dynamodb` makes every DynamoDB request moto
serves run under one process-wide lock, from the parsed request to the
serialised answer. That is stricter than AWS (Query, Scan and BatchGetItem
are only read-committed there, and requests on unrelated items run in
parallel) but never weaker, and with the GIL moto's DynamoDB ran one
Python thread at a time anyway: the lock removes interleavings, not
parallelism. It also keeps moto's other unguarded reads safe (a Scan
iterating a table's dict while a PutItem grows it).

**Why this seam.** moto offers no hook for request concurrency. The one
place every DynamoDB action passes through is the request handler's
``DynamoHandler.call_action`` (``moto/dynamodb/responses.py``; reached from
``BaseResponse.dispatch`` -> ``_dispatch`` for each request the server
routes to DynamoDB), so it is wrapped there, once per process, as
``iotnotify_emulator.moto_credentials`` wraps ``IamResponse.call_action``.
A backend subclass would miss BatchWriteItem, BatchGetItem and
TransactGetItems, whose logic lives in ``responses.py``, not in the backend
(moto says so above ``DynamoDBBackend.batch_get_item``), and would have to
replace the ``BackendDict``'s factory; a WSGI wrapper would have to rebuild
``ThreadedMotoServer``'s private ``_server_entry``. The wrapper is installed
by the stack at start (not at import), before moto serves anything.

Other moto services the stack uses were checked for the same
copy-and-restore pattern (moto 5.2: ``moto/sqs``, ``moto/ssm``,
``moto/sts``, ``moto/iam``, ``moto/cognitoidp``): none puts saved state
back over live state. BatchWriteItem and TransactGetItems in moto have no
rollback of their own; under the lock neither can land inside a
transaction nor see half of one.

:func:`dynamodb_paused` holds the same lock for in-process readers of
moto's DynamoDB state (the data directory's snapshot), so a saved state
never holds half a transaction.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Final

__all__ = ["dynamodb_paused", "serialise_dynamodb"]

# Reentrant: a snapshot taken by a thread that already holds it must not
# deadlock, and moto never calls back into a DynamoDB request while in one.
_LOCK: Final = threading.RLock()
_INSTALLED: list[bool] = []
_INSTALL_LOCK: Final = threading.Lock()


def serialise_dynamodb() -> None:
    """Make moto's DynamoDB answer one request at a time, in this process (idempotent).

    Wraps ``moto.dynamodb.responses.DynamoHandler.call_action`` (moto 5.x)
    so each request holds a process-wide lock while moto parses it, changes
    its tables and serialises the answer. Call before the moto server
    answers its first request. Raises ``ImportError`` if moto (the
    ``[local]`` extra) is not installed.
    """
    with _INSTALL_LOCK:
        if _INSTALLED:
            return
        from moto.dynamodb.responses import DynamoHandler

        original = DynamoHandler.call_action

        def call_action(self: Any) -> Any:
            with _LOCK:
                return original(self)

        DynamoHandler.call_action = call_action  # type: ignore[method-assign]
        _INSTALLED.append(True)


@contextlib.contextmanager
def dynamodb_paused() -> Iterator[None]:
    """Hold every DynamoDB request moto serves in this process until the block ends.

    For in-process readers of moto's DynamoDB backends (a snapshot): they
    see the tables between two requests, never inside a transaction. Keep
    the block short; every DynamoDB call of the stack waits for it.
    """
    with _LOCK:
        yield
