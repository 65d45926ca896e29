"""Fixtures: an emulator on free loopback ports with an in-memory credential store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from iotnotify_emulator import EmulatorConfig, InMemoryCredentialStore, start_emulator
from iotnotify_emulator.testing import Harness


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(region="us-east-1", account_id="123456789012")


@pytest.fixture
async def world(emulator_config: EmulatorConfig) -> AsyncIterator[Harness]:
    store = InMemoryCredentialStore()
    async with start_emulator(emulator_config, credentials=store) as emulator:
        harness = Harness(emulator=emulator, store=store)
        yield harness
        await harness.aclose()
