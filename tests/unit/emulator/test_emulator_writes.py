"""How the broker writes to a connection: once per loop iteration, in order.

Frames routed to one connection during a loop iteration leave in one write
at the end of it (``Broker.write_soon``); a socket that does not take them
at once gets them through the awaited ``send`` path, still in order.
"""

from __future__ import annotations

import asyncio

from iotnotify_emulator.broker import Broker, BrokerSettings, MqttSession
from iotnotify_emulator.credentials import InMemoryCredentialStore
from iotnotify_emulator.mqtt import Connect, Publish, StreamDecoder, Subscribe
from iotnotify_emulator.testing import ALLOW_ALL


class _Socket:
    """Records what is written at once and what goes through ``send``."""

    def __init__(self, *, takes_writes: bool = True) -> None:
        self.takes_writes = takes_writes
        self.writes: list[bytes] = []
        self.sent: list[bytes] = []

    def write_now(self, data: bytes) -> bool:
        if not self.takes_writes:
            return False
        self.writes.append(data)
        return True

    async def send(self, data: bytes) -> None:
        self.sent.append(data)

    async def close(self) -> None:
        return None

    def publishes(self, chunks: list[bytes]) -> list[bytes]:
        decoder = StreamDecoder()
        packets = [p for chunk in chunks for p in decoder.packets(chunk)]
        return [p.payload for p in packets if isinstance(p, Publish)]


async def _subscriber(broker: Broker, socket: _Socket) -> MqttSession:
    credential = InMemoryCredentialStore().issue([ALLOW_ALL])
    session = broker.open(socket, credential, "127.0.0.1")
    await session.handle(Connect(client_id="sub"))
    await session.handle(Subscribe(packet_id=1, topics=(("t/a", 0),)))
    await asyncio.sleep(0)  # the CONNACK and SUBACK are flushed
    socket.writes.clear()
    socket.sent.clear()
    return session


async def test_frames_of_one_loop_iteration_leave_in_one_write_in_order() -> None:
    # Given a subscriber whose socket takes writes at once
    broker = Broker(BrokerSettings())
    socket = _Socket()
    session = await _subscriber(broker, socket)
    # When three messages reach it within one loop iteration
    for payload in (b"one", b"two", b"three"):
        broker.route("t/a", payload, 0, False)
    assert socket.writes == []  # nothing is written mid-iteration
    await asyncio.sleep(0)
    # Then they leave in one write, in order, and nothing is left queued
    assert len(socket.writes) == 1
    assert socket.publishes(socket.writes) == [b"one", b"two", b"three"]
    assert session.queued_bytes == 0
    # And a message of a later iteration gets a write of its own
    broker.route("t/a", b"four", 0, False)
    await asyncio.sleep(0)
    assert socket.publishes(socket.writes[1:]) == [b"four"]
    await session.close(None)


async def test_a_socket_that_does_not_take_writes_gets_them_through_send_in_order() -> None:
    # Given a subscriber whose socket's buffer is full
    broker = Broker(BrokerSettings())
    socket = _Socket()
    session = await _subscriber(broker, socket)
    socket.takes_writes = False
    # When messages reach it over two loop iterations
    broker.route("t/a", b"one", 0, False)
    await asyncio.sleep(0)
    broker.route("t/a", b"two", 0, False)
    for _ in range(5):
        await asyncio.sleep(0)
    # Then they went through the awaited path, in order, and none was dropped
    assert socket.writes == []
    assert socket.publishes(socket.sent) == [b"one", b"two"]
    assert session.queued_bytes == 0
    await session.close(None)
