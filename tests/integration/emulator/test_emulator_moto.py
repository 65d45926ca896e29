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
from datetime import datetime, timedelta, tzinfo
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
    iam = moto.client("iam")
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
    # And the token-vending identity: an IAM user whose policy allows
    # sts:AssumeRole on it (the trust policy delegates to the account)
    store = MotoCredentialStore()  # records AssumeRole callers from here on
    vendor = iam.create_user(UserName=f"vendor-{suffix}")["User"]["UserName"]
    iam.put_user_policy(
        UserName=vendor,
        PolicyName="assume",
        PolicyDocument=compact_json(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role["Arn"]}
                ],
            }
        ),
    )
    vendor_key = iam.create_access_key(UserName=vendor)["AccessKey"]
    sts = boto3.client(
        "sts",
        region_name=REGION,
        endpoint_url=moto.url,
        aws_access_key_id=vendor_key["AccessKeyId"],
        aws_secret_access_key=vendor_key["SecretAccessKey"],
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
    async with start_emulator(config, credentials=store) as emulator:
        alice = _signing_credential(session)
        url = presign_url(emulator.ws_url, alice, region=REGION)
        # Then alice cannot connect as bob
        with pytest.raises(ConnectionRefused) as refused:
            await RawMqttClient.connect(url, client_id="bob.1")
        assert refused.value.hung_up
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


def test_one_store_sees_a_users_changed_policy_and_removed_key_at_once(moto: Moto) -> None:
    # Given a long-lived store (as iotnotify local keeps one) that has already
    # resolved a publisher whose inline policy allows topic a/#
    iam = moto.client("iam")
    user = f"u-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)

    def allow(topic: str) -> str:
        resource = f"arn:aws:iot:{REGION}:{ACCOUNT}:topic/{topic}"
        statement = {"Effect": "Allow", "Action": "iot:Publish", "Resource": resource}
        return compact_json({"Version": "2012-10-17", "Statement": [statement]})

    iam.put_user_policy(UserName=user, PolicyName="pub", PolicyDocument=allow("a/*"))
    key = iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
    store = MotoCredentialStore()
    first = store.lookup(key)
    assert first is not None
    [before] = first.identity_policies

    # When the policy is replaced, Then the next lookup has the new one
    iam.put_user_policy(UserName=user, PolicyName="pub", PolicyDocument=allow("b/*"))
    second = store.lookup(key)
    assert second is not None
    [after] = second.identity_policies
    assert before.statements[0].resources == (f"arn:aws:iot:{REGION}:{ACCOUNT}:topic/a/*",)
    assert after.statements[0].resources == (f"arn:aws:iot:{REGION}:{ACCOUNT}:topic/b/*",)
    # and once the policy is deleted, none is left
    iam.delete_user_policy(UserName=user, PolicyName="pub")
    third = store.lookup(key)
    assert third is not None
    assert third.identity_policies == ()
    # and once the key is deleted, it is unknown
    iam.delete_access_key(UserName=user, AccessKeyId=key)
    assert store.lookup(key) is None


def _trust_policy(effect: str, principal: dict[str, Any]) -> str:
    """A role trust policy with one statement: ``effect`` sts:AssumeRole for ``principal``."""
    statement = {"Effect": effect, "Principal": principal, "Action": "sts:AssumeRole"}
    return compact_json({"Version": "2012-10-17", "Statement": [statement]})


def _role_trusting(iam: Any, principal: dict[str, Any], suffix: str) -> str:
    return str(
        iam.create_role(
            RoleName=f"r-{suffix}", AssumeRolePolicyDocument=_trust_policy("Allow", principal)
        )["Role"]["Arn"]
    )


def _sts_as(moto: Moto, key: str, secret: str) -> Any:
    return boto3.client(
        "sts",
        region_name=REGION,
        endpoint_url=moto.url,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


@dataclass(frozen=True)
class _Caller:
    """A role trusting every AWS principal, and an IAM user with a key to assume
    it; ``iam`` is the admin client that made them, for the test's own changes."""

    iam: Any
    role_arn: str
    role: str
    user: str
    key: dict[str, Any]
    sts: Any


def _role_and_caller(moto: Moto) -> _Caller:
    iam = moto.client("iam")
    suffix = uuid.uuid4().hex[:8]
    role_arn = _role_trusting(iam, {"AWS": "*"}, suffix)
    user = f"u-{suffix}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    sts = _sts_as(moto, key["AccessKeyId"], key["SecretAccessKey"])
    return _Caller(iam, role_arn, role_arn.rsplit("/", 1)[1], user, key, sts)


def test_moto_sessions_honour_the_roles_trust_policy(moto: Moto) -> None:
    iam = moto.client("iam")
    suffix = uuid.uuid4().hex[:8]
    store = MotoCredentialStore()
    account_role = _role_trusting(iam, {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, suffix)
    # Given a user allowed to assume the role, one who is not, and made-up keys
    allowed, denied = f"ok-{suffix}", f"no-{suffix}"
    for name in (allowed, denied):
        iam.create_user(UserName=name)
    iam.put_user_policy(
        UserName=allowed,
        PolicyName="assume",
        PolicyDocument=compact_json(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}],
            }
        ),
    )
    keys = {n: iam.create_access_key(UserName=n)["AccessKey"] for n in (allowed, denied)}
    callers = {
        allowed: (keys[allowed]["AccessKeyId"], keys[allowed]["SecretAccessKey"]),
        denied: (keys[denied]["AccessKeyId"], keys[denied]["SecretAccessKey"]),
        "made-up": ("AKIAMADEUP0000000000", "made-up"),
        # a real key id with a wrong secret: the signature does not verify
        "forged": (keys[allowed]["AccessKeyId"], "not-the-secret"),
    }
    honoured = {}
    for who, (key, secret) in callers.items():
        # When each assumes the role in moto (moto answers everyone)
        session = _sts_as(moto, key, secret).assume_role(
            RoleArn=account_role, RoleSessionName="s1"
        )["Credentials"]
        honoured[who] = store.lookup(session["AccessKeyId"]) is not None
    # Then the emulator honours only the session the trust policy allows
    assert honoured == {allowed: True, denied: False, "made-up": False, "forged": False}
    # And a role that names one role's sessions trusts only them (role chaining)
    chained = _role_trusting(iam, {"AWS": account_role}, f"c-{suffix}")
    first = _sts_as(moto, *callers[allowed]).assume_role(RoleArn=account_role, RoleSessionName="a1")
    creds = first["Credentials"]
    via_role = boto3.client(
        "sts",
        region_name=REGION,
        endpoint_url=moto.url,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    ).assume_role(RoleArn=chained, RoleSessionName="b1")["Credentials"]
    assert store.lookup(via_role["AccessKeyId"]) is not None
    direct = _sts_as(moto, *callers[allowed]).assume_role(RoleArn=chained, RoleSessionName="c1")
    assert store.lookup(direct["Credentials"]["AccessKeyId"]) is None


def test_expired_moto_sessions_are_pruned_here_and_in_moto(moto: Moto) -> None:
    from datetime import UTC, datetime, timedelta

    from moto.backends import get_backend

    store = MotoCredentialStore()
    caller = _role_and_caller(moto)
    role, sts = caller.role_arn, caller.sts
    # Given 30 token-vending sessions
    sessions = [
        sts.assume_role(RoleArn=role, RoleSessionName=f"s{i}", DurationSeconds=900)["Credentials"][
            "AccessKeyId"
        ]
        for i in range(30)
    ]
    moto_sessions = get_backend("sts")[ACCOUNT]["aws"].assumed_roles
    assert {s.access_key_id for s in moto_sessions} >= set(sessions)
    assert store.lookup(sessions[0]) is not None
    # When they have expired and the store prunes
    pruned = store.prune(now=datetime.now(UTC) + timedelta(seconds=901))
    # Then they are gone from the index and from moto's own list
    assert pruned >= 30
    assert not {s.access_key_id for s in moto_sessions} & set(sessions)
    assert store.lookup(sessions[0]) is None


def test_one_store_sees_a_roles_changed_policy_on_a_session_it_already_honoured(
    moto: Moto,
) -> None:
    # On AWS a role session's permissions are the role's policies at the time
    # of each request (adding a Deny to the role is how existing sessions are
    # revoked: IAM User Guide, "Revoking IAM role temporary security
    # credentials"); only the trust decision belongs to the session.
    store = MotoCredentialStore()
    caller = _role_and_caller(moto)
    iam = caller.iam
    role_arn, role = caller.role_arn, caller.role
    resource = f"arn:aws:iot:{REGION}:{ACCOUNT}:topic/a/*"

    def document(effect: str) -> str:
        statement = {"Effect": effect, "Action": "iot:Publish", "Resource": resource}
        return compact_json({"Version": "2012-10-17", "Statement": [statement]})

    iam.put_role_policy(RoleName=role, PolicyName="allow", PolicyDocument=document("Allow"))
    session = caller.sts.assume_role(RoleArn=role_arn, RoleSessionName="s1")["Credentials"]
    # Given a session the store has already honoured
    first = store.lookup(session["AccessKeyId"])
    assert first is not None
    assert [p.name for p in first.identity_policies] == [f"role/{role}/inline/allow"]

    # When a Deny is added to the role, Then the same session carries it
    iam.put_role_policy(RoleName=role, PolicyName="revoke", PolicyDocument=document("Deny"))
    second = store.lookup(session["AccessKeyId"])
    assert second is not None
    assert sorted(p.name for p in second.identity_policies) == [
        f"role/{role}/inline/allow",
        f"role/{role}/inline/revoke",
    ]
    # And once the role is deleted, its sessions are refused
    for name in ("allow", "revoke"):
        iam.delete_role_policy(RoleName=role, PolicyName=name)
    iam.delete_role(RoleName=role)
    assert store.lookup(session["AccessKeyId"]) is None


def test_a_role_deleted_and_created_again_does_not_take_the_old_roles_sessions(
    moto: Moto,
) -> None:
    # A role created again under the same name is a new role with a new unique
    # id; the old role's sessions (principal "{old id}:{name}") are not its own.
    store = MotoCredentialStore()
    caller = _role_and_caller(moto)
    iam = caller.iam
    role_arn, role, sts = caller.role_arn, caller.role, caller.sts
    trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    old = sts.assume_role(RoleArn=role_arn, RoleSessionName="s1")["Credentials"]
    # Given a session of the role, honoured, whose principal carries the role's id
    old_role_id = iam.get_role(RoleName=role)["Role"]["RoleId"]
    honoured = store.lookup(old["AccessKeyId"])
    assert honoured is not None
    assert honoured.principal_id == f"{old_role_id}:s1"

    # When the role is deleted and created again under the same name and trust
    iam.delete_role(RoleName=role)
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=compact_json(trust))
    assert iam.get_role(RoleName=role)["Role"]["RoleId"] != old_role_id

    # Then the old session is refused, and a new session of the new role is honoured
    assert store.lookup(old["AccessKeyId"]) is None
    new = sts.assume_role(RoleArn=role_arn, RoleSessionName="s2")["Credentials"]
    fresh = store.lookup(new["AccessKeyId"])
    assert fresh is not None
    assert fresh.principal_id.startswith(iam.get_role(RoleName=role)["Role"]["RoleId"] + ":")


def test_a_session_first_used_long_after_it_was_issued_is_honoured(
    moto: Moto, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The five-minute window of a signed request is for the AssumeRole request
    # to reach STS (IAM User Guide, "AWS Signature Version 4 for API
    # requests"); the session it returns lives for hours. So the recorded
    # request is judged at the time it was answered, not when the session is
    # first used.
    caller = _role_and_caller(moto)
    # Given a session issued now, not yet seen by the store that will serve it
    session = caller.sts.assume_role(RoleArn=caller.role_arn, RoleSessionName="late")["Credentials"]
    store = MotoCredentialStore()

    # When it is first used twenty minutes later
    class Later(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Later:  # type: ignore[override]
            moment = datetime.now(tz) + timedelta(minutes=20)
            return cls.fromtimestamp(moment.timestamp(), tz)

    monkeypatch.setattr("iotnotify_emulator.sigv4.datetime", Later)

    # Then it is honoured
    credential = store.lookup(session["AccessKeyId"])
    assert credential is not None
    assert credential.principal_arn.endswith(f"/{caller.role}/late")


def test_the_trust_decision_is_made_when_a_session_is_issued(moto: Moto) -> None:
    # On AWS, AssumeRole checks the caller and the trust policy; the session
    # it returns stays valid when either changes later (only the role's
    # permissions are read at each request).
    store = MotoCredentialStore()
    caller = _role_and_caller(moto)
    iam = caller.iam
    role_arn, sts = caller.role_arn, caller.sts

    def trust(effect: str) -> None:
        document = _trust_policy(effect, {"AWS": "*"})
        iam.update_assume_role_policy(RoleName=caller.role, PolicyDocument=document)

    # Given a session issued while the role trusts everyone, and one issued
    # while it denies everyone (AWS would have refused that AssumeRole), neither used yet
    trusted = sts.assume_role(RoleArn=role_arn, RoleSessionName="before")["Credentials"]
    trust("Deny")
    refused = sts.assume_role(RoleArn=role_arn, RoleSessionName="after")["Credentials"]

    # When the role trusts everyone again, the one issued under the Deny stays refused
    trust("Allow")
    assert store.lookup(refused["AccessKeyId"]) is None
    # And when it denies everyone again and the caller's key is deleted, the
    # one issued under the Allow is honoured at its first use
    trust("Deny")
    iam.delete_access_key(UserName=caller.user, AccessKeyId=caller.key["AccessKeyId"])
    assert store.lookup(trusted["AccessKeyId"]) is not None


def test_issue_listeners_hear_of_each_session_honoured_as_it_is_issued(moto: Moto) -> None:
    store = MotoCredentialStore()
    heard: list[tuple[str, str]] = []
    remove = store.add_issue_listener(
        lambda key, credential: heard.append((key, credential.principal_arn))
    )
    caller = _role_and_caller(moto)
    iam = caller.iam
    role_arn, role, sts = caller.role_arn, caller.role, caller.sts

    # When a session is issued, the listener hears of it with its credential
    honoured = sts.assume_role(RoleArn=role_arn, RoleSessionName="heard")["Credentials"]
    assert heard == [(honoured["AccessKeyId"], f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/heard")]
    # And not of one the trust policy refuses, nor of any once removed
    iam.update_assume_role_policy(RoleName=role, PolicyDocument=_trust_policy("Deny", {"AWS": "*"}))
    sts.assume_role(RoleArn=role_arn, RoleSessionName="refused")
    remove()
    iam.update_assume_role_policy(
        RoleName=role, PolicyDocument=_trust_policy("Allow", {"AWS": "*"})
    )
    sts.assume_role(RoleArn=role_arn, RoleSessionName="unheard")
    assert len(heard) == 1
