"""A local AWS IoT Core data plane: MQTT over WebSocket with SigV4 and IAM, plus iot-data publish.

Start it with :func:`start_emulator` (asyncio) or :class:`EmulatorThread`
(sync code), give it a :class:`CredentialStore`, and point clients at
``emu.ws_url`` / ``emu.wss_url`` and boto3 ``iot-data`` at ``emu.data_url``.
"""

from __future__ import annotations

from iotnotify_emulator.credentials import Credential, CredentialStore, InMemoryCredentialStore
from iotnotify_emulator.iam import Decision, Policy, PolicyError, evaluate
from iotnotify_emulator.server import (
    Emulator,
    EmulatorConfig,
    EmulatorThread,
    create_emulator,
    start_emulator,
)

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
