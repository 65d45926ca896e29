"""Broker behaviour that needs a controlled transport: stalled closes and log floods."""

from __future__ import annotations

import asyncio
import logging

import pytest

from iotnotify_emulator import broker as broker_module
from iotnotify_emulator.broker import Broker, BrokerSettings
from iotnotify_emulator.credentials import InMemoryCredentialStore
from iotnotify_emulator.mqtt import Connect
from iotnotify_emulator.testing import ALLOW_ALL


class _Transport:
    """Records frames; ``close()`` blocks until ``release`` is set when ``stall`` is."""

    def __init__(self, *, stall: bool = False) -> None:
        self.frames: list[bytes] = []
        self.stall = stall
        self.closing = asyncio.Event()
        self.release = asyncio.Event()

    def write_now(self, data: bytes) -> bool:
        return False  # always the awaited path

    async def send(self, data: bytes) -> None:
        self.frames.append(data)

    async def close(self) -> None:
        self.closing.set()
        if self.stall:
            await self.release.wait()


async def test_two_takeovers_racing_a_stalled_close_leave_one_live_connection() -> None:
    broker = Broker(BrokerSettings())
    credential = InMemoryCredentialStore().issue([ALLOW_ALL])
    # Given a connection whose socket takes its time to close
    stalled = _Transport(stall=True)
    first = broker.open(stalled, credential, "127.0.0.1")
    await first.handle(Connect(client_id="same"))
    # When a second CONNECT with its client id is held up closing the first
    second = broker.open(_Transport(), credential, "127.0.0.1")
    takeover = asyncio.ensure_future(second.handle(Connect(client_id="same")))
    await asyncio.wait_for(stalled.closing.wait(), timeout=5)
    # and a third one arrives meanwhile
    third = broker.open(_Transport(), credential, "127.0.0.1")
    await third.handle(Connect(client_id="same"))
    stalled.release.set()
    await asyncio.wait_for(takeover, timeout=5)
    # Then exactly one connection is live with that client id: the newest
    live = [s for s in (first, second, third) if not s.closed]
    assert live == [third]
    assert broker.sessions == {"same": third}
    assert broker.stats.connections_current == 1
    await third.close(None)


async def test_refusal_logging_is_rate_limited_but_every_refusal_is_counted(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(broker_module.time, "monotonic", lambda: now[0])
    broker = Broker(BrokerSettings(refusal_log_rate=10))
    caplog.set_level(logging.INFO, logger="iotnotify_emulator")
    # When a client provokes 1,000 refusals within one instant
    for index in range(1000):
        broker.refuse("denied", action="iot:Subscribe", filter=f"f/{index}")
    # Then all are counted, the last ones kept, but only a second's worth logged
    assert broker.stats.denials == 1000
    assert len(broker.refusals) == 100
    logged = [r for r in caplog.records if r.getMessage().startswith("refusal ")]
    assert len(logged) == 10
    # And once the bucket refills, the next line says how many were left out
    now[0] += 1.0
    broker.refuse("denied again", action="iot:Subscribe")
    last = [r for r in caplog.records if r.getMessage().startswith("refusal ")][-1]
    assert '"suppressed_before": 990' in last.getMessage()
