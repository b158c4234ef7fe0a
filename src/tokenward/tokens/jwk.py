"""JSON Web Keys (RFC 7517, RFC 7518 §6, RFC 8037 §2, RFC 9964 `AKP`) with the key hygiene a JOSE
library skips.

Every key is pinned to exactly one algorithm; a key set refuses duplicate `kid`s and never mixes
symmetric with asymmetric keys (Wycheproof json_web_key_test: MixedKeySet, DuplicateKid).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, rsa

from tokenward.tokens import algorithms as algs
from tokenward.tokens.b64 import Base64Error, b64url_decode, b64url_encode, int_to_b64
from tokenward.tokens.errors import KeyRejected, KeySetRejected

# The algorithm a key implies when its JWK names none (only where that is unambiguous or safe).
_DEFAULT_ALG = {
    ("EC", "P-256"): "ES256",
    ("EC", "P-384"): "ES384",
    ("EC", "P-521"): "ES512",
    ("OKP", "Ed25519"): "EdDSA",
    ("RSA", None): "RS256",
}
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"})
# RFC 9964 §2: an AKP key carries `pub`, and `priv` (the seed) only in private form.
_AKP_PUBLIC_MEMBERS = frozenset({"kty", "alg", "pub", "kid", "use", "key_ops", "x5c", "x5t"})
MAX_KEYS_IN_SET = 64


@dataclass(frozen=True, slots=True, eq=False)
class VerificationKey:
    """A key that verifies exactly one JWS algorithm."""

    kid: str | None
    alg: algs.Algorithm
    verify: algs.Verify = field(repr=False)
    public_jwk: Mapping[str, str] | None = field(default=None, repr=False)  # None for secrets


def key_from_jwk(jwk: Mapping[str, Any], *, allow_secret: bool = False) -> VerificationKey:
    """Load a verification key from a JWK, refusing anything inconsistent or weak."""
    kty = _member(jwk, "kty")
    alg = _pinned_algorithm(jwk, kty)
    _check_use(jwk)
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise KeyRejected("kid must be a string")
    if alg.symmetric:
        if not allow_secret:
            raise KeyRejected("symmetric keys are not accepted from a public key set")
        secret = _decode(jwk, "k")
        return VerificationKey(kid, alg, algs.verifier(alg, secret))
    if PRIVATE_MEMBERS & jwk.keys():
        raise KeyRejected("a public key set must not hold private key members")
    if kty == "AKP":
        _check_akp_members(jwk, private=False)
    public = _public_key(jwk, kty, alg)
    return VerificationKey(kid, alg, algs.verifier(alg, public), public_jwk(public, kid, alg.name))


def key_set_from_jwks(
    document: Any, *, allow_secret: bool = False
) -> dict[str | None, VerificationKey]:
    """Load a JWKS. Keys not meant for signatures are skipped; an unsafe set is refused whole."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise KeySetRejected("a JWKS is an object with a 'keys' array")
    entries = document["keys"]
    if len(entries) > MAX_KEYS_IN_SET:
        raise KeySetRejected(f"a JWKS may hold at most {MAX_KEYS_IN_SET} keys")
    kids = [entry.get("kid") for entry in entries if isinstance(entry, Mapping)]
    if len(kids) != len(set(kids)):
        raise KeySetRejected("duplicate kid in key set")
    if len({entry.get("kty") == "oct" for entry in entries if isinstance(entry, Mapping)}) > 1:
        raise KeySetRejected("key set mixes symmetric and asymmetric keys")
    keys: dict[str | None, VerificationKey] = {}
    for entry in entries:
        if not isinstance(entry, Mapping) or not _for_signatures(entry):
            continue
        key = key_from_jwk(entry, allow_secret=allow_secret)
        keys[key.kid] = key
    return keys


def public_jwk(key: algs.PublicKey, kid: str | None, alg: str) -> dict[str, str]:
    """The public JWK of a key, with `kid`, `alg` and `use: sig`."""
    jwk = _public_members(key)
    if kid is not None:
        jwk["kid"] = kid
    jwk["alg"] = alg
    jwk["use"] = "sig"
    return jwk


def secret_jwk(secret: bytes, kid: str, alg: str) -> dict[str, str]:
    return {"kty": "oct", "k": b64url_encode(secret), "kid": kid, "alg": alg, "use": "sig"}


def thumbprint(key: algs.PublicKey) -> str:
    """RFC 7638 JWK SHA-256 thumbprint: the required members, sorted, no whitespace."""
    return jwk_thumbprint(_public_members(key))


_REQUIRED_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
    "AKP": ("alg", "kty", "pub"),  # RFC 9964 §5: the alg names the parameter set
}


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 thumbprint of a public JWK (its other members, kid/alg/use, do not count)."""
    names = _REQUIRED_MEMBERS.get(str(jwk.get("kty")))
    if names is None:
        raise KeyRejected("symmetric keys have no public form")
    members = {name: _member(jwk, name) for name in names}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return b64url_encode(hashlib.sha256(canonical.encode("ascii")).digest())


def _public_members(key: algs.PublicKey) -> dict[str, str]:
    if isinstance(key, ec.EllipticCurvePublicKey):
        curve = next(c for c in algs.CURVES.values() if c.factory().name == key.curve.name)
        numbers = key.public_numbers()
        size = curve.coordinate_bytes
        return {
            "crv": curve.name,
            "kty": "EC",
            "x": int_to_b64(numbers.x, size),
            "y": int_to_b64(numbers.y, size),
        }
    if isinstance(key, rsa.RSAPublicKey):
        rsa_numbers = key.public_numbers()
        return {"e": int_to_b64(rsa_numbers.e), "kty": "RSA", "n": int_to_b64(rsa_numbers.n)}
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(raw)}
    if isinstance(key, _ML_DSA_PUBLIC):
        # RFC 9964 §5: the thumbprint covers alg, kty and pub (the alg names the parameter set).
        return {
            "alg": _ml_dsa_name(key),
            "kty": "AKP",
            "pub": b64url_encode(key.public_bytes_raw()),
        }
    raise KeyRejected("symmetric keys have no public form")


_ML_DSA_PUBLIC = (mldsa.MLDSA44PublicKey, mldsa.MLDSA65PublicKey, mldsa.MLDSA87PublicKey)


def _ml_dsa_name(key: algs.MlDsaPublicKey) -> str:
    for params in algs.ML_DSA.values():
        if isinstance(key, params.public_class):
            return params.name
    raise KeyRejected("not an ML-DSA key")


def ml_dsa_public_key(alg: algs.Algorithm, raw: bytes) -> algs.MlDsaPublicKey:
    """An ML-DSA public key of exactly its parameter set's size (RFC 9964 §2, FIPS 204 Table 2)."""
    params = algs.ml_dsa(alg)
    if len(raw) != params.public_bytes:
        raise KeyRejected(f"{alg.name} public keys are {params.public_bytes} bytes")
    try:
        return params.public_class.from_public_bytes(raw)
    except ValueError:
        raise KeyRejected(f"{alg.name} public key does not decode") from None


def ml_dsa_private_key(alg: algs.Algorithm, seed: bytes) -> algs.MlDsaPrivateKey:
    """An ML-DSA private key from its 32-byte seed, the only private form RFC 9964 allows."""
    params = algs.ml_dsa(alg)
    if len(seed) != algs.ML_DSA_SEED_BYTES:
        raise KeyRejected(f"{alg.name} private keys are a {algs.ML_DSA_SEED_BYTES}-byte seed")
    return params.private_class.from_seed_bytes(seed)


def private_key_from_akp_jwk(jwk: Mapping[str, Any]) -> tuple[algs.Algorithm, algs.MlDsaPrivateKey]:
    """A private RFC 9964 JWK: `priv` is the seed, and `pub` must be the key the seed derives."""
    if _member(jwk, "kty") != "AKP":
        raise KeyRejected("not an AKP key")
    _check_akp_members(jwk, private=True)
    alg = _pinned_algorithm(jwk, "AKP")
    private = ml_dsa_private_key(alg, _decode(jwk, "priv"))
    if private.public_key().public_bytes_raw() != _decode(jwk, "pub"):
        raise KeyRejected("AKP 'pub' is not the public key of 'priv'")
    return alg, private


def private_akp_jwk(key: algs.MlDsaPrivateKey, kid: str | None) -> dict[str, str]:
    jwk = public_jwk(key.public_key(), kid, _ml_dsa_name(key.public_key()))
    jwk["priv"] = b64url_encode(key.private_bytes_raw())
    return jwk


def _check_akp_members(jwk: Mapping[str, Any], *, private: bool) -> None:
    allowed = _AKP_PUBLIC_MEMBERS | {"priv"} if private else _AKP_PUBLIC_MEMBERS
    extra = jwk.keys() - allowed
    if extra & (PRIVATE_MEMBERS | {"seed", "sk"}):
        raise KeyRejected("an AKP key's only private member is 'priv' (the seed)")


def _member(jwk: Mapping[str, Any], name: str) -> str:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise KeyRejected(f"JWK member {name!r} is missing or not a string")
    return value


def _decode(jwk: Mapping[str, Any], name: str) -> bytes:
    try:
        return b64url_decode(_member(jwk, name))
    except Base64Error:
        raise KeyRejected(f"JWK member {name!r} is not base64url") from None


def _pinned_algorithm(jwk: Mapping[str, Any], kty: str) -> algs.Algorithm:
    name = jwk.get("alg")
    crv = jwk.get("crv") if kty in ("EC", "OKP") else None
    if name is None and kty == "AKP":  # RFC 9964 §2: the algorithm names the parameter set
        raise KeyRejected("an AKP key must name its 'alg'")
    if name is None:
        name = _DEFAULT_ALG.get((kty, crv))
        if name is None:
            raise KeyRejected(f"a {kty} key needs an explicit 'alg'")
    if not isinstance(name, str):
        raise KeyRejected("alg must be a string")
    alg = algs.algorithm(name)
    if alg.kty != kty:
        raise KeyRejected(f"{alg.name} does not use kty {kty}")
    if alg.curve is not None and crv != alg.curve:
        raise KeyRejected(f"{alg.name} needs crv {alg.curve}")
    return alg


def _for_signatures(jwk: Mapping[str, Any]) -> bool:
    use, ops = jwk.get("use"), jwk.get("key_ops")
    if use is not None and use != "sig":
        return False
    return not (isinstance(ops, list) and "verify" not in ops)


def _check_use(jwk: Mapping[str, Any]) -> None:
    if not _for_signatures(jwk):
        raise KeyRejected("key is not for signatures (use/key_ops)")
    ops = jwk.get("key_ops")
    if ops is not None and not isinstance(ops, list):
        raise KeyRejected("key_ops must be an array")


def _public_key(jwk: Mapping[str, Any], kty: str, alg: algs.Algorithm) -> algs.PublicKey:
    if kty == "EC":
        curve = algs.curve(alg)
        x, y = _decode(jwk, "x"), _decode(jwk, "y")
        if len(x) != curve.coordinate_bytes or len(y) != curve.coordinate_bytes:
            raise KeyRejected(
                "EC coordinates must be the full size of the curve"
            )  # RFC 7518 §6.2.1.2
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve.factory()
        )
        try:
            return numbers.public_key()
        except ValueError:
            raise KeyRejected("EC point is not on the curve") from None
    if kty == "RSA":
        n, e = _decode(jwk, "n"), _decode(jwk, "e")
        try:
            public = rsa.RSAPublicNumbers(int.from_bytes(e, "big"), int.from_bytes(n, "big"))
            return public.public_key()
        except ValueError:
            raise KeyRejected("RSA key numbers are invalid") from None
    if kty == "AKP":
        return ml_dsa_public_key(alg, _decode(jwk, "pub"))
    x = _decode(jwk, "x")
    if len(x) != 32:
        raise KeyRejected("Ed25519 public keys are 32 bytes")
    return ed25519.Ed25519PublicKey.from_public_bytes(x)
