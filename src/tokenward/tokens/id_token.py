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
from tokenward.tokens.errors import NoSigningKey
from tokenward.tokens.jws import sign_compact
from tokenward.tokens.keyring import Keyring

ID_TOKEN_LIFETIME = 3600
# OIDC Core §3.1.3.6: at_hash / c_hash are the left half of the JWS alg's hash. EdDSA (Ed25519)
# uses SHA-512; ML-DSA, whose JWS algorithms (RFC 9964) name no hash, uses SHAKE256 with a 64-byte
# output, as the OpenID Connect WG settled in connect issue #1125 and as panva's oidc-token-hash
# (5.2.0, used by oidc-provider and openid-client) computes it: the left 32 bytes, base64url.
# The SDK checks with this same table (docs/post-quantum.md).
_SHAKE256_BYTES = 64


def _sha(name: str) -> Callable[[bytes], bytes]:
    return lambda data: hashlib.new(name, data).digest()


def _shake256(data: bytes) -> bytes:
    return hashlib.shake_256(data).digest(_SHAKE256_BYTES)


_HASH_OF: dict[str, Callable[[bytes], bytes]] = {
    "RS256": _sha("sha256"),
    "PS256": _sha("sha256"),
    "ES256": _sha("sha256"),
    "HS256": _sha("sha256"),
    "EdDSA": _sha("sha512"),
    "ML-DSA-44": _shake256,
    "ML-DSA-65": _shake256,
    "ML-DSA-87": _shake256,
}


def has_token_hash(alg: str) -> bool:
    """Whether OIDC defines at_hash / c_hash for ID tokens signed with `alg`."""
    return alg in _HASH_OF


def token_hash(value: str, alg: str) -> str:
    """OIDC Core §3.1.3.6 / §3.3.2.11: the left half of the alg's hash, base64url; only for
    algorithms where `has_token_hash` holds (KeyError otherwise)."""
    digest = _HASH_OF[alg](value.encode("ascii"))
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
            if alg != "HS256" and alg in _HASH_OF and ring.has_active()
        )

    def can_sign(self, alg: str) -> bool:
        ring = self._keyrings.get(alg)
        return ring is not None and ring.has_active() and alg in _HASH_OF and alg != "HS256"

    def sign(self, claims: IdTokenClaims, alg: str, access_token: str | None = None) -> str:
        ring = self._keyrings.get(alg)
        if ring is None or not ring.has_active():
            # The client registered for `alg` (id_token_signed_response_alg) and checks for it
            # (OIDC Core §3.1.3.7 step 7): an RS256 token instead would only be refused there.
            raise NoSigningKey(alg)
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
        if access_token is not None and has_token_hash(key.alg.name):
            payload["at_hash"] = token_hash(access_token, key.alg.name)
        header = {"alg": key.alg.name, "kid": key.kid, "typ": "JWT"}
        return sign_compact(header, orjson.dumps(payload), key.sign)
