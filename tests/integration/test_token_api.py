"""GET /token under moto: the session policy, the URL, and what is refused."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sts.models import sts_backends

from iotnotify.contract import DEFAULT_KEEPALIVE_SECONDS
from iotnotify_handlers import api_token
from tests.conftest import IOT_ENDPOINT, REGION, FakeAccount, rest_event
from tests.sigv4_rule import verifies_under_iot_rule


def assumed_roles() -> list:
    return list(sts_backends[DEFAULT_ACCOUNT_ID]["aws"].assumed_roles)


def call(claims: dict | None) -> tuple[int, dict]:
    response = api_token.handler(rest_event(path="/token", claims=claims))
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


def test_alice_gets_the_token_response_of_the_design(account: FakeAccount) -> None:
    status, body = call({"sub": "alice", "token_use": "id"})
    assert status == 200
    assert set(body) == {
        "endpoint",
        "region",
        "url",
        "clientIdPrefix",
        "topics",
        "credentials",
        "keepalive",
        "serverTime",
        "channels",
        "games",
    }
    # the server's clock in milliseconds, for clients' "since now"
    assert isinstance(body["serverTime"], int)
    assert abs(body["serverTime"] / 1000 - time.time()) < 60
    assert body["channels"] == {}  # no ?rooms=: no channel
    assert body["endpoint"] == IOT_ENDPOINT
    assert body["region"] == REGION
    assert body["clientIdPrefix"] == "alice."
    assert body["topics"] == ["iotnotify/test/user/alice/notifications", "iotnotify/test/broadcast"]
    assert body["keepalive"] == DEFAULT_KEEPALIVE_SECONDS == 50
    creds = body["credentials"]
    assert set(creds) == {"accessKeyId", "secretAccessKey", "sessionToken", "expiration"}
    expires = datetime.fromisoformat(creds["expiration"].replace("Z", "+00:00"))
    assert 0 < (expires - datetime.now(UTC)).total_seconds() <= 3600


def test_sts_is_asked_for_a_narrow_session_of_at_most_an_hour(account: FakeAccount) -> None:
    status, _ = call({"sub": "alice"})
    assert status == 200
    [role] = assumed_roles()
    assert role.role_arn == account.role_arn
    remaining = (role.expiration - datetime.now(UTC).replace(tzinfo=None)).total_seconds()
    assert 3500 < remaining <= 3600
    assert role.session_name == "alice"
    policy = json.loads(role.policy)
    resources = [
        r
        for s in policy["Statement"]
        for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    ]
    assert all("alice" in r or r.endswith("/broadcast") for r in resources)
    actions = {
        a
        for s in policy["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert actions == {
        "iot:Connect",
        "iot:Subscribe",
        "iot:Receive",
    }


def test_presigned_url_follows_the_iot_rule(account: FakeAccount) -> None:
    _, body = call({"sub": "alice"})
    url, creds = body["url"], body["credentials"]
    parts = urlsplit(url)
    assert parts.scheme == "wss"
    assert parts.netloc == IOT_ENDPOINT
    assert parts.path == "/mqtt"
    query = parse_qs(parts.query)
    assert query["X-Amz-Credential"][0].split("/")[3] == "iotdevicegateway"
    assert query["X-Amz-SignedHeaders"] == ["host"]
    assert query["X-Amz-Security-Token"] == [creds["sessionToken"]]
    # The token is appended after signing, so it is the last parameter.
    assert parts.query.rsplit("&", 1)[1].startswith("X-Amz-Security-Token=")
    assert verifies_under_iot_rule(url, secret_access_key=creds["secretAccessKey"])
    assert not verifies_under_iot_rule(url, secret_access_key="wrong" + creds["secretAccessKey"])


def test_a_url_whose_signature_covers_the_token_fails_the_iot_rule(account: FakeAccount) -> None:
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    _, body = call({"sub": "alice"})
    creds = body["credentials"]
    request = AWSRequest(method="GET", url=f"wss://{IOT_ENDPOINT}/mqtt")
    SigV4QueryAuth(
        Credentials(creds["accessKeyId"], creds["secretAccessKey"], creds["sessionToken"]),
        "iotdevicegateway",
        REGION,
    ).add_auth(request)
    assert "X-Amz-Security-Token" in request.url
    assert not verifies_under_iot_rule(request.url, secret_access_key=creds["secretAccessKey"])


@pytest.mark.parametrize(
    "sub", ["a/b", "+", "#", "*", "?", "$x", "", "a" * 65, "ålice", "alice.x", 7]
)
def test_invalid_user_ids_get_400_and_no_sts_call(account: FakeAccount, sub: object) -> None:
    status, body = call({"sub": sub})
    assert status == 400
    assert body["error"] == "bad_request"
    assert "invalid user id" in body["message"]
    assert assumed_roles() == []


@pytest.mark.parametrize("claims", [None, {}, {"email": "alice@example.com"}])
def test_missing_sub_gets_401_and_no_sts_call(account: FakeAccount, claims: dict | None) -> None:
    status, body = call(claims)
    assert status == 401
    assert body["error"] == "unauthorized"
    assert assumed_roles() == []
