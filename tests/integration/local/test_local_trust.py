"""Issue 10 (trust) against the real ``iotnotify local``: what an outsider on loopback
must not get, and the JSON errors every bad input gets instead."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any

import jwt
import moto

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
