"""``POST /notify``: who may send, what a request may contain, and sending it.

Game servers call this when they cannot use the Python publisher. Two ways
in: API Gateway IAM auth (the request context then names the caller), or a
shared API key sent as ``x-api-key`` to ``/notify/key`` and compared in
constant time with a SecureString SSM parameter. The key is fetched with a
TTL cache so rotating it needs no redeploy, and it is never in the
environment or a log line.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from iotnotify.contract import validate_name, validate_title, validate_user_id
from iotnotify.errors import ContractError, PublishError, Throttled
from iotnotify.publisher import DeliveryResult, Publisher, delivery_report
from iotnotify_handlers.errors import BadRequest, ServiceUnavailable, Unauthorized
from iotnotify_handlers.http import reject_unknown_fields

__all__ = ["MAX_RECIPIENTS", "ApiKeyVerifier", "NotifyRequest", "send"]

MAX_RECIPIENTS: Final = 1000
_ALLOWED_FIELDS: Final = frozenset(
    {"user", "users", "broadcast", "game", "title", "body", "type", "data", "ephemeral"}
)


@dataclass(frozen=True, slots=True)
class NotifyRequest:
    title: str
    body: str = ""
    type: str = "notification"
    data: Mapping[str, Any] = field(default_factory=dict)
    users: tuple[str, ...] = ()
    broadcast: bool = False
    game: str | None = None
    ephemeral: bool = False

    @classmethod
    def parse(cls, raw: Any) -> NotifyRequest:
        if not isinstance(raw, dict):
            raise BadRequest("body must be a JSON object")
        reject_unknown_fields(raw, _ALLOWED_FIELDS)
        title = raw.get("title")
        try:
            title = validate_title(title)  # the one rule, shared with the CLI and publisher
        except ContractError as exc:
            raise BadRequest(str(exc)) from exc
        body = raw.get("body", "")
        kind = raw.get("type", "notification")
        data = raw.get("data", {})
        if not isinstance(body, str):
            raise BadRequest("body must be a string")
        if not isinstance(kind, str) or not kind:
            raise BadRequest("type must be a non-empty string")
        if not isinstance(data, dict):
            raise BadRequest("data must be a JSON object")
        ephemeral = raw.get("ephemeral", False)
        broadcast = raw.get("broadcast", False)
        if not isinstance(ephemeral, bool) or not isinstance(broadcast, bool):
            raise BadRequest("ephemeral and broadcast must be booleans")
        users = cls._users(raw)
        game = raw.get("game")
        if game is not None:
            validate_name(game, what="game id")
        targets = sum((bool(users), broadcast, game is not None))
        if targets != 1:
            raise BadRequest("name exactly one target: user, users, game or broadcast")
        return cls(
            title=title,
            body=body,
            type=kind,
            data=data,
            users=users,
            broadcast=broadcast,
            game=game,
            ephemeral=ephemeral,
        )

    @staticmethod
    def _users(raw: Mapping[str, Any]) -> tuple[str, ...]:
        if "user" in raw and "users" in raw:
            raise BadRequest("give either user or users, not both")
        if "user" in raw:
            listed: Any = [raw["user"]]
        else:
            listed = raw.get("users", [])
        if not isinstance(listed, list):
            raise BadRequest("users must be a list of user ids")
        if len(listed) > MAX_RECIPIENTS:
            raise BadRequest(f"at most {MAX_RECIPIENTS} recipients per request")
        # Every id is checked before anything is sent: a bad id fails the
        # whole request rather than half-sending it.
        return tuple(dict.fromkeys(validate_user_id(user) for user in listed))


class ApiKeyVerifier:
    """Compares a presented key with the SSM SecureString, in constant time."""

    def __init__(self, provider: Any, *, parameter: str, max_age_seconds: int) -> None:
        self._provider = provider
        self._parameter = parameter
        self._max_age = max_age_seconds

    def verify(self, presented: str) -> None:
        if not presented:
            raise Unauthorized("missing credentials: sign the request with IAM or send an API key")
        # Keys are URL-safe ASCII; anything else (header bytes decoded with
        # surrogateescape included) cannot match and must not reach encode().
        if not presented.isascii():
            raise Unauthorized("invalid API key")
        expected = self._expected()
        if not hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8")):
            raise Unauthorized("invalid API key")

    def _expected(self) -> str:
        try:
            value = self._provider.get(self._parameter, decrypt=True, max_age=self._max_age)
        except (BotoCoreError, ClientError) as exc:
            raise ServiceUnavailable("the notify API key cannot be read right now") from exc
        except Exception as exc:  # powertools wraps SDK errors in GetParameterError
            raise ServiceUnavailable("the notify API key is not configured") from exc
        if not isinstance(value, str) or not value:
            raise ServiceUnavailable("the notify API key is not configured")
        return value


def send(request: NotifyRequest, publisher: Publisher) -> dict[str, Any]:
    """Send what ``request`` asks for; the response lists one result per user.

    Raises :class:`ServiceUnavailable` (503) when the one publish of a
    broadcast or game message fails; a user's failure is in their result.
    """
    title, body, kind, data = request.title, request.body, request.type, request.data
    # A broadcast or game message is one publish and no inbox item: when
    # iot-data refuses it (an outage, throttling) nothing was sent, so the
    # caller is told to try again (503) as for the API's other AWS failures.
    try:
        if request.broadcast:
            note = publisher.broadcast(title=title, body=body, type=kind, data=data)
            return {"id": note.id, "target": "broadcast"}
        if request.game is not None:
            note = publisher.notify_game(request.game, title=title, body=body, type=kind, data=data)
            return {"id": note.id, "target": f"game:{request.game}"}
    except (PublishError, Throttled) as exc:
        target = "everyone" if request.broadcast else f"game {request.game!r}"
        raise ServiceUnavailable(f"could not publish to {target}, try again") from exc
    results: Sequence[DeliveryResult] = publisher.notify_many(
        request.users, title=title, body=body, type=kind, data=data, ephemeral=request.ephemeral
    )
    return delivery_report(results)
