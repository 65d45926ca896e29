"""The tray's settings: where to sign in, and the last notification seen.

Kept as JSON in the platform's config directory (``click.get_app_dir``). The
refresh token is deliberately not here: it lives in the OS keyring
(:mod:`iotnotify.tray.keyring_store`), never in a plain file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import click

__all__ = ["TraySettings", "default_settings_path"]


def default_settings_path() -> Path:
    """``tray.json`` in ``$XDG_CONFIG_HOME/iotnotify`` (``~/.config/iotnotify``) on
    Linux, ``~/Library/Application Support/iotnotify`` on macOS and
    ``%LOCALAPPDATA%\\iotnotify`` on Windows.

    click (already loaded by the CLI) answers this with ``get_app_dir``; the
    platformdirs package gave the same folders but kept about 0.3 MiB of its
    own modules resident in the always-on tray (issue 11 §2).
    """
    return Path(click.get_app_dir("iotnotify", roaming=False)) / "tray.json"


@dataclass(frozen=True, slots=True)
class TraySettings:
    api_url: str = ""
    user_pool_client_id: str = ""
    region: str = "us-east-1"
    cognito_endpoint: str = ""  # empty: the real Cognito endpoint of ``region``
    username: str = ""
    ca_file: str = ""
    last_id: str = ""  # catch-up resumes from here after a restart of the app
    # Space-separated ids the tray showed within the catch-up look-back before
    # last_id (last_id included): after a restart the catch-up re-reads that
    # window, for ids older than last_id that reached the inbox later (a
    # fan-out's id), and skips these. Empty: last_id is a hard limit.
    shown_ids: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.api_url and self.user_pool_client_id and self.username)

    def with_changes(self, **changes: Any) -> TraySettings:
        return replace(self, **changes)

    @classmethod
    def load(cls, path: Path | None = None) -> TraySettings:
        path = path or default_settings_path()
        from iotnotify.state_file import StateFileError, read_regular_file

        try:
            # Never blocks: a FIFO or device at the path is refused unread.
            raw = json.loads(read_regular_file(path, what="settings file"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, RecursionError, StateFileError):
            # Not JSON, not UTF-8, nested past the parser's recursion limit or
            # no regular file: a broken file means "not configured", not a
            # crash (or a hang) at login.
            return cls()
        if not isinstance(raw, dict):
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{k: str(v) for k, v in raw.items() if k in known and v is not None})

    def save(self, path: Path | None = None) -> Path:
        path = path or default_settings_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(self), handle, indent=2)
        tmp.replace(path)
        return path
