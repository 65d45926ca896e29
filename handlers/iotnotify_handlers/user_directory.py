"""Whether a user id names a user of the caller's Cognito user pool.

A user id is a Cognito ``sub``. The pool is the one that issued the caller's
ID token: its ``iss`` claim is ``https://cognito-idp.{region}.amazonaws.com/{userPoolId}``
(Amazon Cognito developer guide, "Verifying a JSON web token": the issuer
claim), which API Gateway's Cognito authorizer (and the local stack's) has
verified before the handler runs. So no setting names the pool, and members
are checked against the same pool their owner signed in to.

The look-up is ``ListUsers`` with ``Filter='sub = "..."'`` and ``Limit=1``
(Amazon Cognito API reference, ListUsers: ``sub`` is one of the searchable
attributes); the caller's role needs ``cognito-idp:ListUsers`` on the pool.
A user id is validated (``[A-Za-z0-9_-]{1,64}``) before it is put in the
filter, so it cannot close the quotes.
"""

from __future__ import annotations

import re
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from iotnotify.contract import validate_user_id
from iotnotify_handlers.errors import ServiceUnavailable

__all__ = ["UserDirectory", "pool_of_issuer"]

# Pool ids are "{region}_{id}" (Amazon Cognito API reference, UserPoolType Id:
# [\w-]+_[0-9a-zA-Z]+).
_ISSUER_RE: Final = re.compile(
    r"https://cognito-idp\.([a-z0-9-]+)\.amazonaws\.com/([\w-]+_[0-9a-zA-Z]+)", re.ASCII
)


def pool_of_issuer(issuer: object) -> str:
    """The user pool id of a Cognito ``iss`` claim.

    Raises :class:`ServiceUnavailable` (503) when the claim is not a Cognito
    issuer: only an API whose authorizer is not a Cognito user pool gets
    there, and then nothing can be checked, so nothing is added.
    """
    match = _ISSUER_RE.fullmatch(issuer) if isinstance(issuer, str) else None
    if match is None:
        raise ServiceUnavailable("cannot check users: the caller's token names no Cognito pool")
    return match.group(2)


class UserDirectory:
    """Users of Cognito user pools; ``client`` is a boto3 ``cognito-idp`` client."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def exists(self, user_id: str, *, pool_id: str) -> bool:
        """Whether ``user_id`` is the ``sub`` of a user of ``pool_id`` (enabled or not).

        Raises :class:`ServiceUnavailable` if Cognito fails or throttles.
        """
        sub = validate_user_id(user_id)
        try:
            answer = self._client.list_users(UserPoolId=pool_id, Filter=f'sub = "{sub}"', Limit=1)
        except (BotoCoreError, ClientError) as exc:
            raise ServiceUnavailable("could not look the user up, try again") from exc
        return bool(answer.get("Users"))
