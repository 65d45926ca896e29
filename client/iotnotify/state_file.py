"""The state file ``iotnotify local`` writes: where everything runs.

Other commands (``send``, ``listen``, tests) read it instead of guessing
ports. It holds the demo users' passwords and the local publisher's key,
which are meaningful only to this machine's moto; it is still written
owner-readable only.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = ["DEFAULT_STATE_FILE", "LocalState", "StateFileError"]

DEFAULT_STATE_FILE: Final = Path(".iotnotify") / "local.json"


class StateFileError(Exception):
    """The state file is missing or unreadable: is ``iotnotify local`` running?"""


@dataclass(frozen=True, slots=True)
class LocalState:
    region: str
    app: str
    stage: str
    apiUrl: str  # noqa: N815 - the file's field names are the contract
    webUrl: str  # noqa: N815
    iotWsUrl: str  # noqa: N815
    iotWssUrl: str  # noqa: N815
    iotDataUrl: str  # noqa: N815
    caFile: str  # noqa: N815
    awsEndpointUrl: str  # noqa: N815
    userPoolId: str  # noqa: N815
    userPoolClientId: str  # noqa: N815
    users: list[dict[str, Any]]
    publisher: dict[str, str]
    pid: int = field(default_factory=os.getpid)
    extra: dict[str, Any] = field(default_factory=dict)

    def user(self, name: str) -> dict[str, Any]:
        """A demo user by short name, sign-in name or sub."""
        for user in self.users:
            if name in (user.get("name"), user.get("username"), user.get("sub")):
                return user
        known = ", ".join(str(u.get("name")) for u in self.users)
        raise StateFileError(f"no demo user {name!r} in the state file (known: {known})")

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(self), handle, indent=2)
            handle.write("\n")
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> LocalState:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise StateFileError(
                f"no state file at {path}: start the local stack with `iotnotify local` first"
            ) from exc
        except (OSError, json.JSONDecodeError) as exc:
            raise StateFileError(f"cannot read state file {path}: {exc}") from exc
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in raw.items() if k in known})
        except TypeError as exc:
            raise StateFileError(f"state file {path} is incomplete: {exc}") from exc
