"""An emulator in a background thread for the (synchronous or subprocess) real clients."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from iotnotify_emulator import EmulatorConfig, EmulatorThread, InMemoryCredentialStore
from iotnotify_emulator.testing import Harness


@pytest.fixture
def harness() -> Iterator[Harness]:
    store = InMemoryCredentialStore()
    with EmulatorThread(EmulatorConfig(), credentials=store) as emulator:
        yield Harness(emulator=emulator, store=store)
