"""Issue 10 (trust) against the real ``iotnotify local``: what an outsider on loopback
must not get, and the JSON errors every bad input gets instead."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import jwt
import moto
import pytest
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from iotnotify_emulator.credentials import Credential
from iotnotify_emulator.testing import presign_url
from iotnotify_local.stack import MOTO_HOST, RemoteNotAllowed, canonical_host, check_exposure
from tests.integration.local.clients import api, sign_in
from tests.integration.local.conftest import start_stack
from tests.local_process import IOTNOTIFY, LocalProcess


def bundled_moto_key() -> jwt.PyJWK:
    """The private key every moto install ships (and signed every pool's tokens with)."""
    path = Path(moto.__file__).parent / "cognitoidp" / "resources" / "jwks-private.json.gz"
    document = json.loads(gzip.decompress(path.read_bytes()))
    return jwt.PyJWK(document["keys"][0] if "keys" in document else document)


def forged_id_token(state: dict[str, Any], sub: str, kid: str) -> str:
    now = int(time.time())
    claims = {
        "iss": f"https://cognito-idp.{state['region']}.amazonaws.com/{state['userPoolId']}",
        "aud": state["userPoolClientId"],
        "sub": sub,
        "token_use": "id",
        "iat": now,
        "auth_time": now,
        "exp": now + 3600,
        "cognito:username": sub,
        "email": "mallory@example.com",
    }
    key = bundled_moto_key()
    return jwt.encode(claims, key.key, algorithm="RS256", headers={"kid": kid})


def test_token_signed_with_motos_bundled_key_gets_401(local_stack: LocalProcess) -> None:
    # Given the id token header moto writes on real tokens, and any other kid
    state = local_stack.state
    real = sign_in(state, local_stack.user("alice"))
    kids = {jwt.get_unverified_header(real)["kid"], "any-other-kid"}
    bob = local_stack.user("bob")["sub"]
    for kid in kids:
        forged = forged_id_token(state, bob, kid)
        # When an outsider presents a token for bob signed with moto's shipped key
        for path in ("/token", "/notifications"):
            status, body = api(state, "GET", path, token=forged)
            # Then neither bob's credentials nor his inbox are handed out
            assert status == 401, (path, kid, body)
            assert body["error"] == "unauthorized"
    # while a token the pool really issued still works
    assert api(state, "GET", "/token", token=real)[0] == 200
    assert api(state, "GET", "/notifications", token=real)[0] == 200


def signed_post(
    state: dict[str, Any], path: str, body: Any, credentials: Credentials
) -> tuple[int, Any]:
    """A SigV4-signed request (service execute-api), as a backend's AWS SDK sends it."""
    data = json.dumps(body).encode()
    request = AWSRequest(
        method="POST",
        url=state["apiUrl"] + path,
        data=data,
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(credentials, "execute-api", state["region"]).add_auth(request)
    prepared = urllib.request.Request(
        request.url, data=data, headers=dict(request.headers.items()), method="POST"
    )
    try:
        with urllib.request.urlopen(prepared, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_post_notify_with_sigv4_needs_execute_api_invoke(local_stack: LocalProcess) -> None:
    state = local_stack.state
    note = {"user": local_stack.user("alice")["sub"], "title": "signed", "ephemeral": True}
    # Given the publisher identity (granted execute-api:Invoke on POST /notify)
    publisher = Credentials(
        state["publisher"]["accessKeyId"], state["publisher"]["secretAccessKey"]
    )
    # When it signs POST /notify with SigV4, Then the notification is sent
    status, body = signed_post(state, "/notify", note, publisher)
    assert status == 200, body
    assert body["results"][0]["ok"] is True
    # Given a subscriber's own vended credentials (validly signed, but no Invoke grant)
    token = api(state, "GET", "/token", token=sign_in(state, local_stack.user("bob")))[1]
    vended = token["credentials"]
    subscriber = Credentials(
        vended["accessKeyId"], vended["secretAccessKey"], vended["sessionToken"]
    )
    # When bob signs POST /notify himself, Then API Gateway's IAM check refuses it
    status, body = signed_post(state, "/notify", note, subscriber)
    assert status == 403, body
    assert body["error"] == "forbidden"
    assert "execute-api:Invoke" in body["message"]
    # and made-up keys fail the signature check
    status, body = signed_post(state, "/notify", note, Credentials("AKIAMADEUP", "x" * 40))
    assert status == 403, body


def raw_request(
    state: dict[str, Any],
    method: str,
    path: str,
    *,
    headers: dict[str, str | bytes] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request as bytes on the wire (http.client lets a test send any header bytes)."""
    url = urllib.parse.urlsplit(state["apiUrl"])
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None and "Content-Length" not in (headers or {}):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def assert_json_error(status: int, headers: dict[str, str], body: bytes, expected: int) -> dict:
    """The API's one error shape: JSON {"error","message"} with CORS, for every status."""
    assert status == expected, (status, body[:300])
    assert headers.get("Content-Type", "").startswith("application/json"), headers
    assert headers.get("Access-Control-Allow-Origin") == "*", headers
    document = json.loads(body, parse_constant=lambda c: pytest.fail(f"{c} in a response"))
    # One spacing whichever layer answered (router, parser or handler)
    assert body == json.dumps(document, separators=(",", ":")).encode(), body
    assert set(document) == {"error", "message"}, document
    assert isinstance(document["error"], str), document
    assert document["error"], document
    return dict(document)


def test_non_finite_numbers_are_refused_in_every_envelope(local_stack: LocalProcess) -> None:
    state = local_stack.state
    key = state["extra"]["notifyApiKey"]
    alice = local_stack.user("alice")["sub"]
    for number in ("NaN", "Infinity", "-Infinity", "1e999"):
        # Given a notify body whose data holds a number JSON cannot represent
        body = f'{{"user": "{alice}", "title": "t", "data": {{"x": {number}}}}}'.encode()
        # When it is posted, Then it is refused before anything is sent or stored
        status, headers, answer = raw_request(
            state,
            "POST",
            "/notify/key",
            headers={"x-api-key": key, "Content-Type": "application/json"},
            body=body,
        )
        assert_json_error(status, headers, answer, 400)


def test_inbox_pages_are_strict_json_even_with_a_corrupt_item(local_stack: LocalProcess) -> None:
    # Given alice's inbox holding an item whose stored envelope has NaN (as the
    # old code let through) next to a good one
    state = local_stack.state
    alice = local_stack.user("alice")
    table = boto3.resource(
        "dynamodb",
        region_name=state["region"],
        endpoint_url=state["awsEndpointUrl"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).Table(f"{state['app']}-{state['stage']}-inbox")
    bad_id = "01J00000000000000000000000"
    table.put_item(
        Item={
            "userId": alice["sub"],
            "id": bad_id,
            "expiresAt": int(time.time()) + 3600,
            "envelope": f'{{"v":1,"id":"{bad_id}","type":"t","title":"x","body":"",'
            '"data":{"x":NaN},"ts":""}',
        }
    )
    key = state["extra"]["notifyApiKey"]
    status, sent = api_key_post(state, key, {"user": alice["sub"], "title": "good"})
    assert status == 200, sent
    # When alice catches up
    token = sign_in(state, alice)
    status, _headers, body = raw_request(
        state, "GET", "/notifications", headers={"Authorization": token}
    )
    # Then the page is JSON any client parses, and the good notification is there
    assert status == 200, body
    page = json.loads(body, parse_constant=lambda c: pytest.fail(f"{c} in the inbox page"))
    ids = [note["id"] for note in page["notifications"]]
    assert sent["id"] in ids
    assert bad_id not in ids


def api_key_post(state: dict[str, Any], key: str, body: Any) -> tuple[int, Any]:
    status, _headers, answer = raw_request(
        state,
        "POST",
        "/notify/key",
        headers={"x-api-key": key, "Content-Type": "application/json"},
        body=json.dumps(body).encode(),
    )
    return status, json.loads(answer)


def test_deeply_nested_bodies_get_400_json(local_stack: LocalProcess) -> None:
    state = local_stack.state
    token = sign_in(state, local_stack.user("alice"))
    nested = b"[" * 100_000
    for path, headers in (
        ("/task", {"Authorization": token}),
        ("/chats", {"Authorization": token}),
        ("/notify/key", {"x-api-key": state["extra"]["notifyApiKey"]}),
    ):
        status, answer_headers, body = raw_request(
            state,
            "POST",
            path,
            headers={**headers, "Content-Type": "application/json"},
            body=nested,
        )
        assert_json_error(status, answer_headers, body, 400)


def test_limit_takes_only_ascii_digits(local_stack: LocalProcess) -> None:
    state = local_stack.state
    token = sign_in(state, local_stack.user("alice"))
    for limit in ("²", "①", "١٢", "9" * 5000, "-1", "1.0"):
        query = urllib.parse.urlencode({"limit": limit})
        status, headers, body = raw_request(
            state, "GET", f"/notifications?{query}", headers={"Authorization": token}
        )
        assert_json_error(status, headers, body, 400)
    status, _headers, body = raw_request(
        state, "GET", "/notifications?limit=12", headers={"Authorization": token}
    )
    assert status == 200, body


def test_non_ascii_api_key_gets_401(local_stack: LocalProcess) -> None:
    for key in (b"\xff\xfe\xfd", "clé".encode(), b"\xc3"):
        status, headers, body = raw_request(
            local_stack.state,
            "POST",
            "/notify/key",
            headers={"x-api-key": key, "Content-Type": "application/json"},
            body=b'{"broadcast": true, "title": "t"}',
        )
        assert_json_error(status, headers, body, 401)


def test_lone_surrogates_are_refused_in_every_text_field(local_stack: LocalProcess) -> None:
    state = local_stack.state
    token = sign_in(state, local_stack.user("alice"))
    alice = local_stack.user("alice")["sub"]
    key = state["extra"]["notifyApiKey"]
    lone = "\\ud800"  # a JSON escape for half a surrogate pair: not Unicode text
    cases = (
        ("/task", {"Authorization": token}, f'{{"name": "{lone}"}}'),
        ("/task", {"Authorization": token}, f'{{"name": "n", "payload": {{"{lone}": 1}}}}'),
        ("/chats", {"Authorization": token}, f'{{"room": "{lone}"}}'),
        ("/notify/key", {"x-api-key": key}, f'{{"user": "{alice}", "title": "{lone}"}}'),
        (
            "/notify/key",
            {"x-api-key": key},
            f'{{"user": "{alice}", "title": "t", "body": "{lone}"}}',
        ),
        (
            "/notify/key",
            {"x-api-key": key},
            f'{{"user": "{alice}", "title": "t", "data": {{"k": "a{lone}"}}}}',
        ),
    )
    for path, headers, body in cases:
        status, answer_headers, answer = raw_request(
            state,
            "POST",
            path,
            headers={**headers, "Content-Type": "application/json"},
            body=body.encode(),
        )
        assert_json_error(status, answer_headers, answer, 400)


def test_router_and_parser_errors_are_json_with_cors(local_stack: LocalProcess) -> None:
    state = local_stack.state
    # unknown route, whatever the method (a CORS preflight too)
    assert_json_error(*raw_request(state, "GET", "/no/such/route"), 404)
    assert_json_error(*raw_request(state, "OPTIONS", "/no/such/route"), 404)
    # while a route's preflight is answered
    status, headers, _ = raw_request(state, "OPTIONS", "/token")
    assert status == 204
    assert headers.get("Access-Control-Allow-Origin") == "*"
    # wrong method (and the Allow header survives)
    status, headers, body = raw_request(state, "DELETE", "/token")
    assert_json_error(status, headers, body, 405)
    assert "GET" in headers.get("Allow", "")
    # a body larger than the API takes, announced by Content-Length
    assert_json_error(
        *raw_request(
            state,
            "POST",
            "/task",
            headers={"Content-Type": "application/json", "Content-Length": str(64 * 2**20)},
            body=b"",
        ),
        413,
    )
    # a header larger than the server reads
    assert_json_error(*raw_request(state, "GET", "/token", headers={"X-Big": "a" * 9000}), 431)
    assert "Traceback" not in local_stack.output()


def readme_curl_line() -> str:
    text = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- curl-notify -->", 2)[1]
    return next(line for line in block.splitlines() if "curl" in line)


def test_readme_curl_line_sends_a_notification(local_stack: LocalProcess, tmp_path: Path) -> None:
    # Given the state file where the README says it is (relative to where the
    # stack was started)
    (tmp_path / ".iotnotify").mkdir()
    (tmp_path / ".iotnotify" / "local.json").write_bytes(local_stack.state_file.read_bytes())
    # When a newcomer pastes the README's curl line
    done = subprocess.run(
        ["bash", "-c", readme_curl_line()],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Then the first demo user is notified
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["results"] == [{"userId": local_stack.state["users"][0]["sub"], "ok": True}]


def websocket_status(url: str) -> int:
    """The HTTP status of a WebSocket upgrade to a presigned URL (101 = accepted)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        connection.request(
            "GET",
            f"{parts.path}?{parts.query}",
            headers={
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Protocol": "mqtt",
            },
        )
        return connection.getresponse().status
    finally:
        connection.close()


def test_role_sessions_need_the_roles_trust_policy(local_stack: LocalProcess) -> None:
    state = local_stack.state
    moto_iam = boto3.client(
        "iam",
        region_name=state["region"],
        endpoint_url=state["awsEndpointUrl"],
        aws_access_key_id="AKIAMADEUPMADEUP0000",
        aws_secret_access_key="made-up",
    )
    role_arn = moto_iam.get_role(RoleName=f"{state['app']}-{state['stage']}-subscriber")["Role"][
        "Arn"
    ]
    ws_base = state["iotWsUrl"]
    # Given an outsider on loopback with made-up keys, and the publisher identity
    # (a real IAM user the subscriber role does not trust)
    callers = {
        "made-up keys": ("AKIAMADEUPMADEUP0000", "made-up"),
        "publisher": (state["publisher"]["accessKeyId"], state["publisher"]["secretAccessKey"]),
    }
    for who, (key, secret) in callers.items():
        sts = boto3.client(
            "sts",
            region_name=state["region"],
            endpoint_url=state["awsEndpointUrl"],
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )
        # When they assume the subscriber role directly in moto (moto says yes,
        # with no session policy: the whole ceiling)
        creds = sts.assume_role(RoleArn=role_arn, RoleSessionName=f"mallory-{who[:4]}")[
            "Credentials"
        ]
        stolen = Credential(
            access_key_id=creds["AccessKeyId"],
            secret_access_key=creds["SecretAccessKey"],
            session_token=creds["SessionToken"],
            principal_id="",
            identity_policies=(),
        )
        url = presign_url(ws_base, stolen, region=state["region"])
        # Then the emulator refuses the session before the WebSocket upgrade
        assert websocket_status(url) == 403, who
    # while a session the token-vending function assumed still connects
    token = api(state, "GET", "/token", token=sign_in(state, local_stack.user("alice")))[1]
    assert websocket_status(token["url"]) == 101


def test_non_loopback_host_needs_allow_remote(tmp_path: Path) -> None:
    # When a newcomer asks for every interface without saying they mean it
    done = subprocess.run(
        [
            IOTNOTIFY,
            "local",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--state-file",
            str(tmp_path / "s.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Then nothing starts, and the error says why and what to add
    assert done.returncode == 2, done.stderr
    assert "--allow-remote" in done.stderr
    assert "trusts everyone" in done.stderr
    assert not (tmp_path / "s.json").exists()


def test_exposure_check_and_warning() -> None:
    # 127.1 is inet_aton shorthand for 127.0.0.1: judged by what it resolves to
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost", "127.1"):
        assert check_exposure(host, allow_remote=False) is None
    for host in ("192.168.1.20", "myhost.example"):
        with pytest.raises(RemoteNotAllowed):
            check_exposure(host, allow_remote=False)
        warning = check_exposure(host, allow_remote=True)
        assert warning is not None
        assert "trusts everyone" in warning
        assert "127.0.0.1" in warning


@pytest.mark.parametrize("host", ["0.0.0.0", "0", "::"])
def test_an_unspecified_address_is_refused_with_the_address_to_give_instead(host: str) -> None:
    # Every URL the stack hands out names --host: the page's config.json
    # (apiUrl), the presigned URLs of GET /token, the state file. With
    # 0.0.0.0 a phone that opened http://<LAN address>:port/ was told to call
    # http://0.0.0.0:port, which it cannot open: the README's "0.0.0.0 to try
    # the page from a phone" never worked.
    for allow_remote in (False, True):
        with pytest.raises(RemoteNotAllowed) as refused:
            check_exposure(host, allow_remote=allow_remote)
        message = str(refused.value)
        assert "cannot open" in message
        assert "--host " in message
        assert "--allow-remote" in message


def test_moto_listens_on_loopback_whatever_host_says(tmp_path: Path) -> None:
    # Given the stack asked to listen on another address (here 127.0.0.2,
    # so the test stays on loopback)
    stack = start_stack(tmp_path / "state.json", "--port", "0", "--host", "127.0.0.2")
    try:
        state = stack.state
        # Then the API and the emulator use it, but moto answers on 127.0.0.1 only
        assert urllib.parse.urlsplit(state["apiUrl"]).hostname == "127.0.0.2"
        assert urllib.parse.urlsplit(state["iotWsUrl"]).hostname == "127.0.0.2"
        moto_url = urllib.parse.urlsplit(state["awsEndpointUrl"])
        assert moto_url.hostname == MOTO_HOST == "127.0.0.1"
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.2", moto_url.port), timeout=5).close()
        # and sign-in through it still works end to end
        token = sign_in(state, stack.user("alice"))
        assert api(state, "GET", "/token", token=token)[0] == 200
    finally:
        stack.stop()


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("127.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("127.0.0.2", "127.0.0.2"),
        ("::1", "::1"),
        ("localhost", "localhost"),
    ],
)
def test_the_host_is_written_as_browsers_write_it(given: str, canonical: str) -> None:
    assert canonical_host(given) == canonical


def test_a_short_ipv4_host_gets_urls_a_browser_can_use(tmp_path: Path) -> None:
    # Given --host 127.1, which Chromium rewrites to 127.0.0.1 before it connects
    stack = start_stack(tmp_path / "state.json", "--port", "0", "--host", "127.1")
    try:
        state = stack.state
        # Then every URL, the presigned one included, names 127.0.0.1
        assert urllib.parse.urlsplit(state["apiUrl"]).hostname == "127.0.0.1"
        token = sign_in(state, stack.user("alice"))
        status, vended = api(state, "GET", "/token", token=token)
        assert status == 200
        assert urllib.parse.urlsplit(vended["url"]).hostname == "127.0.0.1"
    finally:
        stack.stop()


def test_non_ascii_authorization_gets_401(local_stack: LocalProcess) -> None:
    for value in (b"\xff\xfe", b"Bearer \xed\xa0\x80", "Bearer é".encode()):
        for path in ("/token", "/notifications"):
            status, headers, body = raw_request(
                local_stack.state, "GET", path, headers={"Authorization": value}
            )
            assert_json_error(status, headers, body, 401)


def cognito_call(state: dict[str, Any], action: str, body: Any) -> tuple[int, Any]:
    """What the web page's Cognito client sends, to the endpoint the page is configured with."""
    status, _headers, config = raw_request(state, "GET", "/config.json")
    assert status == 200, config
    endpoint = json.loads(config)["cognitoEndpoint"]
    path = urllib.parse.urlsplit(endpoint).path
    assert endpoint.startswith(state["apiUrl"]), "the page signs in through the API"
    status, _headers, answer = raw_request(
        state,
        "POST",
        path,
        headers={
            "X-Amz-Target": f"AWSCognitoIdentityProviderService.{action}",
            "Content-Type": "application/x-amz-json-1.1",
        },
        body=json.dumps(body).encode(),
    )
    return status, json.loads(answer or b"null")


def test_the_page_signs_in_through_the_api_and_admin_calls_are_refused(
    local_stack: LocalProcess,
) -> None:
    state = local_stack.state
    alice = local_stack.user("alice")
    # Given the page's Cognito endpoint (moto itself is loopback-only)
    # When it signs alice in, Then it gets her ID token, which the API accepts
    status, answer = cognito_call(
        state,
        "InitiateAuth",
        {
            "ClientId": state["userPoolClientId"],
            "AuthFlow": "USER_PASSWORD_AUTH",
            "AuthParameters": {"USERNAME": alice["username"], "PASSWORD": alice["password"]},
        },
    )
    assert status == 200, answer
    token = answer["AuthenticationResult"]["IdToken"]
    assert api(state, "GET", "/token", token=token)[0] == 200
    # But an admin call through the same door never reaches moto
    for action in ("AdminCreateUser", "AdminSetUserPassword", "ListUsers", "DeleteUserPool"):
        status, answer = cognito_call(state, action, {"UserPoolId": state["userPoolId"]})
        assert status == 403, (action, answer)
        assert answer["error"] == "forbidden"


def test_a_wheel_install_finds_the_page_built_in_the_checkout_it_runs_in(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import iotnotify_local.stack as stack

    # Given the package without a page beside it (a wheel install)
    monkeypatch.setattr(stack, "_WEB_DIR", tmp_path / "site-packages" / "web" / "dist")
    built = tmp_path / "checkout" / "web" / "dist"
    built.mkdir(parents=True)
    (built / "index.html").write_text("<!doctype html>")
    (built.parent / "package.json").write_text('{"name": "iotnotify-web"}')
    # (another project's built page, which must never be served)
    other = tmp_path / "other" / "web" / "dist"
    other.mkdir(parents=True)
    (other / "index.html").write_text("<!doctype html>")
    (other.parent / "package.json").write_text('{"name": "someone-else"}')
    (tmp_path / "checkout" / "emulator").mkdir()
    # Then the page built in the checkout is served, from its root or a folder in it
    assert stack.find_web_dir(cwd=tmp_path / "checkout") == built
    assert stack.find_web_dir(cwd=tmp_path / "checkout" / "emulator") == built
    # and outside a checkout the package's path stays (the API says how to build it)
    assert stack.find_web_dir(cwd=tmp_path) == tmp_path / "site-packages" / "web" / "dist"
    assert stack.find_web_dir(cwd=tmp_path / "other") == tmp_path / "site-packages" / "web" / "dist"


def test_an_access_token_is_refused_with_a_message_that_names_the_id_token(
    local_stack: LocalProcess,
) -> None:
    # Given the access token of a real sign-in (what many Cognito examples send)
    state = local_stack.state
    alice = local_stack.user("alice")
    cognito = boto3.client(
        "cognito-idp",
        region_name=state["region"],
        endpoint_url=state["awsEndpointUrl"],
        config=Config(signature_version=UNSIGNED),
    )
    tokens = cognito.initiate_auth(
        ClientId=state["userPoolClientId"],
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": alice["username"], "PASSWORD": alice["password"]},
    )["AuthenticationResult"]
    # When it is sent where the API takes the ID token, Then it is a 401 that
    # says so (it was "Token is missing the "aud" claim")
    for token in (tokens["AccessToken"], "Bearer " + tokens["AccessToken"]):
        status, body = api(state, "GET", "/token", token=token)
        assert (status, body["error"]) == (401, "unauthorized")
        assert "ID token" in body["message"]
        assert "access token" in body["message"]
    assert api(state, "GET", "/token", token=tokens["IdToken"])[0] == 200
