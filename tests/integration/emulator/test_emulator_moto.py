"""The emulator over moto: a role session from moto's STS, narrowed by its session policy.

moto records the ``Policy`` passed to AssumeRole but never enforces it; the
emulator must, so alice's session (ceiling role policy AND her session
policy) cannot read bob's topic even though the role's ceiling would allow it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from iotnotify.contract import TopicScheme
from iotnotify.policies import (
    compact_json,
    publisher_policy,
    subscriber_ceiling_policy,
    subscriber_session_policy,
)
from iotnotify_emulator import Credential, EmulatorConfig, start_emulator
from iotnotify_emulator.moto_credentials import MotoCredentialStore
from iotnotify_emulator.mqtt import Subscribe
from iotnotify_emulator.testing import ConnectionRefused, RawMqttClient, presign_url

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
SCHEME = TopicScheme("app", "moto")


@dataclass
class Moto:
    url: str

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # moto accepts any key
        )


@pytest.fixture
def moto() -> Iterator[Moto]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield Moto(url=f"http://{host}:{port}")
    finally:
        server.stop()


def _signing_credential(raw: dict[str, Any]) -> Credential:
    """Only what presign_url needs from STS's answer."""
    return Credential(
        access_key_id=raw["AccessKeyId"],
        secret_access_key=raw["SecretAccessKey"],
        session_token=raw.get("SessionToken"),
        principal_id="",
        identity_policies=(),
    )


async def test_moto_role_session_is_narrowed_by_its_session_policy(moto: Moto) -> None:
    suffix = uuid.uuid4().hex[:8]
    iam, sts = moto.client("iam"), moto.client("sts")
    # Given the subscriber role with the ceiling policy, as the CDK stack builds it
    role = iam.create_role(
        RoleName=f"subscriber-{suffix}",
        AssumeRolePolicyDocument=compact_json(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]
    iam.put_role_policy(
        RoleName=role["RoleName"],
        PolicyName="ceiling",
        PolicyDocument=compact_json(
            subscriber_ceiling_policy(SCHEME, region=REGION, account=ACCOUNT)
        ),
    )
    # And alice's session from AssumeRole with her session policy
    session = sts.assume_role(
        RoleArn=role["Arn"],
        RoleSessionName="alice",
        Policy=compact_json(
            subscriber_session_policy(SCHEME, "alice", region=REGION, account=ACCOUNT)
        ),
        DurationSeconds=900,
    )["Credentials"]
    # And a publisher IAM user with the managed publisher policy
    user = iam.create_user(UserName=f"publisher-{suffix}")["User"]
    managed = iam.create_policy(
        PolicyName=f"publish-{suffix}",
        PolicyDocument=compact_json(publisher_policy(SCHEME, region=REGION, account=ACCOUNT)),
    )["Policy"]
    iam.attach_user_policy(UserName=user["UserName"], PolicyArn=managed["Arn"])
    key = iam.create_access_key(UserName=user["UserName"])["AccessKey"]

    config = EmulatorConfig(region=REGION, account_id=ACCOUNT, wss_port=None)
    async with start_emulator(config, credentials=MotoCredentialStore()) as emulator:
        alice = _signing_credential(session)
        url = presign_url(emulator.ws_url, alice, region=REGION)
        # Then alice cannot connect as bob
        with pytest.raises(ConnectionRefused) as refused:
            await RawMqttClient.connect(url, client_id="bob.1")
        assert refused.value.return_code == 5
        # And may subscribe to her topic but not to bob's (the ceiling would allow it)
        client = await RawMqttClient.connect(url, client_id="alice.1")
        try:
            mine = str(SCHEME.user_notifications("alice"))
            bobs = str(SCHEME.user_notifications("bob"))
            assert (await client.subscribe(mine)).return_codes == (0,)
            # And receives what the moto IAM user publishes through iot-data
            publisher = boto3.client(
                "iot-data",
                region_name=REGION,
                endpoint_url=emulator.data_url,
                aws_access_key_id=key["AccessKeyId"],
                aws_secret_access_key=key["SecretAccessKey"],
            )
            await asyncio.to_thread(publisher.publish, topic=mine, qos=1, payload=b"hi alice")
            message = await client.next_publish()
            assert (message.topic, message.payload) == (mine, b"hi alice")
            # And subscribing to bob's topic closes her (MQTT 3.1.1) connection
            await client.send(Subscribe(packet_id=99, topics=((bobs, 0),)))
            assert await client.wait_closed() == []
            refusal = emulator.stats()["recent_refusals"][-1]
            assert refusal["reason"].startswith("no allow in session policy")
        finally:
            await client.close()


def test_moto_store_unknown_key_is_none(moto: Moto) -> None:
    assert MotoCredentialStore().lookup("ASIANOTAKEY000000000") is None


def test_moto_store_reads_group_policies_and_inactive_keys(moto: Moto) -> None:
    iam = moto.client("iam")
    suffix = uuid.uuid4().hex[:8]
    iam.create_user(UserName=f"u-{suffix}")
    iam.create_group(GroupName=f"g-{suffix}")
    iam.add_user_to_group(GroupName=f"g-{suffix}", UserName=f"u-{suffix}")
    iam.put_group_policy(
        GroupName=f"g-{suffix}",
        PolicyName="pub",
        PolicyDocument=compact_json(publisher_policy(SCHEME, region=REGION, account=ACCOUNT)),
    )
    key = iam.create_access_key(UserName=f"u-{suffix}")["AccessKey"]
    credential = MotoCredentialStore().lookup(key["AccessKeyId"])
    assert credential is not None
    assert credential.session_token is None
    assert [p.name for p in credential.identity_policies] == [f"group/g-{suffix}/inline/pub"]
    iam.update_access_key(UserName=f"u-{suffix}", AccessKeyId=key["AccessKeyId"], Status="Inactive")
    assert MotoCredentialStore().lookup(key["AccessKeyId"]) is None
