"""iot-data operations beyond ``Publish``: retained messages and forced disconnects.

Routes and shapes come from botocore's ``iot-data`` service model
(``botocore/data/iot-data/2015-05-28/service-2.json``, protocol rest-json),
so ``boto3.client("iot-data", endpoint_url=emu.data_url)`` works unchanged:

* ``GET /retainedMessage/{topic}`` (``GetRetainedMessage``): ``{"topic",
  "payload" (base64), "qos", "lastModifiedTime" (epoch ms),
  "userProperties"? (base64 of the JSON array, MQTT 5 messages)}``; 404
  ``ResourceNotFoundException`` when nothing is retained on the topic.
  Action ``iot:GetRetainedMessage`` on ``topic/{topic}``.
* ``GET /retainedMessage?maxResults=&nextToken=`` (``ListRetainedMessages``):
  ``{"retainedTopics": [{"topic", "payloadSize", "qos",
  "lastModifiedTime"}], "nextToken"?}``, topics in lexical order,
  ``maxResults`` 1..200 (model). Action ``iot:ListRetainedMessages`` on
  ``*``.
* ``DELETE /connections/{clientId}?cleanSession=&preventWillMessage=``
  (``DeleteConnection``): closes the client's connection with lifecycle
  ``disconnectReason`` ``API_INITIATED_DISCONNECT``; the will is published
  unless ``preventWillMessage=true``; ``cleanSession=true`` also discards a
  persistent session. 404 ``ResourceNotFoundException`` when the client is
  not connected. Action ``iot:DeleteConnection`` on ``client/{clientId}``.

Actions and resources: AWS IoT developer guide, "AWS IoT Core policy
actions" and "AWS IoT Core action resources". Requests are SigV4-signed
for service ``iotdata`` like ``Publish``; errors are AWS's
``{"message", "traceId"}`` with ``x-amzn-ErrorType``.

Percent-decoding, here for every iot-data route (``Publish`` included, in
``server.py``): a URI label (topic, client id) or a query value the
operation defines whose bytes are not UTF-8 is a 400
``InvalidRequestException`` ("... is not UTF-8 after percent-decoding"),
never text with U+FFFD in place of the bytes (:func:`unquote_label`,
:func:`query_params`).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote

from aiohttp import web

from iotnotify_emulator.credentials import Credential, CredentialStore
from iotnotify_emulator.sigv4 import SignatureError, prefetch_signer, verify_header_signature

if TYPE_CHECKING:
    from iotnotify_emulator.broker import Broker
    from iotnotify_emulator.server import EmulatorConfig

__all__ = [
    "PUBLISH_QUERY",
    "DataApi",
    "NotUtf8",
    "iot_data_error",
    "not_utf8_error",
    "parse_query",
    "query_params",
    "unquote_label",
]

_SERVICE: Final = "iotdata"
_RETAINED_PREFIX: Final = "/retainedMessage/"
_CONNECTIONS_PREFIX: Final = "/connections/"
_MAX_RESULTS: Final = 200
#: The query parameters of iot-data ``Publish`` (botocore's iot-data model,
#: ``Publish`` input members with ``"location": "querystring"``; the API
#: reference's request syntax, docs.aws.amazon.com/iot/latest/apireference/
#: API_iotdata_Publish.html). Its other fields are headers
#: (``x-amz-mqtt5-user-properties``, ``x-amz-mqtt5-payload-format-indicator``,
#: ``x-amz-mqtt5-correlation-data``: ``session5.properties_from_http``).
PUBLISH_QUERY: Final = ("qos", "retain", "contentType", "responseTopic", "messageExpiry")
_LIST_RETAINED_QUERY: Final = ("maxResults", "nextToken")
_DELETE_CONNECTION_QUERY: Final = ("cleanSession", "preventWillMessage")


class NotUtf8(ValueError):
    """A label or query value whose percent-decoded bytes are not UTF-8; ``what`` names it."""

    def __init__(self, what: str) -> None:
        super().__init__(_not_utf8_message(what))
        self.what = what


def _not_utf8_message(what: str) -> str:
    """The message of the 400 for ``what`` (``topic``, ``contentType``, ...) not being UTF-8."""
    return f"{what} is not UTF-8 after percent-decoding"


def unquote_label(raw: str) -> str | None:
    """The percent-decoded URI label (a topic, a client id), or None when the
    decoded bytes are not UTF-8 (``/topics/a%FFb``).

    ``urllib.parse.unquote`` would put U+FFFD in their place, so such a request
    would publish to (or authorise, or look up) a topic nobody named. The
    callers answer None with 400 ``InvalidRequestException``, "The request is
    not valid", the error botocore's ``iot-data`` model lists for these
    operations and the one the emulator gives any other invalid topic; AWS
    documents nothing more specific for undecodable labels.
    """
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        return None


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """The query as received, in order: names and values percent-decoded,
    without '+'-to-space (SigV4 encodes a space as %20 and a plus as %2B, so a
    bare '+' is a plus). For the SigV4 canonical query and :func:`query_params`.

    Bytes that are not UTF-8 are kept as lone surrogates (``surrogateescape``),
    not replaced by U+FFFD: the canonical query (``sigv4._quote_part``) then
    encodes them back to the bytes the client signed (with U+FFFD a correctly
    signed ``contentType=%FF`` failed as "signature does not match"), and
    :func:`query_params` tells them from text.
    """
    pairs: list[tuple[str, str]] = []
    for part in raw_query.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append(
                (unquote(key, errors="surrogateescape"), unquote(value, errors="surrogateescape"))
            )
    return pairs


def query_params(query: Sequence[tuple[str, str]], names: Collection[str]) -> dict[str, str]:
    """The values of the query parameters ``names`` that an operation defines.

    * A parameter given twice counts with its first value: Smithy's HTTP
      binding rules (``httpQuery`` trait, which botocore's rest-json models
      follow) say servers SHOULD use the first encountered value for a member
      that is not a list (smithy.io/2.0/spec/http-bindings.html#httpquery-trait).
    * Parameters the operation does not define are ignored: nothing in the
      model binds them and AWS documents no error for them (they are still
      part of what SigV4 signs).
    * A value of one of ``names`` whose bytes are not UTF-8 raises
      :class:`NotUtf8`: the model's values are strings, and the API reference
      calls ``contentType`` and ``responseTopic`` "A UTF-8 encoded string".
      Callers answer 400 ``InvalidRequestException``, as for a label
      (:func:`unquote_label`).
    """
    found: dict[str, str] = {}
    for key, value in query:
        if key in names and key not in found:
            if not _is_utf8(value):
                raise NotUtf8(key)
            found[key] = value
    return found


def _is_utf8(text: str) -> bool:
    # parse_query's surrogateescape leaves a lone surrogate for each byte that
    # was not UTF-8; nothing else puts one there.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def not_utf8_error(what: str, trace_id: str) -> web.Response:
    """The 400 ``InvalidRequestException`` for ``what`` (``topic``, ``clientId``,
    a query parameter) not being UTF-8 after percent-decoding."""
    return iot_data_error(400, "InvalidRequestException", _not_utf8_message(what), trace_id)


def iot_data_error(status: int, code: str, message: str, trace_id: str) -> web.Response:
    """An iot-data error as AWS answers it: ``{"message", "traceId"}`` with
    ``x-amzn-ErrorType: code`` (every iot-data route, ``Publish`` included)."""
    return web.json_response(
        {"message": message, "traceId": trace_id},
        status=status,
        headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": trace_id},
    )


def _flag(params: dict[str, str], name: str) -> bool | None:
    """A boolean query parameter; None when it is neither true nor false."""
    value = params.get(name, "false").lower()
    return {"true": True, "false": False}.get(value)


class DataApi:
    """The three handlers; :meth:`register` adds their routes to the emulator's app."""

    def __init__(self, broker: Broker, credentials: CredentialStore, config: EmulatorConfig):
        self.broker = broker
        self.credentials = credentials
        self.config = config

    def register(self, app: web.Application) -> None:
        app.router.add_get("/retainedMessage", self.list_retained)
        app.router.add_get(_RETAINED_PREFIX + "{topic:.+}", self.get_retained)
        app.router.add_delete(_CONNECTIONS_PREFIX + "{client_id:.+}", self.delete_connection)

    async def _caller(
        self, request: web.Request, trace_id: str
    ) -> tuple[Credential, list[tuple[str, str]]] | web.Response:
        raw_path, _, raw_query = request.raw_path.partition("?")
        query = parse_query(raw_query)
        await prefetch_signer(self.credentials, headers=request.headers)
        try:
            credential = verify_header_signature(
                method=request.method,
                raw_path=raw_path,
                query=query,
                headers=request.headers,
                body=await request.read(),
                store=self.credentials,
                service=_SERVICE,
                region=self.config.region,
                max_skew=self.config.header_signature_max_skew,
            )
        except SignatureError as exc:
            self.broker.refuse(f"iot-data request refused: {exc.reason}", remote=request.remote)
            return iot_data_error(401, "UnauthorizedException", exc.reason, trace_id)
        return credential, query

    def _denied(
        self,
        request: web.Request,
        credential: Credential,
        action: str,
        kind: str,
        name: str,
        trace_id: str,
    ) -> web.Response | None:
        source_ip = request.remote
        if kind == "*":
            decision = self.broker.authorize_resource(credential, action, "*", source_ip=source_ip)
        else:
            decision = self.broker.authorize(credential, action, kind, name, source_ip=source_ip)
        if decision.allowed:
            return None
        return iot_data_error(403, "ForbiddenException", f"{action}: {decision.reason}", trace_id)

    async def get_retained(self, request: web.Request) -> web.Response:
        trace_id = str(uuid.uuid4())
        caller = await self._caller(request, trace_id)
        if isinstance(caller, web.Response):
            return caller
        credential, _ = caller
        topic = unquote_label(request.raw_path.partition("?")[0][len(_RETAINED_PREFIX) :])
        if topic is None:
            return not_utf8_error("topic", trace_id)
        denied = self._denied(
            request, credential, "iot:GetRetainedMessage", "topic", topic, trace_id
        )
        if denied is not None:
            return denied
        message = self.broker.retained_message(topic)
        if message is None:
            return iot_data_error(
                404, "ResourceNotFoundException", f"No retained message on {topic}", trace_id
            )
        body: dict[str, object] = {
            "topic": topic,
            "payload": base64.b64encode(message.payload).decode("ascii"),
            "qos": message.qos,
            "lastModifiedTime": self.broker.retained_modified.get(topic, 0),
        }
        properties = message.properties
        if properties is not None and properties.user_properties:
            # botocore model: a blob holding the JSON array of one-key objects
            # (``[{"deviceName": "alpha"}]``), as Publish takes them.
            pairs = [{key: value} for key, value in properties.user_properties]
            body["userProperties"] = base64.b64encode(json.dumps(pairs).encode()).decode("ascii")
        return web.json_response(body)

    async def list_retained(self, request: web.Request) -> web.Response:
        trace_id = str(uuid.uuid4())
        caller = await self._caller(request, trace_id)
        if isinstance(caller, web.Response):
            return caller
        credential, query = caller
        denied = self._denied(request, credential, "iot:ListRetainedMessages", "*", "*", trace_id)
        if denied is not None:
            return denied
        try:
            params = query_params(query, _LIST_RETAINED_QUERY)
        except NotUtf8 as exc:
            return not_utf8_error(exc.what, trace_id)
        text = params.get("maxResults", str(_MAX_RESULTS))
        if not (text.isascii() and text.isdigit() and 1 <= int(text) <= _MAX_RESULTS):
            return iot_data_error(
                400, "InvalidRequestException", f"maxResults must be 1..{_MAX_RESULTS}", trace_id
            )
        after = ""
        if "nextToken" in params:
            try:
                after = base64.urlsafe_b64decode(params["nextToken"].encode()).decode()
            except (ValueError, UnicodeDecodeError):
                return iot_data_error(400, "InvalidRequestException", "Invalid nextToken", trace_id)
        # retained_message() drops what expired (MQTT 5 Message Expiry Interval).
        live = [t for t in list(self.broker.retained) if self.broker.retained_message(t)]
        topics = sorted(t for t in live if t > after)
        page, more = topics[: int(text)], len(topics) > int(text)
        body: dict[str, object] = {
            "retainedTopics": [
                {
                    "topic": topic,
                    "payloadSize": len(self.broker.retained[topic].payload),
                    "qos": self.broker.retained[topic].qos,
                    "lastModifiedTime": self.broker.retained_modified.get(topic, 0),
                }
                for topic in page
            ]
        }
        if more:
            body["nextToken"] = base64.urlsafe_b64encode(page[-1].encode()).decode()
        return web.json_response(body)

    async def delete_connection(self, request: web.Request) -> web.Response:
        trace_id = str(uuid.uuid4())
        caller = await self._caller(request, trace_id)
        if isinstance(caller, web.Response):
            return caller
        credential, query = caller
        client_id = unquote_label(request.raw_path.partition("?")[0][len(_CONNECTIONS_PREFIX) :])
        if client_id is None:
            return not_utf8_error("clientId", trace_id)
        denied = self._denied(
            request, credential, "iot:DeleteConnection", "client", client_id, trace_id
        )
        if denied is not None:
            return denied
        try:
            params = query_params(query, _DELETE_CONNECTION_QUERY)
        except NotUtf8 as exc:
            return not_utf8_error(exc.what, trace_id)
        clean, no_will = _flag(params, "cleanSession"), _flag(params, "preventWillMessage")
        if clean is None or no_will is None:
            return iot_data_error(
                400,
                "InvalidRequestException",
                "cleanSession and preventWillMessage must be true or false",
                trace_id,
            )
        found = await self.broker.delete_connection(
            client_id, clean_session=clean, prevent_will=no_will
        )
        if not found:
            return iot_data_error(
                404, "ResourceNotFoundException", f"No connection for {client_id}", trace_id
            )
        return web.Response(status=200, headers={"x-amzn-RequestId": trace_id})
