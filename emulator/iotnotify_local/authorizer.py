"""A Cognito authorizer for the local API, as API Gateway does it on AWS.

Verifies an ID token's RS256 signature against the pool's JWKS (fetched from
the pool's ``/.well-known/jwks.json``, as on AWS), its issuer, audience
(the app client), ``token_use == "id"`` and expiry, then hands the claims
to the handler as ``requestContext.authorizer.claims``. PyJWT does the
cryptography; this module only decides what to check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import jwt

__all__ = ["CognitoAuthorizer", "TokenRejected"]

_LEEWAY_SECONDS: Final = 5


class TokenRejected(Exception):
    """The ID token is missing, forged, expired or meant for someone else."""


class CognitoAuthorizer:
    def __init__(self, *, jwks_url: str, issuer: str, audience: str) -> None:
        self._issuer = issuer
        self._audience = audience
        # PyJWKClient caches keys and refetches on an unknown ``kid`` (rotation).
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=3600)

    def claims(self, authorization: str | None) -> Mapping[str, Any]:
        """Verified claims of the token in an ``Authorization`` header value."""
        if not authorization:
            raise TokenRejected("missing Authorization header")
        token = authorization.strip()
        if token.lower().startswith("bearer "):
            token = token[7:].strip()
        # A JWT is base64url and dots. Header bytes that are not ASCII reach
        # here as lone surrogates (aiohttp decodes with surrogateescape) and
        # would make PyJWT's encode() raise instead of rejecting the token.
        if not token.isascii():
            raise TokenRejected("invalid token: not ASCII")
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            # The audience is checked below, after token_use: a Cognito access
            # token has no aud (its client is client_id), and "missing aud"
            # would not tell its sender to send the ID token instead.
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                issuer=self._issuer,
                leeway=_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "sub", "token_use"], "verify_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"invalid token: {exc}") from exc
        if claims.get("token_use") != "id":
            what = "an access token" if claims.get("token_use") == "access" else "not an ID token"
            raise TokenRejected(
                f"an ID token is required (token_use 'id'); this is {what}: send the IdToken "
                "of the sign-in, not its AccessToken"
            )
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self._audience not in audiences:
            raise TokenRejected("invalid token: it was issued to another app client (aud)")
        return dict(claims)
