"""IAM policy documents for AWS IoT Core, built from the wire contract.

One definition serves the token-vending Lambda (the per-user session policy),
the CDK stack (the subscriber role's ceiling and the publishers' grant) and
``iotnotify local`` (which provisions the same policies in moto), so the
offline stack and AWS can never disagree about who may do what.

``region`` and ``account`` may be CDK tokens; they are only interpolated.

Channels (rooms and games, DESIGN.md "Channels") widen a user's session by
exact grants on each channel's topics; how many fit in one token is
:data:`MAX_CHANNELS_PER_TOKEN`, derived below from STS's limit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any, Final

from iotnotify.contract import (
    Channel,
    TopicScheme,
    client_id_prefix,
    iot_arn,
    validate_user_id,
)
from iotnotify.errors import ContractError

__all__ = [
    "BACKEND_ROUTES",
    "LONGEST_DEPLOYMENT_NAME_CHARS",
    "MAX_CHANNELS_PER_TOKEN",
    "MAX_SESSION_POLICY_CHARS",
    "PolicyDocument",
    "TooManyChannels",
    "compact_json",
    "game_server_policy",
    "notify_caller_policy",
    "publisher_policy",
    "subscriber_ceiling_policy",
    "subscriber_session_policy",
]

# STS refuses a session policy over 2048 characters (AssumeRole API reference,
# "Policy": "The plaintext that you use for both inline and managed session
# policies can't exceed 2,048 characters").
MAX_SESSION_POLICY_CHARS: Final = 2048
# infra/ accepts app and stage names of at most 30 characters (StageConfig).
LONGEST_DEPLOYMENT_NAME_CHARS: Final = 30
# Session-policy ARNs name no region or account ("*"): the subscriber role's
# ceiling pins both, and a session policy can only narrow the role's own
# policy, so the wildcard grants nothing more. It saves 26 characters per
# ARN (e.g. "ap-southeast-2:123456789012"), which is most of what decides how
# many channels fit in STS's 2048 characters.
_ANY: Final = "*"


class TooManyChannels(ContractError):
    """A token would name more channels than a session policy can hold."""


PolicyDocument = dict[str, Any]


def compact_json(policy: PolicyDocument) -> str:
    """The policy as STS and IAM want it: compact JSON."""
    return json.dumps(policy, separators=(",", ":"), sort_keys=False)


def subscriber_session_policy(
    scheme: TopicScheme,
    user_id: str,
    *,
    region: str,
    account: str,
    channels: Sequence[Channel] = (),
) -> PolicyDocument:
    """What one signed-in user may do: connect as ``{userId}.*``, subscribe to
    and receive from their own topic, the broadcast topic and each channel's
    topic, publish on each room's input topic, nothing else.

    ``region`` and ``account`` are accepted for symmetry with the other
    builders; the ARNs use ``*`` for both (see :data:`_ANY`). Raises
    :class:`TooManyChannels` over :data:`MAX_CHANNELS_PER_TOKEN` channels and
    ``ValueError`` if the document would still exceed STS's 2048 characters.
    """
    del region, account  # pinned by the role's ceiling, see _ANY
    user_id = validate_user_id(user_id)
    if len(channels) > MAX_CHANNELS_PER_TOKEN:
        raise TooManyChannels(
            f"a token can carry at most {MAX_CHANNELS_PER_TOKEN} channels (STS limits a "
            f"session policy to {MAX_SESSION_POLICY_CHARS} characters); asked for {len(channels)}"
        )
    policy = _session_policy(scheme, user_id, channels)
    size = len(compact_json(policy))
    if size > MAX_SESSION_POLICY_CHARS:  # pragma: no cover - bounded by MAX_CHANNELS_PER_TOKEN
        raise ValueError(
            f"session policy is {size} characters; STS allows {MAX_SESSION_POLICY_CHARS}"
        )
    return policy


def _session_policy(
    scheme: TopicScheme, user_id: str, channels: Sequence[Channel]
) -> PolicyDocument:
    topics = [str(topic) for topic in scheme.user_topics(user_id)]
    topics += [str(channel.topic(scheme)) for channel in channels]
    inputs = [str(t) for t in (c.input_topic(scheme) for c in channels) if t is not None]
    statements: list[dict[str, Any]] = [
        {
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": iot_arn(_ANY, _ANY, "client", f"{client_id_prefix(user_id)}*"),
        },
        # Subscribe and Receive need one ARN each: an IAM pattern such as
        # "topic*/T" would cover both resource types but also every topic
        # ending in "/T" ("*" spans "/"), a grant wider than the user's own.
        # No Sids: every character counts against STS's 2048.
        {
            "Effect": "Allow",
            "Action": "iot:Subscribe",
            "Resource": [iot_arn(_ANY, _ANY, "topicfilter", t) for t in topics],
        },
        {
            "Effect": "Allow",
            "Action": "iot:Receive",
            "Resource": [iot_arn(_ANY, _ANY, "topic", t) for t in topics],
        },
    ]
    if inputs:
        statements.append(
            {
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": [iot_arn(_ANY, _ANY, "topic", t) for t in inputs],
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


@cache
def _channels_that_fit_at_the_longest_names() -> int:
    """How many rooms fit when every name is as long as allowed.

    The longest user id (64), room names (64, rooms cost more than games: they
    add an input topic) and app and stage names as long as a deployment may
    have (:data:`LONGEST_DEPLOYMENT_NAME_CHARS`). Room names are made distinct
    in their last characters so no two grants are equal.
    """
    longest = "x" * LONGEST_DEPLOYMENT_NAME_CHARS
    scheme = TopicScheme(longest, longest)
    user_id = "u" * 64
    count = 0
    while True:
        rooms = [Channel("room", f"{'r' * 60}{n:04d}") for n in range(count + 1)]
        if len(compact_json(_session_policy(scheme, user_id, rooms))) > MAX_SESSION_POLICY_CHARS:
            return count
        count += 1


MAX_CHANNELS_PER_TOKEN: Final = _channels_that_fit_at_the_longest_names()


def subscriber_ceiling_policy(scheme: TopicScheme, *, region: str, account: str) -> PolicyDocument:
    """The subscriber role's own policy: the most any session may ever do.

    Sessions are narrowed per user by :func:`subscriber_session_policy`; this
    ceiling keeps even a buggy session policy inside this app and stage, and
    allows client publishes only on rooms' input topics (``chat/*/input``),
    which the moderation rule reads; room topics themselves are written by
    server code alone.
    """
    prefix = scheme.prefix
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ConnectAsUserClientIds",
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": iot_arn(region, account, "client", "*.*"),
            },
            {
                "Sid": "SubscribeWithinStage",
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": iot_arn(region, account, "topicfilter", f"{prefix}/*"),
            },
            {
                "Sid": "ReceiveWithinStage",
                "Effect": "Allow",
                "Action": "iot:Receive",
                "Resource": iot_arn(region, account, "topic", f"{prefix}/*"),
            },
            {
                "Sid": "PublishToRoomInputsWithinStage",
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": iot_arn(region, account, "topic", f"{prefix}/chat/*/input"),
            },
        ],
    }


def publisher_policy(scheme: TopicScheme, *, region: str, account: str) -> PolicyDocument:
    """What backend publishers (Lambdas, game servers) may do: publish in this stage."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PublishWithinStage",
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": iot_arn(region, account, "topic", f"{scheme.prefix}/*"),
            }
        ],
    }


def game_server_policy(
    *, region: str, account: str, inbox_table: str, games_table: str, presence_table: str
) -> PolicyDocument:
    """What :meth:`iotnotify.publisher.Publisher.create` calls besides ``iot:Publish``
    (which :func:`publisher_policy` grants): a game server's role needs both.

    Before every publish the publisher writes the user's inbox item
    (``dynamodb:PutItem``; ``dynamodb:BatchWriteItem`` in ``notify_many``),
    ``register_game`` is one ``dynamodb:UpdateItem`` on the games table,
    ``presence()`` and ``skip_offline`` read the presence table
    (``dynamodb:Query``), and without ``endpoint=`` the data endpoint is
    found with ``iot:DescribeEndpoint``, which supports no resource-level
    permissions ("Actions, resources, and condition keys for AWS IoT":
    DescribeEndpoint has no resource type, so ``"*"``).
    """

    def table(name: str) -> str:
        return f"arn:aws:dynamodb:{region}:{account}:table/{name}"

    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WriteInbox",
                "Effect": "Allow",
                "Action": ["dynamodb:PutItem", "dynamodb:BatchWriteItem"],
                "Resource": table(inbox_table),
            },
            {
                "Sid": "RegisterGames",
                "Effect": "Allow",
                "Action": "dynamodb:UpdateItem",
                "Resource": table(games_table),
            },
            {
                "Sid": "ReadPresence",
                "Effect": "Allow",
                "Action": "dynamodb:Query",
                "Resource": table(presence_table),
            },
            {
                "Sid": "FindDataEndpoint",
                "Effect": "Allow",
                "Action": "iot:DescribeEndpoint",
                "Resource": "*",
            },
        ],
    }


# The IAM-authorised backend routes (each also has an API-key form, ``.../key``).
BACKEND_ROUTES: Final = ("notify", "games")


def notify_caller_policy(
    *,
    region: str,
    account: str,
    api_id: str,
    stage: str,
    method: str = "POST",
    paths: Sequence[str] = BACKEND_ROUTES,
) -> PolicyDocument:
    """What a backend needs to call the IAM routes ``POST /notify`` and ``POST /games``:
    those methods, nothing else of the API.

    Each resource is the method's ``execute-api`` ARN (API Gateway developer
    guide, "Control access for invoking an API"):
    ``arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/{method}/{path}``.
    The CDK stack builds the same statement with ``RestApi.arn_for_execute_api``.
    """
    resources = [
        f"arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/{method}/{path}" for path in paths
    ]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "InvokeBackendRoutes",
                "Effect": "Allow",
                "Action": "execute-api:Invoke",
                "Resource": resources,
            }
        ],
    }
