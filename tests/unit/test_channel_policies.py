"""Channel grants in session policies: what a member may do, and how many fit.

Judged by the emulator's IAM evaluator with the subscriber role's ceiling and
the session policy intersected, as IAM does for a role session.
"""

from __future__ import annotations

import pytest

from iotnotify.contract import Channel, TopicScheme, iot_arn
from iotnotify.policies import (
    LONGEST_DEPLOYMENT_NAME_CHARS,
    MAX_CHANNELS_PER_TOKEN,
    MAX_SESSION_POLICY_CHARS,
    TooManyChannels,
    _session_policy,
    compact_json,
    subscriber_ceiling_policy,
    subscriber_session_policy,
)
from iotnotify_emulator.iam import Policy, evaluate

REGION = "us-east-1"
ACCOUNT = "123456789012"
SCHEME = TopicScheme("iotnotify", "dev")


def decide(channels: list[Channel], action: str, kind: str, name: str) -> bool:
    ceiling = Policy.parse(subscriber_ceiling_policy(SCHEME, region=REGION, account=ACCOUNT))
    session = Policy.parse(
        subscriber_session_policy(
            SCHEME, "alice", region=REGION, account=ACCOUNT, channels=channels
        )
    )
    return evaluate(
        action,
        iot_arn(REGION, ACCOUNT, kind, name),
        identity_policies=[ceiling],
        session_policies=[session],
        context={"iot:ClientId": "alice.x"},
    ).allowed


LOBBY = [Channel("room", "lobby")]


@pytest.mark.parametrize(
    ("action", "kind", "name"),
    [
        ("iot:Subscribe", "topicfilter", "iotnotify/dev/chat/lobby"),
        ("iot:Receive", "topic", "iotnotify/dev/chat/lobby"),
        ("iot:Publish", "topic", "iotnotify/dev/chat/lobby/input"),
    ],
)
def test_a_room_member_reads_the_room_and_writes_only_its_input(
    action: str, kind: str, name: str
) -> None:
    assert decide(LOBBY, action, kind, name)


@pytest.mark.parametrize(
    ("action", "kind", "name"),
    [
        # the room topic is written by the moderator only
        ("iot:Publish", "topic", "iotnotify/dev/chat/lobby"),
        ("iot:Subscribe", "topicfilter", "iotnotify/dev/chat/lobby/input"),
        ("iot:Subscribe", "topicfilter", "iotnotify/dev/chat/+"),
        ("iot:Subscribe", "topicfilter", "iotnotify/dev/chat/lobby2"),
        ("iot:Receive", "topic", "iotnotify/dev/chat/lobby2"),
        ("iot:Publish", "topic", "iotnotify/dev/chat/lobby2/input"),
        ("iot:Publish", "topic", "iotnotify/dev/chat/lobb/input"),
        ("iot:RetainPublish", "topic", "iotnotify/dev/chat/lobby/input"),
        # look-alikes that only a "*" spanning "/" inside an ARN would reach
        ("iot:Subscribe", "topicfilter", "iotnotify/dev/x/iotnotify/dev/chat/lobby"),
        ("iot:Receive", "topic", "iotnotify/dev/x/iotnotify/dev/chat/lobby"),
    ],
)
def test_a_room_grant_reaches_nothing_else(action: str, kind: str, name: str) -> None:
    assert not decide(LOBBY, action, kind, name)


def test_without_channels_a_session_publishes_nothing() -> None:
    assert not decide([], "iot:Publish", "topic", "iotnotify/dev/chat/lobby/input")


def test_the_ceiling_allows_client_publishes_only_on_input_topics() -> None:
    """Even a session policy granting everything cannot publish outside inputs."""
    ceiling = Policy.parse(subscriber_ceiling_policy(SCHEME, region=REGION, account=ACCOUNT))
    everything = Policy.parse(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
        }
    )

    def publish(topic: str) -> bool:
        return evaluate(
            "iot:Publish",
            iot_arn(REGION, ACCOUNT, "topic", topic),
            identity_policies=[ceiling],
            session_policies=[everything],
        ).allowed

    assert publish("iotnotify/dev/chat/lobby/input")
    for topic in (
        "iotnotify/dev/chat/lobby",
        "iotnotify/dev/user/bob/notifications",
        "iotnotify/dev/broadcast",
        "iotnotify/dev/game/g1",
        "iotnotify/prod/chat/lobby/input",
    ):
        assert not publish(topic), topic


def test_game_channels_are_read_only() -> None:
    game = [Channel("game", "g1")]
    assert decide(game, "iot:Receive", "topic", "iotnotify/dev/game/g1")
    assert not decide(game, "iot:Publish", "topic", "iotnotify/dev/game/g1")


def test_max_channels_is_what_fits_in_sts_limit_at_the_longest_names() -> None:
    """At the longest user id, room names and deployment names, MAX channels fit
    in STS's 2048 characters and one more would not."""
    longest = "x" * LONGEST_DEPLOYMENT_NAME_CHARS
    scheme = TopicScheme(longest, longest)
    user = "u" * 64
    count = MAX_CHANNELS_PER_TOKEN + 1
    rooms = [Channel("room", chr(ord("a") + n) * 64) for n in range(count)]
    fits = subscriber_session_policy(
        scheme, user, region="ap-southeast-2", account=ACCOUNT, channels=rooms[:-1]
    )
    assert len(compact_json(fits)) <= MAX_SESSION_POLICY_CHARS
    assert len(compact_json(_session_policy(scheme, user, rooms))) > MAX_SESSION_POLICY_CHARS
    assert MAX_CHANNELS_PER_TOKEN >= 2  # `?rooms=a,b` works whatever the names


def test_forty_rooms_in_one_token_are_refused() -> None:
    rooms = [Channel("room", f"r{n}") for n in range(40)]
    with pytest.raises(TooManyChannels, match="at most"):
        subscriber_session_policy(SCHEME, "alice", region=REGION, account=ACCOUNT, channels=rooms)
