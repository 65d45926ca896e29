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
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=self._audience,
                issuer=self._issuer,
                leeway=_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "token_use"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"invalid token: {exc}") from exc
        if claims.get("token_use") != "id":
            raise TokenRejected("an ID token is required (token_use must be 'id')")
        return dict(claims)
