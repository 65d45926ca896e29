"""Presence (issue 14 §4): lifecycle events -> presence table -> GET /presence.

AWS: "Lifecycle messages might be sent out of order. You might receive
duplicate messages." (developer guide, "Lifecycle events"). The table must
end in the same state whatever order, and however often, the events of a
set of sessions arrive.
"""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotnotify.presence import (
    CATCH_UP_GRACE_SECONDS,
    MAX_CONNECTION_SECONDS,
    PresenceEvent,
    PresenceTable,
)
from iotnotify_handlers import (
    api_chats,
    api_games,
    api_presence,
    api_token,
    clients,
    presence_events,
)
from tests.conftest import APP, STAGE, FakeAccount, FakeUserPool, rest_event

NOW_MS = 1_800_000_000_000
_users = itertools.count()


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


def table(account: FakeAccount, clock: Clock | None = None) -> PresenceTable:
    resource = account.session.resource("dynamodb").Table(f"{APP}-{STAGE}-presence")
    return PresenceTable(resource, clock=clock or Clock(NOW_MS))


def event(user: str, session: str, kind: str, ts: int, device: str = "d") -> dict[str, Any]:
    """A lifecycle event as the presence rule's SQL selects it."""
    return {
        "clientId": f"{user}.{device}",
        "timestamp": ts,
        "eventType": kind,
        "sessionIdentifier": session,
    }


# A session: connected at `start`, disconnected `length` ms later, or still open (None).
sessions_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=10_000),
        st.one_of(st.none(), st.integers(min_value=0, max_value=5_000)),
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(sessions=sessions_strategy, seed=st.integers(), dupes=st.integers(0, 6))
def test_shuffled_and_duplicated_events_give_the_true_state(
    account: FakeAccount, sessions: list[tuple[int, int | None]], seed: int, dupes: int
) -> None:
    user = f"u{next(_users)}"
    presence = table(account)
    events = []
    for n, (start, length) in enumerate(sessions):
        events.append(event(user, f"s{n}", "connected", NOW_MS - 60_000 + start))
        if length is not None:  # a disconnect may share its connect's millisecond
            events.append(event(user, f"s{n}", "disconnected", NOW_MS - 60_000 + start + length))
    rng = random.Random(seed)
    delivered = events + [rng.choice(events) for _ in range(dupes)]
    rng.shuffle(delivered)
    for raw in delivered:
        parsed = PresenceEvent.parse(raw)
        assert parsed is not None
        presence.apply(parsed)
    state = presence.of(user)
    open_sessions = sum(1 for _, length in sessions if length is None)
    assert state.connections == open_sessions
    assert state.online is (open_sessions > 0)
    if open_sessions:
        assert state.last_seen == NOW_MS
    else:
        assert state.last_seen == max(e["timestamp"] for e in events)


def test_the_handler_applies_refuses_stale_and_ignores_foreign_client_ids(
    account: FakeAccount,
) -> None:
    connected = event("alice", "s1", "connected", NOW_MS - 10)
    disconnected = event("alice", "s1", "disconnected", NOW_MS - 5)
    assert presence_events.handler(disconnected) == {"status": "applied"}
    assert presence_events.handler(connected) == {"status": "stale"}  # arrived late
    assert presence_events.handler(disconnected) == {"status": "stale"}  # twice
    assert presence_events.handler({**connected, "clientId": "no-dot"}) == {"status": "ignored"}
    assert presence_events.handler({**connected, "eventType": "subscribed"}) == {
        "status": "ignored"
    }
    assert not table(account).of("alice").online


def test_a_lost_disconnect_stops_counting_after_the_longest_connection(
    account: FakeAccount,
) -> None:
    clock = Clock(NOW_MS)
    presence = table(account, clock)
    parsed = PresenceEvent.parse(event("bob", "s1", "connected", NOW_MS))
    assert parsed is not None
    presence.apply(parsed)
    assert presence.of("bob").connections == 1
    clock.ms += MAX_CONNECTION_SECONDS * 1000 + 1  # AWS closed it; the event was lost
    assert presence.of("bob").connections == 0


def test_a_recent_catch_up_makes_a_user_reachable_for_the_grace_period(
    account: FakeAccount,
) -> None:
    clock = Clock(NOW_MS)
    presence = table(account, clock)
    assert not presence.reachable("carol")
    presence.note_catch_up("carol")
    assert presence.reachable("carol")
    assert not presence.of("carol").online  # a hint is not a connection
    clock.ms += CATCH_UP_GRACE_SECONDS * 1000 + 1
    assert not presence.reachable("carol")


def presence_of(caller: str, users: str) -> tuple[int, Any]:
    response = api_presence.handler(
        rest_event(path="/presence", claims={"sub": caller}, query={"users": users}), None
    )
    return response["statusCode"], json.loads(response["body"])


def create_room(owner: str, room: str) -> None:
    create = rest_event(
        method="POST", path="/chats", claims={"sub": owner}, body={"room": room, "private": True}
    )
    create["resource"] = "/chats"
    assert api_chats.handler(create, None)["statusCode"] == 201


def add_member(owner: str, room: str, user: str, pool: FakeUserPool) -> None:
    add = rest_event(
        method="POST",
        path=f"/chats/{room}/members",
        claims={"sub": owner, "iss": pool.issuer},
        body={"user": user},
    )
    add["resource"] = "/chats/{room}/members"
    add["pathParameters"] = {"room": room}
    assert api_chats.handler(add, None)["statusCode"] == 200


def token_for(user: str, rooms: str) -> int:
    response = api_token.handler(
        rest_event(path="/token", claims={"sub": user}, query={"rooms": rooms}), None
    )
    return int(response["statusCode"])


def test_adding_someone_to_your_room_does_not_reveal_their_presence(
    account: FakeAccount, user_pool: FakeUserPool
) -> None:
    presence = clients.presence()
    assert presence is not None
    parsed = PresenceEvent.parse(event("bob", "s1", "connected", NOW_MS))
    assert parsed is not None
    presence.apply(parsed)
    create_room("alice", "spy")
    add_member("alice", "spy", "bob", user_pool)  # bob is never asked
    assert presence_of("alice", "bob") == (200, {"presence": {}})
    # Once bob takes part (asks a token for the room) he shares it with alice.
    assert token_for("bob", "spy") == 200
    status, body = presence_of("alice", "bob")
    assert status == 200
    assert body["presence"]["bob"]["online"] is True
    # bob sees the owner, who took part by creating the room.
    assert set(presence_of("bob", "alice")[1]["presence"]) == {"alice"}
    # A token for a public room bob is no member of joins him to nothing.
    create = rest_event(
        method="POST", path="/chats", claims={"sub": "carol"}, body={"room": "open"}
    )
    create["resource"] = "/chats"
    assert api_chats.handler(create, None)["statusCode"] == 201
    assert token_for("bob", "open") == 200
    assert presence_of("carol", "bob") == (200, {"presence": {}})


def test_presence_answers_only_for_users_sharing_a_channel(
    account: FakeAccount, user_pool: FakeUserPool
) -> None:
    presence = clients.presence()
    assert presence is not None
    for user in ("bob", "carol", "dave"):
        parsed = PresenceEvent.parse(event(user, "s1", "connected", NOW_MS))
        assert parsed is not None
        presence.apply(parsed)
    # alice and bob share a private room; alice and carol a game; dave nothing.
    create = rest_event(
        method="POST", path="/chats", claims={"sub": "alice"}, body={"room": "r", "private": True}
    )
    create["resource"] = "/chats"
    assert api_chats.handler(create, None)["statusCode"] == 201
    add = rest_event(
        method="POST",
        path="/chats/r/members",
        claims={"sub": "alice", "iss": user_pool.issuer},
        body={"user": "bob"},
    )
    add["resource"] = "/chats/{room}/members"
    add["pathParameters"] = {"room": "r"}
    assert api_chats.handler(add, None)["statusCode"] == 200
    # bob takes part himself: a token for the room marks him as joined.
    assert token_for("bob", "r") == 200
    register = rest_event(
        method="POST",
        path="/games",
        body={"gameId": "g", "players": ["alice", "carol"]},
        iam_user_arn="arn:aws:iam::123456789012:user/game-server",
    )
    register["resource"] = "/games"
    assert api_games.handler(register, None)["statusCode"] == 201

    status, body = presence_of("alice", "alice,bob,carol,dave")
    assert status == 200
    assert set(body["presence"]) == {"alice", "bob", "carol"}  # never dave
    assert body["presence"]["bob"]["online"] is True
    assert body["presence"]["bob"]["connections"] == 1
    assert body["presence"]["alice"] == {"online": False, "connections": 0, "lastSeen": None}
    status, body = presence_of("dave", "alice,bob")
    assert (status, body) == (200, {"presence": {}})
    status, body = presence_of("bob", "carol")  # bob and carol share nothing
    assert body == {"presence": {}}


@pytest.mark.parametrize("users", ["", "a/b", ",".join(f"u{n}" for n in range(101))])
def test_presence_refuses_bad_user_lists(account: FakeAccount, users: str) -> None:
    assert presence_of("alice", users)[0] == 400
