"""OpenID Connect ID tokens (OIDC Core §2, §3.1.3.6 at_hash), signed in the client's algorithm."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tokenward.core.assurance import amr_of
from tokenward.tokens.b64 import b64url_encode
from tokenward.tokens.jws import sign_compact
from tokenward.tokens.keyring import Keyring

ID_TOKEN_LIFETIME = 3600
# OIDC Core §3.1.3.6: the hash of the JWS alg; EdDSA (Ed25519) uses SHA-512 (OIDC errata).
# ML-DSA names no hash and OIDC defines none for it yet: its ID tokens carry no at_hash, which
# the code flow makes optional (§3.1.3.6), rather than a hash a relying party cannot check.
_HASH_OF = {
    "RS256": "sha256",
    "PS256": "sha256",
    "ES256": "sha256",
    "HS256": "sha256",
    "EdDSA": "sha512",
}


def token_hash(value: str, alg: str) -> str:
    digest = hashlib.new(_HASH_OF[alg], value.encode("ascii")).digest()
    return b64url_encode(digest[: len(digest) // 2])


@dataclass(frozen=True, slots=True)
class IdTokenClaims:
    subject: str
    client_id: str
    auth_time: int | None
    session_id: str | None = None
    nonce: str | None = None
    acr: str | None = None
    extra: Mapping[str, Any] | None = None


class IdTokenSigner:
    def __init__(
        self,
        keyrings: Mapping[str, Keyring],
        issuer: str,
        clock: Callable[[], float] = time.time,
        lifetime: int = ID_TOKEN_LIFETIME,
    ) -> None:
        self._keyrings = keyrings
        self._issuer = issuer
        self._clock = clock
        self._lifetime = lifetime

    @property
    def algorithms(self) -> list[str]:
        return sorted(
            alg
            for alg, ring in self._keyrings.items()
            if alg != "HS256"
            and (alg in _HASH_OF or alg.startswith("ML-DSA-"))
            and ring.has_active()
        )

    def sign(self, claims: IdTokenClaims, alg: str, access_token: str | None = None) -> str:
        ring = self._keyrings.get(alg)
        if ring is None or not ring.has_active():
            ring = self._keyrings["RS256"]
        key = ring.active()
        now = int(self._clock())
        payload: dict[str, Any] = dict(claims.extra or {})
        payload.update(
            iss=self._issuer,
            sub=claims.subject,
            aud=claims.client_id,
            exp=now + self._lifetime,
            iat=now,
        )
        optional = {
            "auth_time": claims.auth_time,
            "nonce": claims.nonce,
            "sid": claims.session_id,
            "acr": claims.acr,
        }
        payload.update({name: value for name, value in optional.items() if value is not None})
        amr = amr_of(claims.acr)
        if amr is not None:  # OIDC Core §2: the methods behind the acr
            payload["amr"] = list(amr)
        if access_token is not None and key.alg.name in _HASH_OF:
            payload["at_hash"] = token_hash(access_token, key.alg.name)
        header = {"alg": key.alg.name, "kid": key.kid, "typ": "JWT"}
        return sign_compact(header, orjson.dumps(payload), key.sign)
