"""A player's token for a game carries the game channel over real MQTT (issue 14 §1).

Against ``iotnotify local``: the game server registers the game, a player
asks ``GET /token?games=g``, connects to the emulator with the presigned URL
and subscribes to the game topic; ``notify_game`` reaches them. The same
player's plain token (no ``games=``) is refused the subscription, as on AWS.
"""

from __future__ import annotations

import json
import secrets
import urllib.request
from typing import Any

import pytest

from iotnotify.contract import Notification
from iotnotify.publisher import Publisher
from iotnotify_emulator.testing import RawMqttClient
from tests.integration.sdk.conftest import RunningStack


def token(stack: RunningStack, name: str, query: str = "") -> dict[str, Any]:
    request = urllib.request.Request(
        f"{stack.state.apiUrl}/token{query}",
        headers={"Authorization": stack.session(name).id_token()},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        result: dict[str, Any] = json.load(answer)
        return result


async def test_a_player_receives_game_updates_on_the_game_channel(
    local_stack: RunningStack,
) -> None:
    game_id = f"g-{secrets.token_hex(4)}"
    bob_id = local_stack.user("bob")["sub"]
    with Publisher.from_state_file(local_stack.state_file) as publisher:
        publisher.register_game(game_id, [local_stack.user("alice")["sub"], bob_id])
        granted = token(local_stack, "bob", f"?games={game_id}")
        topic = granted["games"][game_id]["topic"]
        bob = await RawMqttClient.connect(
            granted["url"], client_id=f"{granted['clientIdPrefix']}game-test"
        )
        try:
            await bob.subscribe(topic)
            sent = publisher.notify_game(game_id, title="alice moved", type="game.update")
            delivered = await bob.next_publish(within=10)
            assert delivered.topic == topic
            assert Notification.from_json(delivered.payload).id == sent.id
        finally:
            await bob.close()

        # Without ?games= the same player's session may not subscribe there.
        plain = token(local_stack, "bob")
        assert plain["games"] == {}
        outsider = await RawMqttClient.connect(
            plain["url"], client_id=f"{plain['clientIdPrefix']}game-test-2"
        )
        try:
            # MQTT 3.1.1 on AWS IoT: an unauthorised SUBSCRIBE closes the connection.
            with pytest.raises(EOFError):
                await outsider.subscribe(topic)
        finally:
            await outsider.close()
