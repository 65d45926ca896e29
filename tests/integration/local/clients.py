"""What a user's client does against the local stack: sign in, token, MQTT."""

from __future__ import annotations

import json
import queue
import secrets
import threading
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import boto3
import paho.mqtt.client as mqtt
from botocore import UNSIGNED
from botocore.config import Config


def sign_in(state: dict[str, Any], user: dict[str, Any]) -> str:
    """Cognito InitiateAuth (USER_PASSWORD_AUTH) against the local pool: the ID token."""
    cognito = boto3.client(
        "cognito-idp",
        region_name=state["region"],
        endpoint_url=state["awsEndpointUrl"],
        config=Config(signature_version=UNSIGNED),
    )
    answer = cognito.initiate_auth(
        ClientId=state["userPoolClientId"],
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": user["username"], "PASSWORD": user["password"]},
    )
    return str(answer["AuthenticationResult"]["IdToken"])


def sign_up(state: dict[str, Any], email: str, password: str) -> str:
    """What the page's "Sign up" does (SignUp), confirmed by the pool's admin; the sub."""
    cognito = boto3.client(
        "cognito-idp",
        region_name=state["region"],
        endpoint_url=state["awsEndpointUrl"],
        config=Config(signature_version=UNSIGNED),
    )
    answer = cognito.sign_up(
        ClientId=state["userPoolClientId"],
        Username=email,
        Password=password,
        UserAttributes=[{"Name": "email", "Value": email}],
    )
    admin = boto3.client(
        "cognito-idp",
        region_name=state["region"],
        endpoint_url=state["awsEndpointUrl"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    admin.admin_confirm_sign_up(UserPoolId=state["userPoolId"], Username=email)
    return str(answer["UserSub"])


def public_room(state: dict[str, Any], prefix: str) -> str:
    """A new public room ``{prefix}-{hex}``, owned by a user signed up for it alone.

    For tests that need a room, not its owner: the demo users' quota of
    rooms created (10 each) is shared by every test of a session's stack,
    and a suite that has alice create one room per test runs out of it.
    """
    email = f"owner-{secrets.token_hex(4)}@example.com"
    password = "Aa1!" + secrets.token_hex(8)
    sign_up(state, email, password)
    token = sign_in(state, {"username": email, "password": password})
    room = f"{prefix}-{secrets.token_hex(3)}"
    status, answer = api(state, "POST", "/chats", token=token, body={"room": room})
    if status != 201:
        raise RuntimeError(f"POST /chats {room}: {status} {answer}")
    return room


def api(
    state: dict[str, Any],
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = token
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        state["apiUrl"] + path, data=data, headers=headers, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


class MqttUser:
    """A paho-mqtt client on the presigned URL of a token response."""

    def __init__(self, token: dict[str, Any], suffix: str = "test") -> None:
        self.token = token
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.suback: queue.Queue[list[int]] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connect_result: list[Any] = []
        url = urlsplit(token["url"])
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=token["clientIdPrefix"] + suffix,
            transport="websockets",
            protocol=mqtt.MQTTv311,
        )
        self.client.ws_set_options(path=f"{url.path}?{url.query}")
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, msg.payload))
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = lambda *_args: self.disconnected.set()
        self.client.connect(url.hostname or "127.0.0.1", url.port or 80, keepalive=60)
        self.client.loop_start()

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        self.connect_result.append(reason)
        self.connected.set()

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        self.suback.put([int(getattr(r, "value", r)) for r in reasons])

    def subscribe(self, topic: str, timeout: float = 5.0) -> list[int]:
        self.client.subscribe(topic, qos=0)
        return self.suback.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
