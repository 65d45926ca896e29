"""The emulator in its own process, as ``iotnotify local`` runs it.

Credentials stay in the parent (moto's store there): every key the child
verifies is looked up in the parent at that moment, so a key removed in the
parent is refused at once. The child serves on its own pid and stops, with
every connection, when asked.
"""

from __future__ import annotations

import os

import pytest

from iotnotify_emulator import EmulatorConfig, InMemoryCredentialStore
from iotnotify_emulator.testing import ALLOW_ALL, ConnectionRefused, RawMqttClient, presign_url
from iotnotify_local.emulator_process import EmulatorProcess


async def test_the_child_serves_keys_the_parent_knows_and_refuses_removed_ones() -> None:
    # Given a credential store in this (the parent) process and the emulator in a child
    store = InMemoryCredentialStore()
    kept = store.issue([ALLOW_ALL])
    removed = store.issue([ALLOW_ALL])
    config = EmulatorConfig(wss_port=None)
    with EmulatorProcess(config, credentials=store) as emulator:
        assert emulator.pid != os.getpid()
        # When a client connects with a key the parent knows
        client = await RawMqttClient.connect(
            presign_url(emulator.ws_url, kept, region=config.region), client_id="al.one"
        )
        # Then it is served by the child
        assert emulator.stats()["connections_current"] == 1
        await client.close()

        # And a key removed in the parent after start is refused right away
        store.remove(removed.access_key_id)
        with pytest.raises(ConnectionRefused) as refused:
            await RawMqttClient.connect(
                presign_url(emulator.ws_url, removed, region=config.region), client_id="al.two"
            )
        assert refused.value.status == 403
        url = emulator.ws_url

    # When it is stopped, the child is gone and nothing listens any more
    assert not _alive(emulator.pid)
    with pytest.raises(OSError):
        await RawMqttClient.connect(presign_url(url, kept, region=config.region), client_id="al.x")


async def test_a_failing_lookup_in_the_parent_refuses_the_connect_and_the_child_lives_on() -> None:
    class Flaky(InMemoryCredentialStore):
        fail = True

        def lookup(self, access_key_id: str):  # type: ignore[no-untyped-def]
            if self.fail:
                raise RuntimeError("moto's dictionary changed size during iteration")
            return super().lookup(access_key_id)

    store = Flaky()
    credential = store.issue([ALLOW_ALL])
    config = EmulatorConfig(wss_port=None)
    with EmulatorProcess(config, credentials=store) as emulator:
        url = presign_url(emulator.ws_url, credential, region=config.region)
        with pytest.raises(ConnectionRefused):
            await RawMqttClient.connect(url, client_id="al.one")
        store.fail = False
        client = await RawMqttClient.connect(url, client_id="al.one")
        await client.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
