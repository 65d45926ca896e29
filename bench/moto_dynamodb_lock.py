"""What serving moto's DynamoDB one request at a time costs: BatchWriteItem, with and without.

``iotnotify local`` wraps moto's DynamoDB request handler in one lock
(``iotnotify_local.moto_dynamodb.serialise_dynamodb``) so that a
transaction is atomic beside other requests. This runs, in a fresh process
per run (the wrapper cannot be taken off once installed), a
``ThreadedMotoServer`` on 127.0.0.1 and ``--threads`` client threads each
sending ``--calls`` BatchWriteItem calls of 25 items (about 250 bytes each,
as the inbox's fan-out writes), with the stack's GIL switch interval, and
prints the calls per second and the round trip p50/p99 of each run.

    .venv/bin/python bench/moto_dynamodb_lock.py [--runs 3] [--threads 32] [--calls 6]

Client and server share one interpreter here (as the stack's handlers and
moto do), so the figures are a comparison, not moto's capacity.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

TABLE = "inbox"
ITEMS_PER_CALL = 25  # BatchWriteItem's maximum


def _one_run(serialised: bool, threads: int, calls: int) -> str:
    import boto3
    from moto.server import ThreadedMotoServer

    from iotnotify_emulator.runtime import shorten_switch_interval

    if serialised:
        from iotnotify_local.moto_dynamodb import serialise_dynamodb

        serialise_dynamodb()
    shorten_switch_interval()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()

    def client() -> Any:
        return boto3.client(
            "dynamodb",
            region_name="us-east-1",
            endpoint_url=f"http://{host}:{port}",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",  # moto accepts any key
        )

    try:
        client().create_table(
            TableName=TABLE,
            KeySchema=[
                {"AttributeName": "userId", "KeyType": "HASH"},
                {"AttributeName": "id", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "userId", "AttributeType": "S"},
                {"AttributeName": "id", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        clients = [client() for _ in range(threads)]
        round_trips: list[float] = []

        def work(k: int) -> None:
            for j in range(calls):
                requests = [
                    {
                        "PutRequest": {
                            "Item": {
                                "userId": {"S": f"user{k}-{j}-{n}"},
                                "id": {"S": uuid.uuid4().hex},
                                "body": {"S": "x" * 200},
                            }
                        }
                    }
                    for n in range(ITEMS_PER_CALL)
                ]
                start = time.perf_counter()
                clients[k].batch_write_item(RequestItems={TABLE: requests})
                round_trips.append(time.perf_counter() - start)

        workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        wall = time.perf_counter() - start
    finally:
        server.stop()
    round_trips.sort()
    total = threads * calls
    p50 = round_trips[len(round_trips) // 2] * 1000
    p99 = round_trips[min(len(round_trips) - 1, int(len(round_trips) * 0.99))] * 1000
    return (
        f"{'with the lock' if serialised else 'without     '}: {total} BatchWriteItem in "
        f"{wall:.2f} s = {total / wall:,.0f} calls/s; round trip p50 {p50:.0f} ms, p99 {p99:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs each way, alternating")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--calls", type=int, default=6, help="BatchWriteItem calls per thread")
    parser.add_argument("--one", choices=("with", "without"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(_one_run(args.one == "with", args.threads, args.calls), flush=True)
        return
    for _ in range(args.runs):
        for mode in ("without", "with"):
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    mode,
                    "--threads",
                    str(args.threads),
                    "--calls",
                    str(args.calls),
                ],
                check=True,
                timeout=300,
            )


if __name__ == "__main__":
    main()
