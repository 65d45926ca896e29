"""Issue 10 (trust) against the real ``iotnotify local``: what an outsider on loopback
must not get, and the JSON errors every bad input gets instead."""

from __future__ import annotations

import gzip
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jwt
import moto
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.integration.local.clients import api, sign_in
from tests.local_process import LocalProcess


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
