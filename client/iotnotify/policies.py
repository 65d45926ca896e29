"""IAM policy documents for AWS IoT Core, built from the wire contract.

One definition serves the token-vending Lambda (the per-user session policy),
the CDK stack (the subscriber role's ceiling and the publishers' grant) and
``iotnotify local`` (which provisions the same policies in moto), so the
offline stack and AWS can never disagree about who may do what.

``region`` and ``account`` may be CDK tokens; they are only interpolated.
"""

from __future__ import annotations

import json
from typing import Any, Final

from iotnotify.contract import TopicScheme, client_id_prefix, iot_arn, validate_user_id

__all__ = [
    "MAX_SESSION_POLICY_CHARS",
    "PolicyDocument",
    "compact_json",
    "notify_caller_policy",
    "publisher_policy",
    "subscriber_ceiling_policy",
    "subscriber_session_policy",
]

# STS refuses a packed session policy over 2048 characters.
MAX_SESSION_POLICY_CHARS: Final = 2048

PolicyDocument = dict[str, Any]


def compact_json(policy: PolicyDocument) -> str:
    """The policy as STS and IAM want it: compact JSON."""
    return json.dumps(policy, separators=(",", ":"), sort_keys=False)


def subscriber_session_policy(
    scheme: TopicScheme, user_id: str, *, region: str, account: str
) -> PolicyDocument:
    """What one signed-in user may do: connect as ``{userId}.*``, subscribe to
    and receive from their own topic and the broadcast topic, nothing else."""
    user_id = validate_user_id(user_id)
    topics = [str(topic) for topic in scheme.user_topics(user_id)]
    policy: PolicyDocument = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ConnectAsOwnClientIds",
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": iot_arn(region, account, "client", f"{client_id_prefix(user_id)}*"),
            },
            {
                "Sid": "SubscribeToOwnTopics",
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": [iot_arn(region, account, "topicfilter", t) for t in topics],
            },
            {
                "Sid": "ReceiveFromOwnTopics",
                "Effect": "Allow",
                "Action": "iot:Receive",
                "Resource": [iot_arn(region, account, "topic", t) for t in topics],
            },
        ],
    }
    size = len(compact_json(policy))
    if size > MAX_SESSION_POLICY_CHARS:  # pragma: no cover - user ids are at most 64 chars
        raise ValueError(
            f"session policy is {size} characters; STS allows {MAX_SESSION_POLICY_CHARS}"
        )
    return policy


def subscriber_ceiling_policy(scheme: TopicScheme, *, region: str, account: str) -> PolicyDocument:
    """The subscriber role's own policy: the most any session may ever do.

    Sessions are narrowed per user by :func:`subscriber_session_policy`; this
    ceiling keeps even a buggy session policy inside this app and stage, and
    never grants publish.
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


def notify_caller_policy(
    *,
    region: str,
    account: str,
    api_id: str,
    stage: str,
    method: str = "POST",
    path: str = "notify",
) -> PolicyDocument:
    """What a backend needs to call the IAM route ``POST /notify``: that one method.

    The resource is the method's ``execute-api`` ARN (API Gateway developer
    guide, "Control access for invoking an API"):
    ``arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/{method}/{path}``.
    The CDK stack builds the same statement with ``RestApi.arn_for_execute_api``.
    """
    resource = f"arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/{method}/{path}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "InvokeNotify",
                "Effect": "Allow",
                "Action": "execute-api:Invoke",
                "Resource": resource,
            }
        ],
    }
