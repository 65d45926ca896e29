"""Move -> "your turn": the example game's latency against ``iotnotify local``.

alice and bob each run the SDK's :class:`~iotnotify.subscriber.Subscriber`
(as ``iotnotify listen`` and the tray do). The example game
(``examples/turns``) serves its HTTP API in this process; each move is an
HTTP ``POST /api/games/{id}/moves`` by the player whose turn it is, and the
clock stops when the *other* player's listener receives "Your turn in <game>"
for that move (game server -> inbox write -> iot-data publish -> emulator ->
WebSocket -> listener). Games are played with +1 moves (21 per game) until
``--moves`` moves are measured. Prints p50, p90, p99 and max in milliseconds.

    .venv/bin/python bench/turn_latency.py [--moves 200] [--state-file F]

Without ``--state-file`` it starts its own ``iotnotify local --port 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import socket
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from benchlib import local_stack

from iotnotify.api_client import ApiClient
from iotnotify.auth import CognitoAuth, CognitoSession
from iotnotify.contract import Notification, new_notification_id
from iotnotify.sending import publisher_for_local
from iotnotify.state_file import LocalState
from iotnotify.subscriber import ConnectionState, StateChange, Subscriber

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # examples/ is not installed

from examples.turns.turns import Lobby, build_app  # noqa: E402


@contextmanager
def _game_server(state_file: Path) -> Iterator[str]:
    """The example game's HTTP API on a free port, served from a thread."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    publisher, resolve = publisher_for_local(state_file)
    runner = web.AppRunner(build_app(Lobby(publisher, resolve, url)), access_log=None)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    try:
        yield url
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        publisher.close()


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        result: dict[str, Any] = json.load(answer)
        return result


class Listener:
    """One player's Subscriber; "your turn" notifications land in ``turns``."""

    def __init__(self, state: LocalState, name: str) -> None:
        user = state.user(name)
        auth = CognitoAuth(
            client_id=state.userPoolClientId,
            region=state.region,
            endpoint_url=state.awsEndpointUrl,
        )
        session = CognitoSession(
            auth, username=str(user["username"]), password=str(user["password"])
        )
        self.turns: queue.Queue[tuple[float, Notification]] = queue.Queue()
        self._caught_up = threading.Event()
        self.subscriber = Subscriber(
            tokens=ApiClient(api_url=state.apiUrl, id_tokens=session),
            on_message=self._on_message,
            on_state=self._on_state,
            since=new_notification_id(),
            device_id=f"bench-{name}",
        ).start()
        if not self._caught_up.wait(60):
            raise SystemExit(f"{name}'s listener did not connect")

    def _on_message(self, note: Notification) -> None:
        if note.type == "game.turn":
            self.turns.put((time.perf_counter(), note))

    def _on_state(self, change: StateChange) -> None:
        if change.state is ConnectionState.CAUGHT_UP:
            self._caught_up.set()

    def wait_turn(self, game_id: str, body_part: str) -> float:
        """When the "your turn" of ``game_id`` whose body names the move arrived."""
        while True:
            arrived, note = self.turns.get(timeout=30)
            if note.data.get("game") == game_id and body_part in note.body:
                return arrived


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=200)
    parser.add_argument("--state-file", type=Path, default=None)
    args = parser.parse_args()
    with (
        local_stack(args.state_file, prefix="turn-bench-") as state_file,
        _game_server(state_file) as url,
    ):
        state = LocalState.read(state_file)
        players = {"alice": Listener(state, "alice"), "bob": Listener(state, "bob")}
        latencies: list[float] = []
        try:
            while len(latencies) < args.moves:
                game = _post(f"{url}/api/games", {"players": ["alice", "bob"]})
                seats = {n: u.split("seat=", 1)[1] for n, u in game["seats"].items()}
                players["alice"].wait_turn(game["gameId"], "The game starts")
                mover, other, total = "alice", "bob", 0
                while total < 20 and len(latencies) < args.moves:
                    start = time.perf_counter()
                    view = _post(
                        f"{url}/api/games/{game['gameId']}/moves",
                        {"seat": seats[mover], "add": 1},
                    )
                    total = int(view["total"])
                    arrived = players[other].wait_turn(game["gameId"], f"the total is {total}.")
                    latencies.append((arrived - start) * 1000)
                    mover, other = other, mover
        finally:
            for listener in players.values():
                listener.subscriber.stop()
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    print(
        f"move -> next player's 'your turn', {len(ordered)} moves: "
        f"p50 {statistics.median(ordered):.1f} ms, p90 {pct(90):.1f} ms, "
        f"p99 {pct(99):.1f} ms, max {ordered[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
