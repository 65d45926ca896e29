"""Names of a deployment's resources, shared by ``infra/`` and ``iotnotify local``.

Every name carries the stage so ephemeral stages (``feat-x``) live beside
``dev`` in one account; SSM paths carry the *SSM* stage so an ephemeral stage
can read ``dev``'s shared parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

from iotnotify.contract import validate_name

__all__ = ["ResourceNames"]


@dataclass(frozen=True, slots=True)
class ResourceNames:
    app: str
    stage: str
    ssm_stage: str

    def __post_init__(self) -> None:
        validate_name(self.app, what="app name")
        validate_name(self.stage, what="stage name")
        validate_name(self.ssm_stage, what="SSM stage name")

    def _name(self, what: str) -> str:
        return f"{self.app}-{self.stage}-{what}"

    @property
    def inbox_table(self) -> str:
        return self._name("inbox")

    @property
    def rooms_table(self) -> str:
        return self._name("rooms")

    @property
    def games_table(self) -> str:
        """Games and their players (``gameId``), written by game servers."""
        return self._name("games")

    @property
    def presence_table(self) -> str:
        """Live connections per user (``userId`` + ``sessionId``), fed by the presence rule."""
        return self._name("presence")

    @property
    def presence_function(self) -> str:
        return self._name("presence-events")

    @property
    def presence_dlq(self) -> str:
        """Lifecycle events the presence rule or its function could not apply."""
        return self._name("presence-dlq")

    @property
    def chat_history_table(self) -> str:
        return self._name("chat-history")

    @property
    def chat_dlq(self) -> str:
        """Chat messages the moderation rule or the moderator could not handle."""
        return self._name("chat-dlq")

    @property
    def chat_moderator_function(self) -> str:
        return self._name("chat-moderator")

    @property
    def chat_denylist_parameter(self) -> str:
        """Words the chat moderator masks (a StringList), shared like the API key."""
        return f"/{self.app}/{self.ssm_stage}/chat-denylist"

    @property
    def task_queue(self) -> str:
        return self._name("tasks")

    @property
    def task_dlq(self) -> str:
        return self._name("tasks-dlq")

    @property
    def subscriber_role(self) -> str:
        return self._name("subscriber")

    @property
    def functions_role(self) -> str:
        return self._name("functions")

    @property
    def publisher_user(self) -> str:
        """The local stand-in for a game server's IAM identity."""
        return self._name("publisher")

    @property
    def publisher_policy(self) -> str:
        """The managed policy granting publish within the stage (AWS)."""
        return self._name("publisher")

    @property
    def game_server_policy(self) -> str:
        """The managed policy granting what the Python publisher does besides
        publishing: inbox writes, game registration, presence reads (AWS)."""
        return self._name("game-server")

    @property
    def user_pool(self) -> str:
        return self._name("users")

    @property
    def user_pool_client(self) -> str:
        return self._name("web")

    @property
    def notify_api_key_parameter(self) -> str:
        return f"/{self.app}/{self.ssm_stage}/notify-api-key"
