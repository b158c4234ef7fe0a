"""Opaque (reference) access tokens: 256 random bits, persisted only as a SHA-256 digest.

A plain hash is enough: with 256 bits of entropy the digest cannot be inverted, and a database
leak yields no usable token. The `twa_` prefix lets secret scanners recognise a leaked token.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable

from tokenward.core.claims import AccessToken
from tokenward.core.ports import AccessTokenStore
from tokenward.tokens.grant import IssuedAccessToken, TokenGrant
from tokenward.tokens.jwt_access import DEFAULT_LIFETIME, access_token_for

PREFIX = "twa_"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


class OpaqueAccessTokenStrategy:
    format = "opaque"

    def __init__(
        self,
        store: AccessTokenStore,
        issuer: str,
        *,
        lifetime: int = DEFAULT_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._issuer = issuer
        self._lifetime = lifetime
        self._clock = clock

    async def mint(self, grant: TokenGrant) -> IssuedAccessToken:
        lifetime = self._lifetime if grant.lifetime is None else grant.lifetime
        claims = access_token_for(grant, self._issuer, int(self._clock()), lifetime)
        value = PREFIX + secrets.token_urlsafe(32)
        await self._store.save(token_digest(value), claims)
        return IssuedAccessToken(value, claims, lifetime)


class StoreOpaqueResolver:
    """Resolves opaque tokens from the store the strategy wrote to (embedded mode)."""

    def __init__(self, store: AccessTokenStore) -> None:
        self._store = store

    async def resolve(self, token: str) -> AccessToken | None:
        if not token.startswith(PREFIX):
            return None
        return await self._store.get(token_digest(token))

    def resolve_sync(self, token: str) -> AccessToken | None:
        if not token.startswith(PREFIX):
            return None
        return self._store.get_sync(token_digest(token))
