"""Tokens and validators for the benchmarks, built with the same code the product uses."""

from __future__ import annotations

import time

from tokenward.guard import KeyringKeySource, RevocationMirror, Validator
from tokenward.tokens.grant import TokenGrant
from tokenward.tokens.jwt_access import JwtAccessTokenStrategy
from tokenward.tokens.keyring import KeyPolicy, Keyring

ISSUER = "https://issuer.bench"
AUDIENCE = "https://api.bench"
SCOPES = frozenset({"read", "write"})


def keyring(alg: str) -> Keyring:
    ring = Keyring(KeyPolicy(algorithm=alg), time.time)
    ring.ensure_ready()
    return ring


def mint_many(ring: Keyring, count: int) -> list[str]:
    strategy = JwtAccessTokenStrategy(ring, ISSUER)
    return [
        strategy.mint_sync(
            TokenGrant(f"user-{i}", "bench-client", (AUDIENCE,), SCOPES, session_id=f"sid-{i}")
        ).value
        for i in range(count)
    ]


def validator(
    ring: Keyring, mirror: RevocationMirror | None = None, cache: int = 100_000
) -> Validator:
    return Validator(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=KeyringKeySource(ring),
        revocations=mirror or RevocationMirror(),
        cache_size=cache,
    )
