"""ID token verification (OIDC Core §3.1.3.7, §3.1.3.8, §12.2) for the SDK's token sources.

The signature is checked with a key from the issuer's `jwks_uri`, and the algorithm is the one
the key is pinned to (`tokens.jws.verify_compact`): the token's `alg` header chooses nothing and
must equal the key's. Then `iss` (exactly the issuer), `aud` (our client_id among them, and `azp`
ours when there are several), `exp` and `iat` with leeway, the `nonce` we sent, and `at_hash` /
`c_hash` where present, with the hash OIDC defines for the algorithm (`tokens.id_token`): SHA-256
for RS256/PS256/ES256, SHA-512 for EdDSA, SHAKE256 for ML-DSA (docs/post-quantum.md).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping
from typing import Any

from tokenward.client._flow import Flow
from tokenward.client.discovery import ServerMetadata
from tokenward.client.errors import IdTokenError
from tokenward.client.jwks import IssuerKeys, KeySet
from tokenward.core.errors import JoseError
from tokenward.tokens.id_token import has_token_hash, token_hash
from tokenward.tokens.jwk import VerificationKey
from tokenward.tokens.jws import UnknownKeyError, parse_compact, payload_object, verify_compact

# The algorithms an ID token may be signed with here: the asymmetric ones tokenward signs with.
ID_TOKEN_ALGS = frozenset(
    {"RS256", "PS256", "ES256", "EdDSA", "ML-DSA-44", "ML-DSA-65", "ML-DSA-87"}
)
DEFAULT_LEEWAY = 60.0
MAX_AGE_OF_IAT = 24 * 3600.0  # an ID token issued longer ago than this is not a fresh sign-in


class IdTokenVerifier:
    """Checks the ID tokens one client receives from one issuer."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        *,
        keys: IssuerKeys | None = None,
        leeway: float = DEFAULT_LEEWAY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self.keys = keys or IssuerKeys()
        self._leeway = leeway
        self._clock = clock

    def __repr__(self) -> str:
        return f"IdTokenVerifier(issuer={self.issuer!r}, client_id={self.client_id!r})"

    def flow(
        self,
        id_token: str,
        metadata: ServerMetadata,
        *,
        nonce: str | None = None,
        access_token: str | None = None,
        code: str | None = None,
        previous: Mapping[str, Any] | None = None,
    ) -> Flow[dict[str, Any]]:
        """The verified claims. `nonce`: the one this sign-in sent (then required);
        `previous`: the claims of the ID token this one succeeds (a refresh, §12.2)."""
        if metadata.jwks_uri is None:
            raise IdTokenError("the issuer publishes no jwks_uri to check its ID tokens with")
        try:
            kid = parse_compact(id_token).header.get("kid")
        except JoseError as exc:
            raise IdTokenError(f"the ID token is malformed: {str(exc)[:80]}") from None
        keys = yield from self.keys.flow(metadata.jwks_uri, kid)
        try:
            claims, alg = _verified(id_token, keys)
        except UnknownKeyError:
            keys = yield from self.keys.flow(metadata.jwks_uri, kid, unknown_kid=True)
            try:
                claims, alg = _verified(id_token, keys)
            except UnknownKeyError:
                raise IdTokenError("no key of the issuer matches the ID token's kid") from None
        self._check_claims(claims, nonce=nonce, previous=previous)
        if previous is not None:
            for name in ("sub", "iss"):
                if claims.get(name) != previous.get(name):
                    raise IdTokenError(f"the refreshed ID token names another {name}")
        _check_hash(claims, "at_hash", access_token, alg)
        _check_hash(claims, "c_hash", code, alg)
        return claims

    def _check_claims(
        self,
        claims: Mapping[str, Any],
        *,
        nonce: str | None,
        previous: Mapping[str, Any] | None,
    ) -> None:
        if claims.get("iss") != self.issuer:
            raise IdTokenError("the ID token comes from another issuer")
        self._check_audience(claims)
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise IdTokenError("the ID token has no subject")
        self._check_times(claims)
        _check_nonce(claims.get("nonce"), nonce, previous)

    def _check_audience(self, claims: Mapping[str, Any]) -> None:
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.client_id not in audiences:
            raise IdTokenError("the ID token is not for this client (aud)")
        azp = claims.get("azp")
        if (len(audiences) > 1 or azp is not None) and azp != self.client_id:
            raise IdTokenError("the ID token was issued to another party (azp)")

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        exp, iat = _number(claims, "exp"), _number(claims, "iat")
        if exp is None or now > exp + self._leeway:
            raise IdTokenError("the ID token has expired")
        if iat is None or iat > now + self._leeway or iat < now - MAX_AGE_OF_IAT:
            raise IdTokenError("the ID token's iat is missing or outside the allowed window")


def _check_nonce(got: object, sent: str | None, previous: Mapping[str, Any] | None) -> None:
    """The nonce this sign-in sent must come back; a refreshed ID token (§12.2) names the same
    subject and issuer as the one it succeeds, and no other nonce."""
    if sent is not None and (
        not isinstance(got, str) or not hmac.compare_digest(got.encode(), sent.encode())
    ):
        raise IdTokenError("the ID token's nonce is not this sign-in's (replay?)")
    if previous is not None and got is not None and got != previous.get("nonce"):
        raise IdTokenError("the refreshed ID token carries another nonce")


def _verified(id_token: str, keys: KeySet) -> tuple[dict[str, Any], str]:
    def lookup(kid: str | None) -> VerificationKey | None:
        return keys.get(kid)

    try:
        jws, key = verify_compact(id_token, lookup)
        if key.alg.name not in ID_TOKEN_ALGS:
            raise IdTokenError(f"ID tokens signed with {key.alg.name} are not accepted")
        return payload_object(jws), key.alg.name
    except UnknownKeyError:
        raise
    except JoseError as exc:
        raise IdTokenError(f"the ID token does not verify: {str(exc)[:80]}") from None


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _check_hash(claims: Mapping[str, Any], name: str, value: str | None, alg: str) -> None:
    """OIDC Core §3.1.3.8 / §3.3.2.11: checked when present. A claim we cannot check (an
    algorithm with no hash defined) is refused, not skipped."""
    claimed = claims.get(name)
    if claimed is None:
        return
    if not has_token_hash(alg):
        raise IdTokenError(
            f"the ID token carries {name}, which OIDC defines no hash for with {alg}"
        )
    if value is None:
        raise IdTokenError(f"the ID token carries {name} for a value we did not receive")
    if not isinstance(claimed, str) or not hmac.compare_digest(
        claimed.encode(), token_hash(value, alg).encode()
    ):
        raise IdTokenError(f"the ID token's {name} does not match")
