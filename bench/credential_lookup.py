"""How the emulator's credential lookup scales with the role sessions moto holds.

Every ``GET /token`` leaves one STS role session in moto. Before issue 10
the emulator found a key by scanning moto's list of every session ever
issued (``STSBackend.get_assumed_role_from_access_key``) on each WebSocket
upgrade and iot-data publish; :class:`MotoCredentialStore` now indexes
sessions by access key id and prunes expired ones. This prints, for
growing numbers of sessions (minted as ``GET /token`` does, by a caller the
role trusts, inside ``mock_aws``), the median time of moto's scan for the
newest session and of the store's lookup (after its one-time trust check),
plus how many sessions a prune leaves once they expire.

    .venv/bin/python bench/credential_lookup.py [--sessions 100,1000,3000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from functools import partial

import boto3
from moto import mock_aws
from moto.backends import get_backend

from iotnotify_emulator.moto_credentials import MotoCredentialStore

ACCOUNT = "123456789012"
REPEAT = 200


def _median_us(func: object, repeat: int = REPEAT) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()  # type: ignore[operator]
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


def run(counts: list[int]) -> None:
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    print(
        f"{'sessions':>9} {'moto scan (us)':>15} {'store lookup (us)':>18} {'left after prune':>17}"
    )
    for count in counts:
        with mock_aws():
            store = MotoCredentialStore(accounts=[ACCOUNT])
            iam = boto3.client("iam", region_name="us-east-1")
            trust = {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}
                ],
            }
            role = iam.create_role(
                RoleName="subscriber", AssumeRolePolicyDocument=json.dumps(trust)
            )
            iam.create_user(UserName="vendor")
            key = iam.create_access_key(UserName="vendor")["AccessKey"]
            sts = boto3.client(
                "sts",
                region_name="us-east-1",
                aws_access_key_id=key["AccessKeyId"],
                aws_secret_access_key=key["SecretAccessKey"],
            )
            newest = ""
            for index in range(count):
                newest = sts.assume_role(
                    RoleArn=role["Role"]["Arn"], RoleSessionName=f"user{index}", DurationSeconds=900
                )["Credentials"]["AccessKeyId"]
            backend = get_backend("sts")[ACCOUNT]["aws"]
            assert store.lookup(newest) is not None  # the one-time trust check
            scan = _median_us(partial(backend.get_assumed_role_from_access_key, newest))
            lookup = _median_us(partial(store.lookup, newest))
            store.prune(now=datetime.now(UTC) + timedelta(seconds=901))
            print(f"{count:>9} {scan:>15.1f} {lookup:>18.1f} {len(backend.assumed_roles):>17}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="100,1000,3000")
    args = parser.parse_args()
    run([int(n) for n in args.sessions.split(",")])


if __name__ == "__main__":
    main()
