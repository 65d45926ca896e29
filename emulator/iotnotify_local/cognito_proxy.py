"""``POST /cognito/``: the user-facing Cognito calls, forwarded to moto.

moto listens on loopback only (it answers any credentials, including
admin calls that create users or read every table). A browser on another
machine (``iotnotify local --host <LAN address> --allow-remote``) still has to
sign in, so the API forwards exactly the Cognito user-pool operations a
sign-in page makes, the ones Cognito serves without AWS credentials (they
carry a client id, a password or the user's own token; Amazon Cognito
Developer Guide, "Understanding API, OIDC, and managed login pages
authentication": unauthenticated and token-authorized operations), and
refuses every other ``X-Amz-Target`` with 403 before moto sees it.
"""

from __future__ import annotations

from typing import Final

import aiohttp
from aiohttp import web

from iotnotify_emulator.http_guard import ErrorRenderer

__all__ = ["COGNITO_PATH", "PUBLIC_ACTIONS", "add_cognito_proxy"]

COGNITO_PATH: Final = "/cognito/"
_TARGET_PREFIX: Final = "AWSCognitoIdentityProviderService."
PUBLIC_ACTIONS: Final = frozenset(
    {
        "InitiateAuth",
        "RespondToAuthChallenge",
        "SignUp",
        "ConfirmSignUp",
        "ResendConfirmationCode",
        "ForgotPassword",
        "ConfirmForgotPassword",
        "GetUser",
        "ChangePassword",
        "GlobalSignOut",
        "RevokeToken",
    }
)
_MAX_BODY: Final = 64 * 1024  # a sign-in request is a few hundred bytes
_TIMEOUT: Final = aiohttp.ClientTimeout(total=30)
_SESSION: Final = web.AppKey("cognito_proxy_session", aiohttp.ClientSession)


def add_cognito_proxy(app: web.Application, *, moto_url: str, error: ErrorRenderer) -> None:
    """Serve ``POST /cognito/`` on ``app``, forwarding allowed actions to ``moto_url``.

    ``error`` renders refusals (the API's one error shape).
    """

    async def startup(application: web.Application) -> None:
        application[_SESSION] = aiohttp.ClientSession(timeout=_TIMEOUT)

    async def cleanup(application: web.Application) -> None:
        await application[_SESSION].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        target = request.headers.get("X-Amz-Target", "")
        action = target.removeprefix(_TARGET_PREFIX)
        if not target.startswith(_TARGET_PREFIX) or action not in PUBLIC_ACTIONS:
            return error(
                403,
                "forbidden",
                f"only the user-facing Cognito operations are served here, not {action!r}",
            )
        if (request.content_length or 0) > _MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(
                max_size=_MAX_BODY, actual_size=request.content_length or 0
            )
        # read(n) returns what has arrived, up to n: loop to the end of the body.
        body = bytearray()
        while chunk := await request.content.read(_MAX_BODY + 1):
            body += chunk
            if len(body) > _MAX_BODY:
                raise web.HTTPRequestEntityTooLarge(max_size=_MAX_BODY, actual_size=len(body))
        headers = {
            "X-Amz-Target": target,
            "Content-Type": request.headers.get("Content-Type", "application/x-amz-json-1.1"),
        }
        session = request.app[_SESSION]
        async with session.post(moto_url, data=bytes(body), headers=headers) as answer:
            payload = await answer.read()
            headers = {
                "Content-Type": answer.headers.get("Content-Type", "application/x-amz-json-1.1"),
                "Cache-Control": "no-store",
            }
            if "x-amzn-ErrorType" in answer.headers:  # clients read the error code from it
                headers["x-amzn-ErrorType"] = answer.headers["x-amzn-ErrorType"]
            return web.Response(status=answer.status, body=payload, headers=headers)

    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    app.router.add_post(COGNITO_PATH, forward)
    app.router.add_post(COGNITO_PATH.rstrip("/"), forward)
