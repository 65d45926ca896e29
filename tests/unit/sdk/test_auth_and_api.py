"""Sign-in (moto's Cognito, in-process), the API client's error mapping, backoff, ordering."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from iotnotify.api_client import ApiClient, ConnectionToken
from iotnotify.auth import CognitoAuth, CognitoSession, StaticIdToken, Tokens
from iotnotify.backoff import Backoff
from iotnotify.contract import Notification
from iotnotify.errors import AuthError, ConnectionLost, Forbidden, IotNotifyError
from iotnotify.subscriber import _Sequencer, clamp_keepalive, device_suffix
from tests.unit.sdk.fakes import FakeService

PASSWORD = "Correct-horse-1"  # a moto-only demo password


@pytest.fixture
def pool(aws_env: None) -> Iterator[tuple[str, Any]]:
    with mock_aws():
        cognito = boto3.client("cognito-idp", region_name="us-east-1")
        pool_id = cognito.create_user_pool(PoolName="p", UsernameAttributes=["email"])["UserPool"][
            "Id"
        ]
        client_id = cognito.create_user_pool_client(
            UserPoolId=pool_id,
            ClientName="c",
            ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        )["UserPoolClient"]["ClientId"]
        cognito.admin_create_user(
            UserPoolId=pool_id, Username="a@example.com", MessageAction="SUPPRESS"
        )
        cognito.admin_set_user_password(
            UserPoolId=pool_id, Username="a@example.com", Password=PASSWORD, Permanent=True
        )
        yield client_id, cognito


def test_sign_in_and_refresh(pool: tuple[str, Any]) -> None:
    client_id, _ = pool
    auth = CognitoAuth(client_id=client_id, region="us-east-1")
    tokens = auth.sign_in("a@example.com", PASSWORD)
    assert tokens.id_token.count(".") == 2
    assert tokens.fresh()
    again = auth.refresh(tokens.refresh_token)
    assert again.refresh_token == tokens.refresh_token


def test_wrong_password_is_an_auth_error(pool: tuple[str, Any]) -> None:
    client_id, _ = pool
    auth = CognitoAuth(client_id=client_id, region="us-east-1")
    with pytest.raises(AuthError) as error:
        auth.sign_in("a@example.com", "wrong-Password-1")
    assert error.value.__cause__ is not None  # translated at the boundary, cause kept


class FakeAuth:
    """Records calls; hands out tokens that expire at a chosen time."""

    def __init__(self, *, refresh_fails: bool = False, expires_at: float = 1e12) -> None:
        self.calls: list[str] = []
        self.refresh_fails = refresh_fails
        self.expires_at = expires_at

    def sign_in(self, username: str, password: str) -> Tokens:
        self.calls.append("sign_in")
        return Tokens(f"id{len(self.calls)}", "acc", "refresh-new", self.expires_at)

    def refresh(self, refresh_token: str) -> Tokens:
        self.calls.append("refresh")
        if self.refresh_fails:
            raise AuthError("revoked")
        return Tokens(f"id{len(self.calls)}", "acc", refresh_token, self.expires_at)


def test_session_refreshes_lazily_and_only_when_needed() -> None:
    auth = FakeAuth()
    seen: list[Tokens] = []
    session = CognitoSession(auth, refresh_token="r1", on_tokens=seen.append)  # type: ignore[arg-type]
    assert auth.calls == []  # nothing happens until a token is needed
    assert session.id_token() == "id1"
    assert session.id_token() == "id1"  # still fresh: no call
    assert session.id_token(force_refresh=True) == "id2"
    assert auth.calls == ["refresh", "refresh"]
    assert [t.refresh_token for t in seen] == ["r1", "r1"]


def test_session_renews_an_expired_id_token() -> None:
    auth = FakeAuth(expires_at=0)  # every token is already stale
    session = CognitoSession(auth, refresh_token="r1")  # type: ignore[arg-type]
    session.id_token()
    session.id_token()
    assert auth.calls == ["refresh", "refresh"]


def test_revoked_refresh_token_falls_back_to_the_password() -> None:
    auth = FakeAuth(refresh_fails=True)
    session = CognitoSession(  # type: ignore[arg-type]
        auth, username="a@example.com", password="pw", refresh_token="old"
    )
    assert session.id_token() == "id2"
    assert auth.calls == ["refresh", "sign_in"]
    only_token = CognitoSession(FakeAuth(refresh_fails=True), refresh_token="old")  # type: ignore[arg-type]
    with pytest.raises(AuthError):
        only_token.id_token()


def test_session_needs_a_password_or_a_refresh_token() -> None:
    with pytest.raises(AuthError):
        CognitoSession(FakeAuth(), username="a@example.com")  # type: ignore[arg-type]


def test_api_client_maps_http_errors(service: FakeService) -> None:
    assert isinstance(
        ApiClient(api_url=service.api_url, id_tokens=StaticIdToken("good")).token(),
        ConnectionToken,
    )
    with pytest.raises(Forbidden):
        ApiClient(api_url=service.api_url, id_tokens=StaticIdToken("nobody")).token()
    with pytest.raises(AuthError):
        ApiClient(api_url=service.api_url, id_tokens=StaticIdToken("expired")).token()
    service.fail_inbox = 1
    with pytest.raises(ConnectionLost):
        ApiClient(api_url=service.api_url, id_tokens=StaticIdToken("good")).notifications(
            since=None, limit=10
        )


def test_api_client_retries_once_with_a_renewed_id_token(service: FakeService) -> None:
    class Renewing:
        def __init__(self) -> None:
            self.forced = 0

        def id_token(self, *, force_refresh: bool = False) -> str:
            self.forced += force_refresh
            return "good" if force_refresh else "expired"

    source = Renewing()
    ApiClient(api_url=service.api_url, id_tokens=source).token()
    assert source.forced == 1
    assert service.id_tokens_seen == ["expired", "good"]


def test_unreachable_api_is_connection_lost() -> None:
    with FakeService() as svc:
        url = svc.api_url
    with pytest.raises(ConnectionLost):
        ApiClient(api_url=url, id_tokens=StaticIdToken("good"), timeout=2).token()


def test_bad_token_response_is_an_auth_error() -> None:
    with pytest.raises(AuthError):
        ConnectionToken.from_response({"url": "ws://x/mqtt", "topics": "not-a-list"})
    token = ConnectionToken.from_response(
        {"url": "ws://x/mqtt", "clientIdPrefix": "al.", "topics": ["a/b"], "keepalive": 30}
    )
    assert (token.user_id, token.keepalive) == ("al", 30)


def test_errors_share_one_base() -> None:
    for kind in (AuthError, Forbidden, ConnectionLost):
        assert issubclass(kind, IotNotifyError)


def test_backoff_is_exponential_with_full_jitter_and_a_cap() -> None:
    top = Backoff(initial=0.5, cap=8.0, rand=lambda: 1.0)
    assert [top.next_delay() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    top.reset()
    assert top.next_delay() == 0.5
    bottom = Backoff(initial=0.5, cap=8.0, rand=lambda: 0.0)
    assert bottom.next_delay() == 0.0  # full jitter can mean "at once"
    assert Backoff().bound(10_000) == 60.0  # weeks of retries do not overflow
    with pytest.raises(ValueError):
        Backoff(initial=2.0, cap=1.0)


@pytest.mark.parametrize(
    ("asked", "floor", "expected"),
    [
        (None, 30, 600),
        (0, 30, 1200),
        (-5, 30, 1200),
        (1201, 30, 1200),
        (29, 30, 30),
        (1, 30, 30),
        (2, 1, 2),
        (30, 30, 30),
        (1200, 30, 1200),
    ],
)
def test_clamp_keepalive(asked: int | None, floor: int, expected: int) -> None:
    assert clamp_keepalive(asked, floor=floor) == expected


def test_keepalive_floor_cannot_be_raised_or_zeroed() -> None:
    with pytest.raises(ValueError):
        clamp_keepalive(600, floor=0)
    with pytest.raises(ValueError):
        clamp_keepalive(600, floor=31)


def test_device_suffix_is_stable_and_per_tag() -> None:
    assert device_suffix("tray") == device_suffix("tray")
    assert device_suffix("tray") != device_suffix("listen")


def _seq() -> tuple[_Sequencer, list[str]]:
    out: list[str] = []
    return _Sequencer(since=None, emit=lambda n: out.append(n.title)), out


def test_sequencer_buffers_live_messages_during_catch_up() -> None:
    seq, out = _seq()
    a, b, c, d = (Notification.create(title=t) for t in "abcd")
    generation, since = seq.begin()
    assert since is None
    seq.live(c, own=True)
    seq.live(d, own=True)
    assert out == []  # held back until the inbox is read
    seq.page(generation, [a, b, c], last=True)
    assert out == ["a", "b", "c", "d"]
    seq.live(d, own=True)  # a late duplicate
    assert out == ["a", "b", "c", "d"]
    assert seq.last_user_id == d.id


def test_sequencer_interleaves_pages_and_buffer_in_id_order() -> None:
    seq, out = _seq()
    notes = [Notification.create(title=str(i)) for i in range(6)]
    generation, _ = seq.begin()
    seq.live(notes[2], own=True)  # live, but older than page 1's newest
    seq.live(notes[5], own=True)
    seq.page(generation, [notes[0], notes[1], notes[3]], last=False)
    assert out == ["0", "1", "2", "3"]
    seq.page(generation, [notes[4]], last=True)
    assert out == ["0", "1", "2", "3", "4", "5"]


def test_sequencer_ignores_a_stale_catch_up_and_keeps_broadcast_apart() -> None:
    seq, out = _seq()
    old_generation, _ = seq.begin()
    new_generation, _ = seq.begin()  # a reconnect happened meanwhile
    note = Notification.create(title="x")
    assert not seq.page(old_generation, [note], last=True)
    everyone = Notification.create(title="all")
    seq.live(everyone, own=False)  # broadcast is never held back
    assert out == ["all"]
    assert seq.page(new_generation, [note], last=True)
    assert out == ["all", "x"]
    assert (seq.last_user_id, seq.last_broadcast_id) == (note.id, everyone.id)
