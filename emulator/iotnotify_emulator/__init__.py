"""A local AWS IoT Core data plane: MQTT over WebSocket with SigV4 and IAM, plus iot-data publish.

Start it with :func:`start_emulator` (asyncio) or :class:`EmulatorThread`
(sync code), give it a :class:`CredentialStore`, and point clients at
``emu.ws_url`` / ``emu.wss_url`` and boto3 ``iot-data`` at ``emu.data_url``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from iotnotify_emulator.credentials import Credential, CredentialStore, InMemoryCredentialStore
    from iotnotify_emulator.iam import Decision, Policy, PolicyError, evaluate
    from iotnotify_emulator.server import (
        Emulator,
        EmulatorConfig,
        EmulatorThread,
        create_emulator,
        start_emulator,
    )

# Imported on first use (PEP 562), so that importing a light submodule
# (the MQTT codec, the IAM matcher) or running ``python -m
# iotnotify_emulator`` does not first need aiohttp: on the core install,
# which ships this package without the [local] extra, ``__main__`` can then
# name the extra instead of failing here with a traceback.
_HOMES = {
    "Credential": "iotnotify_emulator.credentials",
    "CredentialStore": "iotnotify_emulator.credentials",
    "InMemoryCredentialStore": "iotnotify_emulator.credentials",
    "Decision": "iotnotify_emulator.iam",
    "Policy": "iotnotify_emulator.iam",
    "PolicyError": "iotnotify_emulator.iam",
    "evaluate": "iotnotify_emulator.iam",
    "Emulator": "iotnotify_emulator.server",
    "EmulatorConfig": "iotnotify_emulator.server",
    "EmulatorThread": "iotnotify_emulator.server",
    "create_emulator": "iotnotify_emulator.server",
    "start_emulator": "iotnotify_emulator.server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


__all__ = [
    "Credential",
    "CredentialStore",
    "Decision",
    "Emulator",
    "EmulatorConfig",
    "EmulatorThread",
    "InMemoryCredentialStore",
    "Policy",
    "PolicyError",
    "create_emulator",
    "evaluate",
    "start_emulator",
]
