"""Sign-in (moto's Cognito server), the API client's error mapping, backoff, ordering."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import boto3
import pytest
from moto.server import ThreadedMotoServer

from iotnotify.api_client import ApiClient, ConnectionToken
from iotnotify.auth import (
    ChallengeRequired,
    CognitoAuth,
    CognitoSession,
    StaticIdToken,
    Tokens,
)
from iotnotify.backoff import Backoff
from iotnotify.contract import Notification
from iotnotify.errors import AuthError, ConnectionLost, Forbidden, InvalidArgument, IotNotifyError
from iotnotify.subscriber import Subscriber, _Sequencer, clamp_keepalive, device_suffix
from tests.unit.sdk.fakes import FakeService

PASSWORD = "Correct-horse-1"  # a moto-only demo password


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """moto's server on a free port: CognitoAuth speaks HTTP, so in-process mocks cannot see it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def pool(aws_env: None, moto_url: str) -> Iterator[tuple[str, Any]]:
    cognito = boto3.client("cognito-idp", region_name="us-east-1", endpoint_url=moto_url)
    pool_id = cognito.create_user_pool(PoolName="p", UsernameAttributes=["email"])["UserPool"]["Id"]
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
    cognito.delete_user_pool(UserPoolId=pool_id)


def test_sign_in_and_refresh(pool: tuple[str, Any], moto_url: str) -> None:
    client_id, _ = pool
    auth = CognitoAuth(client_id=client_id, region="us-east-1", endpoint_url=moto_url)
    tokens = auth.sign_in("a@example.com", PASSWORD)
    assert tokens.id_token.count(".") == 2
    assert tokens.fresh()
    again = auth.refresh(tokens.refresh_token)
    assert again.refresh_token == tokens.refresh_token


def test_wrong_password_is_an_auth_error(pool: tuple[str, Any], moto_url: str) -> None:
    client_id, _ = pool
    auth = CognitoAuth(client_id=client_id, region="us-east-1", endpoint_url=moto_url)
    with pytest.raises(AuthError) as error:
        auth.sign_in("a@example.com", "wrong-Password-1")
    assert error.value.__cause__ is not None  # translated at the boundary, cause kept


def test_sign_up_confirm_and_sign_in(pool: tuple[str, Any], moto_url: str) -> None:
    client_id, cognito = pool
    auth = CognitoAuth(client_id=client_id, region="us-east-1", endpoint_url=moto_url)
    result = auth.sign_up("new@example.com", PASSWORD)
    assert result.user_sub
    pool_id = cognito.list_user_pools(MaxResults=10)["UserPools"][0]["Id"]
    cognito.admin_confirm_sign_up(UserPoolId=pool_id, Username="new@example.com")
    tokens = auth.sign_in("new@example.com", PASSWORD)
    assert tokens.refresh_token
    with pytest.raises(AuthError, match="sign-up refused"):
        auth.sign_up("new@example.com", PASSWORD)  # UsernameExistsException


def test_new_password_challenge_is_answered(pool: tuple[str, Any], moto_url: str) -> None:
    client_id, cognito = pool
    pool_id = cognito.list_user_pools(MaxResults=10)["UserPools"][0]["Id"]
    cognito.admin_create_user(
        UserPoolId=pool_id,
        Username="temp@example.com",
        TemporaryPassword="Temporary-pass-1",
        MessageAction="SUPPRESS",
    )
    auth = CognitoAuth(client_id=client_id, region="us-east-1", endpoint_url=moto_url)
    with pytest.raises(ChallengeRequired) as needed:
        auth.sign_in("temp@example.com", "Temporary-pass-1")
    challenge = needed.value.challenge
    assert challenge.name == "NEW_PASSWORD_REQUIRED"
    tokens = auth.respond_to_challenge(
        challenge, {"USERNAME": "temp@example.com", "NEW_PASSWORD": PASSWORD}
    )
    assert tokens.id_token.count(".") == 2
    assert auth.sign_in("temp@example.com", PASSWORD).id_token


class _CognitoWire(BaseHTTPRequestHandler):
    """Records what CognitoAuth sends and answers with the queued (status, body)."""

    seen: ClassVar[list[tuple[str, str, dict[str, Any]]]] = []
    answers: ClassVar[list[tuple[int, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.headers["X-Amz-Target"], self.headers["Content-Type"], body))
        status, answer = self.answers.pop(0)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def cognito_wire() -> Iterator[tuple[str, type[_CognitoWire]]]:
    _CognitoWire.seen, _CognitoWire.answers = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CognitoWire)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", _CognitoWire
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_wire_is_cognitos_json_api(cognito_wire: tuple[str, type[_CognitoWire]]) -> None:
    url, wire = cognito_wire
    wire.answers = [
        (200, {"AuthenticationResult": {"IdToken": "a.b.c", "ExpiresIn": 60, "RefreshToken": "r"}}),
        (400, {"__type": "com.amazonaws.cognito#NotAuthorizedException", "message": "nope"}),
        (400, {"__type": "TooManyRequestsException", "message": "slow down"}),
        (500, {"__type": "InternalErrorException", "message": "x"}),
        (500, {"__type": "InternalErrorException", "message": "x"}),
    ]
    auth = CognitoAuth(client_id="app", region="eu-west-1", endpoint_url=url, clock=lambda: 100.0)
    tokens = auth.sign_in("u@example.com", "pw")
    assert (tokens.id_token, tokens.refresh_token, tokens.expires_at) == ("a.b.c", "r", 160.0)
    target, content_type, body = wire.seen[0]
    assert target == "AWSCognitoIdentityProviderService.InitiateAuth"
    assert content_type == "application/x-amz-json-1.1"
    assert body == {
        "ClientId": "app",
        "AuthFlow": "USER_PASSWORD_AUTH",
        "AuthParameters": {"USERNAME": "u@example.com", "PASSWORD": "pw"},
    }
    with pytest.raises(AuthError, match="nope"):
        auth.refresh("r")
    # Throttling and 5xx are retried; the third failure in a row is ConnectionLost.
    with pytest.raises(ConnectionLost, match="500"):
        auth.refresh("r")
    assert len(wire.seen) == 5
    assert CognitoAuth(client_id="app", region="eu-west-1").endpoint_url == (
        "https://cognito-idp.eu-west-1.amazonaws.com/"
    )


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


class _RawAnswer(BaseHTTPRequestHandler):
    """Answers every request with the class's (status, content type, raw body)."""

    answer: ClassVar[tuple[int, str, bytes]] = (500, "text/plain", b"")

    def _answer(self) -> None:
        status, content_type, body = self.answer
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815 - http.server's method names

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def raw_server() -> Iterator[tuple[str, type[_RawAnswer]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RawAnswer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _RawAnswer
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


_HOSTILE_ANSWERS = [
    # A proxy's or a wrong port's HTML error page (werkzeug's 500, as moto sends).
    (
        502,
        "text/html",
        b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n"
        b"<h1>Internal Server Error</h1>\n<p>The server encountered an internal error</p>\n",
    ),
    # A server that is not ours putting a terminal escape and a fake line in its message.
    (400, "application/json", b'{"message": "bad\\u001b]0;pwned\\u0007\\nError: fake line"}'),
    (403, "text/plain", b"no\r\nway\x1b[2J\xff"),
]


@pytest.mark.parametrize(("status", "content_type", "body"), _HOSTILE_ANSWERS)
def test_an_error_answer_becomes_one_printable_line(
    raw_server: tuple[str, type[_RawAnswer]], status: int, content_type: str, body: bytes
) -> None:
    # Given a server answering an error whose body has newlines, HTML or escapes
    url, handler = raw_server
    handler.answer = (status, content_type, body)
    # When the API client and Cognito sign-in call it
    with pytest.raises(IotNotifyError) as from_api:
        ApiClient(api_url=url, id_tokens=StaticIdToken("t"), timeout=5).token()
    auth = CognitoAuth(client_id="app", region="eu-west-1", endpoint_url=url + "/")
    with pytest.raises(IotNotifyError) as from_cognito:
        auth.sign_in("u@example.com", "pw")
    # Then each error is one line a terminal only prints (it was the body as sent)
    for raised in (from_api, from_cognito):
        text = str(raised.value)
        for raw in ("\n", "\r", "\x1b", "\x07", "<title>", "<h1>"):
            assert raw not in text, text
    if status == 502:
        assert "Internal Server Error" in str(from_api.value)


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


def test_server_time_in_milliseconds_wins_over_the_whole_second_date_header() -> None:
    raw = {"url": "ws://x/mqtt", "clientIdPrefix": "al.", "topics": ["a/b"]}
    # Given a Date header of whole seconds and the body's serverTime 750 ms later
    token = ConnectionToken.from_response(
        {**raw, "serverTime": 1_700_000_000_750}, server_time=1_700_000_000.0
    )
    # Then "since now" starts at the millisecond, so nothing sent in the
    # 750 ms before the token is replayed
    assert token.server_time == 1_700_000_000.75
    # And an answer without serverTime (an older deployment) still uses Date
    assert ConnectionToken.from_response(raw, server_time=1_700_000_000.0).server_time == (
        1_700_000_000.0
    )
    # And a junk serverTime is ignored rather than trusted
    for junk in ("1700000000750", True, -5, 1.5e12):
        token = ConnectionToken.from_response({**raw, "serverTime": junk}, server_time=7.0)
        assert token.server_time == 7.0


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
        (None, 30, 50),
        (0, 30, 1200),
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


@pytest.mark.parametrize("asked", [-1, -5, -1200])
def test_a_negative_keepalive_is_a_callers_mistake_not_1200(asked: int) -> None:
    # Subscriber(keepalive=-1) silently became AWS IoT's maximum, 1200 s.
    with pytest.raises(InvalidArgument, match=r"keepalive must be .* >= 0.*not -") as raised:
        Subscriber(tokens=ApiClient(api_url="http://127.0.0.1:9", id_tokens=StaticIdToken("t")),
                   keepalive=asked)  # fmt: skip
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, IotNotifyError)
    with pytest.raises(InvalidArgument):
        clamp_keepalive(asked)


def test_a_token_with_a_negative_keepalive_is_not_usable() -> None:
    raw = {"url": "ws://x/mqtt", "clientIdPrefix": "al.", "topics": ["a/b"], "keepalive": -1}
    with pytest.raises(AuthError, match="keepalive"):
        ConnectionToken.from_response(raw)


def test_a_deployment_cannot_recommend_a_negative_keepalive() -> None:
    from iotnotify_handlers.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="IOTNOTIFY_KEEPALIVE_SECONDS"):
        load_settings({"AWS_REGION": "eu-west-1", "IOTNOTIFY_KEEPALIVE_SECONDS": "-1"})


def test_keepalive_floor_cannot_be_raised_or_zeroed() -> None:
    with pytest.raises(ValueError):
        clamp_keepalive(600, floor=0)
    with pytest.raises(ValueError):
        clamp_keepalive(600, floor=31)


def test_device_suffix_is_unique_per_call_and_keeps_the_machine_part() -> None:
    # Issue 12 item 1: two processes (two Subscribers) never share a client id.
    first, second = device_suffix("listen"), device_suffix("listen")
    assert first != second
    assert first.rsplit("-", 1)[0] == second.rsplit("-", 1)[0]  # same tag and machine
    assert first.startswith("listen-")
    assert device_suffix("tray").startswith("tray-")


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


def test_default_keepalive_is_below_common_idle_timeouts() -> None:
    # Issue 12 item 5: nginx/ALB 60 s, proxies 120 s, AWS NAT Gateway 350 s.
    from iotnotify.contract import DEFAULT_KEEPALIVE_SECONDS
    from iotnotify_handlers.settings import load_settings

    assert clamp_keepalive(None) == DEFAULT_KEEPALIVE_SECONDS
    assert 30 <= DEFAULT_KEEPALIVE_SECONDS < 60
    # The token vending Lambda recommends the same unless the deployment says otherwise.
    assert load_settings({"AWS_REGION": "eu-west-1"}).keepalive_seconds == 50


@pytest.mark.parametrize(
    "junk",
    [
        {"credentials": "AKIA..."},
        {"credentials": ["AKIA"]},
        {"keepalive": float("inf")},
        {"keepalive": [50]},
    ],
)
def test_a_token_response_of_the_wrong_shape_is_an_auth_error(junk: dict[str, Any]) -> None:
    # Given a token answer whose credentials are not an object or whose
    # keepalive is not a number (JSON's Infinity parses as float("inf"))
    raw = {"url": "ws://x/mqtt", "clientIdPrefix": "al.", "topics": ["a/b"], **junk}
    # Then it is refused as unusable, like any other malformed answer, rather
    # than leaking AttributeError or OverflowError out of the SDK
    with pytest.raises(AuthError, match="not usable"):
        ConnectionToken.from_response(raw)


def test_a_json_answer_nested_too_deep_to_parse_is_connection_lost(
    raw_server: tuple[str, type[_RawAnswer]],
) -> None:
    from iotnotify.chat import RoomsApi

    # Given an API (or something on its port) answering 200 with JSON nested
    # deeper than Python's parser recurses
    url, handler = raw_server
    handler.answer = (200, "application/json", b"[" * 100_000)
    tokens = StaticIdToken("t")
    # Then the token, inbox and rooms calls fail as for any unusable answer
    # (ConnectionLost: retried, printed as one line), not with a RecursionError
    with pytest.raises(ConnectionLost, match="non-JSON"):
        ApiClient(api_url=url, id_tokens=tokens, timeout=5).token()
    with pytest.raises(ConnectionLost, match="non-JSON"):
        ApiClient(api_url=url, id_tokens=tokens, timeout=5).notifications(since=None)
    with pytest.raises(ConnectionLost, match="non-JSON"):
        RoomsApi(api_url=url, id_tokens=tokens, timeout=5).list_page()


class _Redirect(BaseHTTPRequestHandler):
    """Answers every request with a 302 to the class's ``location``."""

    location: ClassVar[str] = ""

    def _answer(self) -> None:
        self.send_response(302)
        self.send_header("Location", self.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer  # noqa: N815 - http.server's method names

    def log_message(self, *_args: Any) -> None:
        pass


def test_a_redirect_never_carries_the_id_token_to_another_host(
    raw_server: tuple[str, type[_RawAnswer]],
) -> None:
    from iotnotify.chat import RoomsApi

    # Given an API URL answered by a redirect to another host (a captive
    # portal on plain http, a misconfigured proxy); the other host records
    # the Authorization header it gets
    other_url, other = raw_server
    other.answer = (200, "application/json", b'{"notifications": [], "rooms": []}')
    seen: list[str | None] = []
    original = other._answer

    def recording(self: _RawAnswer) -> None:
        seen.append(self.headers.get("Authorization"))
        original(self)

    other.do_GET = other.do_POST = recording  # type: ignore[method-assign]
    _Redirect.location = other_url.replace("127.0.0.1", "localhost") + "/elsewhere"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        tokens = StaticIdToken("the-id-token")
        # When the subscriber's and the rooms' calls meet it
        for call in (
            lambda: ApiClient(api_url=url, id_tokens=tokens, timeout=5).token(),
            lambda: ApiClient(api_url=url, id_tokens=tokens, timeout=5).notifications(since=None),
            lambda: RoomsApi(api_url=url, id_tokens=tokens, timeout=5).list_page(),
            lambda: RoomsApi(api_url=url, id_tokens=tokens, timeout=5).create("lobby"),
        ):
            # Then each fails as an HTTP error (the API never redirects)
            with pytest.raises(IotNotifyError, match="302"):
                call()
        # And the ID token never reached the other host
        assert seen == []
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_an_answer_larger_than_api_gateway_can_send_is_refused_unread(
    raw_server: tuple[str, type[_RawAnswer]],
) -> None:
    from iotnotify.api_client import MAX_ANSWER_BYTES
    from iotnotify.chat import RoomsApi

    # Given something on the API's port answering far more than API Gateway's
    # 10 MB payload limit (a misconfigured proxy, a hostile server)
    url, handler = raw_server
    handler.answer = (200, "application/json", b'{"topics": ["' + b"x" * MAX_ANSWER_BYTES + b'"]}')
    tokens = StaticIdToken("t")
    # Then the always-on client refuses it rather than holding it all in memory
    for call in (
        lambda: ApiClient(api_url=url, id_tokens=tokens, timeout=5).token(),
        lambda: RoomsApi(api_url=url, id_tokens=tokens, timeout=5).list_page(),
    ):
        with pytest.raises(ConnectionLost, match="more than"):
            call()
