"""DPoP proofs (RFC 9449 §4.3), verified against the request they travel with.

Pure checks, shared by the token endpoint and the resource side: `typ`, an asymmetric `alg` from
the allow-list, an embedded public `jwk` (never private), the signature, `htm`, `htu` without query
and fragment, `iat` inside a window, `jti` single use, `ath` at resources, `nonce` when required.
Nonces are stateless: an HMAC of the current time window under a subkey of the master key, so
every node that shares the master key accepts every other node's nonce.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tokenward.core.errors import InvalidDpopProof, JoseError, UseDpopNonce
from tokenward.tokens.b64 import b64url_encode
from tokenward.tokens.htu import normalise as normalise_url
from tokenward.tokens.jwk import PRIVATE_MEMBERS, VerificationKey, key_from_jwk
from tokenward.tokens.jws import MAX_COMPACT_LENGTH, parse_compact, payload_object

PROOF_ALGS = (
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "RS256",
    "PS256",
    "ML-DSA-44",
    "ML-DSA-65",
    "ML-DSA-87",
)
MAX_PROOF_LENGTH = (
    MAX_COMPACT_LENGTH  # an ML-DSA-87 proof carries a 2.6 KB key and 4.6 KB signature
)
IAT_PAST = 120.0  # how old a proof may be (and how long its jti is remembered)
IAT_FUTURE = 30.0  # clock skew a client may have
NONCE_WINDOW = 300.0
_KEY_CACHE_SIZE = 10_000
_THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
    "AKP": ("alg", "kty", "pub"),  # RFC 9964 §5
}

FirstUse = Callable[[str, float], Awaitable[bool]]


class DpopError(JoseError):
    """A proof is missing, malformed or does not match; `use_nonce` asks for a (new) nonce."""

    def __init__(self, message: str, *, use_nonce: bool = False) -> None:
        super().__init__(message)
        self.use_nonce = use_nonce


@dataclass(frozen=True, slots=True)
class DpopProof:
    jkt: str  # RFC 7638 thumbprint of the proof's key: what tokens are bound to (cnf.jkt)
    jti: str
    iat: int
    alg: str = ""  # the proof's signing algorithm, for profiles that allow only some


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise DpopError("the proof key type is not supported")
    if not all(isinstance(jwk.get(name), str) for name in members):
        raise DpopError("the proof key lacks a member its thumbprint needs")
    canonical = orjson.dumps({name: jwk[name] for name in members}, option=orjson.OPT_SORT_KEYS)
    return b64url_encode(hashlib.sha256(canonical).digest())


def access_token_hash(token: str) -> str:
    """`ath`: base64url SHA-256 of the access token's ASCII (RFC 9449 §4.2)."""
    return b64url_encode(hashlib.sha256(token.encode("ascii", "replace")).digest())


def normalised_htu(url: str) -> str:
    """`url` without query and fragment, normalised as RFC 9449 §4.3 asks (tokens/htu.py):
    what the proof's `htu` and the request's URL both go through before they are compared."""
    try:
        return normalise_url(url)
    except ValueError as exc:
        raise DpopError(f"the DPoP proof's htu or the request URL is not sound ({exc})") from None


class DpopNonces:
    def __init__(self, key: bytes, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self._clock = clock
        self._recent: dict[int, str] = {}  # window -> nonce: every token answer carries one

    def current(self) -> str:
        return self._for(int(self._clock() // NONCE_WINDOW))

    def valid(self, nonce: str) -> bool:
        window = int(self._clock() // NONCE_WINDOW)
        return any(hmac.compare_digest(nonce, self._for(w)) for w in (window, window - 1))

    def _for(self, window: int) -> str:
        nonce = self._recent.get(window)
        if nonce is None:
            mac = hmac.new(self._key, f"dpop-nonce:{window}".encode(), hashlib.sha256).digest()
            nonce = b64url_encode(mac[:18])
            if len(self._recent) >= 4:  # the current and previous windows are all that is read
                self._recent.clear()
            self._recent[window] = nonce
        return nonce


class DpopVerifier:
    def __init__(
        self,
        first_use: FirstUse,
        nonces: DpopNonces | None,
        clock: Callable[[], float] = time.time,
        algorithms: tuple[str, ...] = PROOF_ALGS,
    ) -> None:
        self._first_use = first_use
        self._nonces = nonces  # None: nonces are not required here
        self._clock = clock
        self.algorithms = algorithms
        self._keys: dict[tuple[str, ...], tuple[VerificationKey, str]] = {}

    async def verify(
        self, proof: str | None, *, method: str, url: str, access_token: str | None = None
    ) -> DpopProof:
        if not proof or len(proof) > MAX_PROOF_LENGTH:
            raise DpopError("a DPoP proof is required")
        jws = parse_compact(proof, embedded_jwk=True)
        jwk = self._header_key(jws.header)
        key, jkt = self._key(jwk, jws.header["alg"])
        if not key.verify(jws.signing_input, jws.signature):
            raise DpopError("the DPoP proof signature does not verify")
        claims = payload_object(jws)
        iat = self._check_claims(claims, method, url, access_token)
        if not await self._first_use(f"dpop:{jkt}:{claims['jti']}", iat + IAT_PAST + IAT_FUTURE):
            raise DpopError("the DPoP proof was already used (jti)")
        return DpopProof(jkt, str(claims["jti"]), iat, key.alg.name)

    def _key(self, jwk: Mapping[str, Any], alg: str) -> tuple[VerificationKey, str]:
        """Clients sign many proofs with one key: importing it (point checks, key objects) costs
        as much as a verify, so imported keys are kept, by their exact public members."""
        members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")), ())
        cache_key = (alg, *(str(jwk.get(name)) for name in members))
        found = self._keys.get(cache_key)
        if found is None:
            found = (key_from_jwk({**jwk, "alg": alg}), jwk_thumbprint(jwk))
            if len(self._keys) >= _KEY_CACHE_SIZE:
                self._keys.clear()
            self._keys[cache_key] = found
        return found

    def nonce(self) -> str | None:
        return self._nonces.current() if self._nonces else None

    def refusal(self, error: JoseError) -> InvalidDpopProof | UseDpopNonce:
        """What a proof that failed `verify` is refused with, at the token endpoint and at
        resources alike: a fresh nonce when the check asked for one and nonces are on."""
        if isinstance(error, DpopError):
            nonce = self.nonce()
            if error.use_nonce and nonce is not None:
                return UseDpopNonce(str(error), nonce)
            return InvalidDpopProof(str(error))
        return InvalidDpopProof("the DPoP proof is malformed")

    def _header_key(self, header: Mapping[str, Any]) -> dict[str, Any]:
        if header.get("typ") != "dpop+jwt":
            raise DpopError("the DPoP proof must have typ dpop+jwt")
        if header.get("alg") not in self.algorithms:
            raise DpopError("the DPoP proof algorithm is not allowed")
        jwk = header.get("jwk")
        if not isinstance(jwk, dict):
            raise DpopError("the DPoP proof must carry its public key in jwk")
        if jwk.get("alg") not in (None, header["alg"]):
            raise DpopError("the proof key's alg differs from the proof's alg")
        if jwk.get("kty") == "AKP" and jwk.get("alg") is None:  # RFC 9964 §2: alg is required
            raise DpopError("an AKP proof key must name its alg")
        if PRIVATE_MEMBERS & jwk.keys() or jwk.get("use", "sig") != "sig":  # RFC 9449 §4.2
            raise DpopError("the proof's jwk must be a public signing key")
        return jwk

    def _check_claims(
        self, claims: Mapping[str, Any], method: str, url: str, access_token: str | None
    ) -> int:
        jti, iat = claims.get("jti"), claims.get("iat")
        if not isinstance(jti, str) or not 8 <= len(jti) <= 256:
            raise DpopError("the DPoP proof needs a jti")
        if claims.get("htm") != method.upper():
            raise DpopError("the DPoP proof is for another method (htm)")
        htu = claims.get("htu")
        if not isinstance(htu, str) or normalised_htu(htu) != normalised_htu(url):
            raise DpopError("the DPoP proof is for another URL (htu)")
        now = self._clock()
        if type(iat) is not int or not now - IAT_PAST <= iat <= now + IAT_FUTURE:
            raise DpopError(
                "the DPoP proof is too old or from the future (iat)",
                use_nonce=self._nonces is not None,
            )
        if access_token is not None and not hmac.compare_digest(
            str(claims.get("ath", "")), access_token_hash(access_token)
        ):
            raise DpopError("the DPoP proof is not for this access token (ath)")
        if self._nonces is not None:
            nonce = claims.get("nonce")
            if not isinstance(nonce, str) or not self._nonces.valid(nonce):
                raise DpopError("a fresh DPoP nonce is required", use_nonce=True)
        return iat
