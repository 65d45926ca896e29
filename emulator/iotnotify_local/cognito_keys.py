"""A fresh signing key for the local Cognito pool, replacing moto's bundled one.

moto signs the tokens of every user pool with one RSA key that ships inside
the moto wheel (``moto/cognitoidp/resources/jwks-private.json.gz``) and
serves its public half at ``/{pool}/.well-known/jwks.json``. Anyone who has
moto installed can therefore sign an ID token for any ``sub`` that a JWKS
verifier accepts. ``iotnotify local`` runs moto in its own process, so at
every start it gives its pool a key pair generated there and then (never
written anywhere) and makes moto's JWKS endpoint publish only that key's
public half. On AWS, Cognito keeps each pool's private keys to itself; this
restores that property offline.

This module reads moto's internals (moto 5.x: ``CognitoIdpUserPool.json_web_key``
is the signing key used by ``create_jwt``; ``CognitoIdpJsonWebKeyResponse.json_web_key``
is the JWKS body served for every pool), so a moto upgrade that moves them
breaks here and nowhere else.
"""

from __future__ import annotations

import json
from typing import Any, Final

__all__ = ["KEY_ID", "publish_signing_key", "use_fresh_signing_key"]

# moto's ``create_jwt`` writes ``"kid": "dummy"`` into every token header; the
# published key must carry the same id for a verifier to pick it.
KEY_ID: Final = "dummy"
_RSA_BITS: Final = 2048  # what Cognito uses for RS256 pool keys


def use_fresh_signing_key(*, account: str, region: str, pool_id: str) -> dict[str, Any]:
    """Sign ``pool_id``'s tokens with a new RSA key and publish only its public half.

    Returns the published JWKS (``{"keys": [public JWK]}``). moto serves one
    JWKS document for all pools of the process; the local stack has exactly
    one pool, so that document becomes this pool's. Raises ``KeyError`` if
    the pool does not exist in moto's backend for ``account``/``region``.
    """
    from joserfc import jwk
    from moto.cognitoidp.models import cognitoidp_backends

    pool = cognitoidp_backends[account][region].user_pools[pool_id]
    key = jwk.RSAKey.generate_key(
        _RSA_BITS, parameters={"kid": KEY_ID, "use": "sig", "alg": "RS256"}, private=True
    )
    pool.json_web_key = key
    return publish_signing_key(account=account, region=region, pool_id=pool_id)


def publish_signing_key(*, account: str, region: str, pool_id: str) -> dict[str, Any]:
    """Make moto's JWKS endpoint publish the public half of ``pool_id``'s current key.

    For a pool restored from a data directory (``iotnotify local
    --data-dir``), whose key was made by :func:`use_fresh_signing_key` in an
    earlier run and kept with the pool, so ID and refresh tokens issued
    before a restart stay valid, as they do on AWS. Returns the JWKS.
    """
    from moto.cognitoidp.models import cognitoidp_backends
    from moto.cognitoidp.responses import CognitoIdpJsonWebKeyResponse

    key = cognitoidp_backends[account][region].user_pools[pool_id].json_web_key
    jwks = {"keys": [key.as_dict(private=False)]}
    CognitoIdpJsonWebKeyResponse.json_web_key = json.dumps(jwks).encode("utf-8")
    return jwks
