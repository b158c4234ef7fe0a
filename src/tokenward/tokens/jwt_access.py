"""RFC 9068 JWT access tokens, signed by the keyring's active key."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson

from tokenward.core.claims import AccessToken
from tokenward.tokens.grant import IssuedAccessToken, TokenGrant
from tokenward.tokens.jws import sign_compact
from tokenward.tokens.keyring import Keyring

DEFAULT_LIFETIME = 900  # 15 minutes


def claims_of(token: AccessToken) -> dict[str, Any]:
    """The JWT claims set of an access token, optional claims only when present."""
    claims: dict[str, Any] = dict(token.extra)
    claims.update(
        iss=token.iss,
        sub=token.sub,
        aud=token.aud[0] if len(token.aud) == 1 else list(token.aud),
        exp=token.exp,
        iat=token.iat,
        nbf=token.nbf if token.nbf is not None else token.iat,
        jti=token.jti,
        client_id=token.client_id,
    )
    if token.scopes:
        claims["scope"] = token.scope
    for name in ("sid", "auth_time", "acr"):
        value = getattr(token, name)
        if value is not None:
            claims[name] = value
    if token.cnf is not None:
        claims["cnf"] = dict(token.cnf)
    return claims


def access_token_for(grant: TokenGrant, issuer: str, now: int, lifetime: int) -> AccessToken:
    return AccessToken(
        iss=issuer,
        sub=grant.subject,
        aud=grant.audience,
        client_id=grant.client_id,
        scopes=grant.scopes,
        exp=now + lifetime,
        iat=now,
        nbf=now,
        jti=secrets.token_urlsafe(16),
        sid=grant.session_id,
        auth_time=grant.auth_time,
        acr=grant.acr,
        cnf=grant.cnf,
        extra=grant.extra,
    )


class JwtAccessTokenStrategy:
    format = "jwt"

    def __init__(
        self,
        keyring: Keyring,
        issuer: str,
        *,
        lifetime: int = DEFAULT_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if lifetime > keyring.policy.max_token_lifetime:
            raise ValueError("access token lifetime exceeds the keyring's max_token_lifetime")
        self._keyring = keyring
        self._issuer = issuer
        self._lifetime = lifetime
        self._clock = clock

    def mint_sync(self, grant: TokenGrant) -> IssuedAccessToken:
        lifetime = self._lifetime if grant.lifetime is None else grant.lifetime
        if not 0 < lifetime <= self._keyring.policy.max_token_lifetime:
            raise ValueError("access token lifetime must be positive and within the key overlap")
        claims = access_token_for(grant, self._issuer, int(self._clock()), lifetime)
        key = self._keyring.active()
        header = {"alg": key.alg.name, "typ": "at+jwt", "kid": key.kid}
        payload = orjson.dumps(claims_of(claims))
        return IssuedAccessToken(sign_compact(header, payload, key.sign), claims, lifetime)

    async def mint(self, grant: TokenGrant) -> IssuedAccessToken:
        return self.mint_sync(grant)
