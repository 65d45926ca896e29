"""Acceptance: what alice's token allows, judged by a correct IAM evaluator.

The session policy STS recorded for alice is evaluated together with the
subscriber role's ceiling policy, exactly as IAM intersects them.
"""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sts.models import sts_backends

from iotnotify.contract import TopicScheme, client_id_for, iot_arn
from iotnotify.policies import subscriber_ceiling_policy, subscriber_session_policy
from iotnotify_emulator.iam import Policy, evaluate
from iotnotify_handlers import api_token
from tests.conftest import REGION, FakeAccount, rest_event

ACCOUNT = DEFAULT_ACCOUNT_ID
SCHEME = TopicScheme("iotnotify", "test")
ALICE = "iotnotify/test/user/alice/notifications"
BOB = "iotnotify/test/user/bob/notifications"
BROADCAST = "iotnotify/test/broadcast"


@pytest.fixture
def alice_policies(account: FakeAccount) -> tuple[Policy, Policy]:
    response = api_token.handler(rest_event(path="/token", claims={"sub": "alice"}))
    assert response["statusCode"] == 200
    [session] = sts_backends[ACCOUNT]["aws"].assumed_roles
    ceiling = account.session.client("iam").get_role_policy(
        RoleName=account.role_arn.rsplit("/", 1)[1], PolicyName="ceiling"
    )["PolicyDocument"]
    return Policy.parse(ceiling, name="ceiling"), Policy.parse(session.policy, name="session")


def allowed(policies: tuple[Policy, Policy], action: str, kind: str, name: str) -> bool:
    ceiling, session = policies
    decision = evaluate(
        action,
        iot_arn(REGION, ACCOUNT, kind, name),
        identity_policies=[ceiling],
        session_policies=[session],
        context={"iot:ClientId": name if kind == "client" else "alice.x"},
    )
    return decision.allowed


@pytest.mark.parametrize(
    ("action", "kind", "name"),
    [
        ("iot:Connect", "client", "alice.x"),
        ("iot:Subscribe", "topicfilter", ALICE),
        ("iot:Subscribe", "topicfilter", BROADCAST),
        ("iot:Receive", "topic", ALICE),
        ("iot:Receive", "topic", BROADCAST),
    ],
)
def test_alice_may(
    alice_policies: tuple[Policy, Policy], action: str, kind: str, name: str
) -> None:
    assert allowed(alice_policies, action, kind, name)


@pytest.mark.parametrize(
    ("action", "kind", "name"),
    [
        ("iot:Connect", "client", "alice-x.y"),
        ("iot:Connect", "client", "bob.x"),
        ("iot:Connect", "client", "alice"),
        ("iot:Subscribe", "topicfilter", BOB),
        ("iot:Subscribe", "topicfilter", "iotnotify/test/user/+/notifications"),
        ("iot:Subscribe", "topicfilter", "#"),
        ("iot:Subscribe", "topicfilter", "iotnotify/test/#"),
        ("iot:Receive", "topic", BOB),
        ("iot:Publish", "topic", ALICE),
        ("iot:Publish", "topic", BROADCAST),
        ("iot:Publish", "topic", BOB),
        ("iot:RetainPublish", "topic", ALICE),
    ],
)
def test_alice_may_not(
    alice_policies: tuple[Policy, Policy], action: str, kind: str, name: str
) -> None:
    assert not allowed(alice_policies, action, kind, name)


user_ids = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=64)


@settings(max_examples=300, deadline=None)
@given(user_ids, user_ids, st.text(alphabet=string.ascii_letters + ".-_", min_size=1, max_size=20))
def test_no_users_session_reaches_another_users_client_ids_or_topics(
    a: str, b: str, suffix: str
) -> None:
    """Property: for any two distinct valid user ids, a's policy grants nothing of b's."""
    if a == b:
        return
    ceiling = Policy.parse(subscriber_ceiling_policy(SCHEME, region=REGION, account=ACCOUNT))
    session = Policy.parse(subscriber_session_policy(SCHEME, a, region=REGION, account=ACCOUNT))
    b_topic = str(SCHEME.user_notifications(b))
    b_client = client_id_for(b, suffix if suffix.strip(".") else "x")
    for action, kind, name in [
        ("iot:Connect", "client", b_client),
        ("iot:Subscribe", "topicfilter", b_topic),
        ("iot:Receive", "topic", b_topic),
    ]:
        decision = evaluate(
            action,
            iot_arn(REGION, ACCOUNT, kind, name),
            identity_policies=[ceiling],
            session_policies=[session],
        )
        assert not decision.allowed, (a, b, action, name)
    assert evaluate(
        "iot:Receive",
        iot_arn(REGION, ACCOUNT, "topic", str(SCHEME.user_notifications(a))),
        identity_policies=[ceiling],
        session_policies=[session],
    ).allowed


def test_session_policy_is_compact_json_within_the_sts_limit() -> None:
    policy = subscriber_session_policy(SCHEME, "x" * 64, region=REGION, account=ACCOUNT)
    assert len(json.dumps(policy, separators=(",", ":"))) <= 2048
