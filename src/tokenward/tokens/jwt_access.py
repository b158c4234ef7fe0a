"""RFC 9068 JWT access tokens, signed by the active key of the algorithm chosen for the token
(tokens/signing_choice.py: the client's, the audience's or the deployment's)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import orjson

from tokenward.core.assurance import amr_of
from tokenward.core.claims import AccessToken
from tokenward.tokens.grant import IssuedAccessToken, TokenGrant
from tokenward.tokens.jws import sign_compact
from tokenward.tokens.keyring import Keyring

DEFAULT_LIFETIME = 900  # 15 minutes


class SigningKeyrings(Protocol):
    """Which keyring signs a token (tokens/key_manager.KeyManager)."""

    def access_token_ring(self, audience: Sequence[str], client_alg: str | None) -> Keyring: ...


class _OneKeyring:
    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def access_token_ring(self, audience: Sequence[str], client_alg: str | None) -> Keyring:
        return self._keyring


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
    amr = amr_of(token.acr)
    if amr is not None:  # RFC 8176 / RFC 9068 §2.2.1: how the user authenticated
        claims["amr"] = list(amr)
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
        keyring: Keyring | SigningKeyrings,
        issuer: str,
        *,
        lifetime: int = DEFAULT_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keyrings = _OneKeyring(keyring) if isinstance(keyring, Keyring) else keyring
        self._max_lifetime = self._keyrings.access_token_ring((), None).policy.max_token_lifetime
        if lifetime > self._max_lifetime:
            raise ValueError("access token lifetime exceeds the keyring's max_token_lifetime")
        self._issuer = issuer
        self._lifetime = lifetime
        self._clock = clock

    def mint_sync(self, grant: TokenGrant) -> IssuedAccessToken:
        lifetime = self._lifetime if grant.lifetime is None else grant.lifetime
        if not 0 < lifetime <= self._max_lifetime:
            raise ValueError("access token lifetime must be positive and within the key overlap")
        claims = access_token_for(grant, self._issuer, int(self._clock()), lifetime)
        key = self._keyrings.access_token_ring(grant.audience, grant.signing_alg).active()
        header = {"alg": key.alg.name, "typ": "at+jwt", "kid": key.kid}
        payload = orjson.dumps(claims_of(claims))
        return IssuedAccessToken(sign_compact(header, payload, key.sign), claims, lifetime)

    async def mint(self, grant: TokenGrant) -> IssuedAccessToken:
        return self.mint_sync(grant)
