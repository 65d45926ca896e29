"""Chat latency through the moderated path against ``iotnotify local``.

alice's ``RoomConnection.send`` (publish to ``chat/{room}/input``) -> the
emulator's topic rule -> the moderator Lambda (in-process: moto DynamoDB for
rate counter and history, SSM denylist, iot-data publish) -> the room topic ->
bob's connection. Messages are paced at one per ``--interval`` seconds
(default 1.05: the per-sender rate limit is 5 per 5 s). Prints p50, p90, p99
and max in milliseconds. Issue 13's target is delivery within 2 s.

    .venv/bin/python bench/chat_latency.py [--count 30] [--interval 1.05] [--state-file F]
"""

from __future__ import annotations

import argparse
import queue
import secrets
import statistics
import time
from pathlib import Path

from benchlib import local_stack

from iotnotify.auth import CognitoAuth, CognitoSession
from iotnotify.chat import RoomConnection, RoomsApi
from iotnotify.contract import ChatMessage
from iotnotify.state_file import LocalState


def _api(state: LocalState, name: str) -> RoomsApi:
    user = state.user(name)
    auth = CognitoAuth(
        client_id=state.userPoolClientId, region=state.region, endpoint_url=state.awsEndpointUrl
    )
    session = CognitoSession(auth, username=str(user["username"]), password=str(user["password"]))
    return RoomsApi(api_url=state.apiUrl, id_tokens=session)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--interval", type=float, default=1.05)
    parser.add_argument("--state-file", type=Path, default=None)
    args = parser.parse_args()
    with local_stack(args.state_file, prefix="chat-bench-") as path:
        state = LocalState.read(path)
        alice, bob = _api(state, "alice"), _api(state, "bob")
        room = f"bench-{secrets.token_hex(3)}"
        alice.create(room)
        arrived: queue.Queue[tuple[ChatMessage, float]] = queue.Queue()
        latencies: list[float] = []
        with (
            RoomConnection(
                bob.token(room), on_message=lambda m: arrived.put((m, time.perf_counter()))
            ),
            RoomConnection(alice.token(room), on_message=lambda m: None) as a,
        ):
            for n in range(args.count):
                text = f"bench {n} {secrets.token_hex(4)}"
                sent = time.perf_counter()
                a.send(text)
                while True:
                    message, at = arrived.get(timeout=30)
                    if message.text == text:
                        latencies.append((at - sent) * 1000)
                        break
                time.sleep(max(0.0, args.interval - (time.perf_counter() - sent)))
    latencies.sort()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    print(f"chat send -> other member's receive, {len(latencies)} messages (ms):")
    print(f"  p50 {q[49]:.1f}  p90 {q[89]:.1f}  p99 {q[98]:.1f}  max {latencies[-1]:.1f}")


if __name__ == "__main__":
    main()
