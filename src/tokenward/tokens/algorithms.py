"""JWS algorithms (RFC 7518 §3, RFC 8037 §3.1, RFC 9964 ML-DSA) over `cryptography`, each pinned
to one key type.

Why not the JOSE library on this path: `make bench` (P1) shows PyJWT's decode spending a large
share over the bare `cryptography` verify on parsing and dispatch; binding the verify primitive to
the key once, at load time, keeps the cold path close to the primitive. The same Wycheproof
and RFC vectors run against this module in tests/tokens/.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from tokenward.tokens.errors import KeyRejected
from tokenward.tokens.roca import is_roca_vulnerable

Verify = Callable[[bytes, bytes], bool]
Sign = Callable[[bytes], bytes]
MlDsaPublicKey = mldsa.MLDSA44PublicKey | mldsa.MLDSA65PublicKey | mldsa.MLDSA87PublicKey
MlDsaPrivateKey = mldsa.MLDSA44PrivateKey | mldsa.MLDSA65PrivateKey | mldsa.MLDSA87PrivateKey
PublicKey = (
    ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey | MlDsaPublicKey | bytes
)
PrivateKey = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | MlDsaPrivateKey
    | bytes
)

MIN_RSA_BITS = 2048


@dataclass(frozen=True, slots=True)
class Curve:
    name: str
    coordinate_bytes: int
    order: int
    factory: Callable[[], ec.EllipticCurve]


CURVES = {
    "P-256": Curve(
        "P-256",
        32,
        0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
        ec.SECP256R1,
    ),
    "P-384": Curve(
        "P-384",
        48,
        0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973,
        ec.SECP384R1,
    ),
    "P-521": Curve(
        "P-521",
        66,
        0x01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409,
        ec.SECP521R1,
    ),
}


@dataclass(frozen=True, slots=True)
class MlDsaParameters:
    """One FIPS 204 parameter set: its key classes and exact encoded sizes (FIPS 204 Table 2)."""

    name: str
    public_bytes: int
    signature_bytes: int
    private_class: type[MlDsaPrivateKey]
    public_class: type[MlDsaPublicKey]


ML_DSA = {
    "ML-DSA-44": MlDsaParameters(
        "ML-DSA-44", 1312, 2420, mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey
    ),
    "ML-DSA-65": MlDsaParameters(
        "ML-DSA-65", 1952, 3309, mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey
    ),
    "ML-DSA-87": MlDsaParameters(
        "ML-DSA-87", 2592, 4627, mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey
    ),
}
ML_DSA_SEED_BYTES = 32  # RFC 9964 §2: the private key is the 32-byte seed ξ, nothing else


@dataclass(frozen=True, slots=True)
class Algorithm:
    """One JWS `alg`: the only key type, curve and hash it may be used with."""

    name: str
    kty: str
    family: str  # ecdsa | pkcs1 | pss | eddsa | hmac | mldsa
    hash_name: str | None = None
    curve: str | None = None

    @property
    def symmetric(self) -> bool:
        return self.kty == "oct"

    @property
    def hash_bytes(self) -> int:
        return hashlib.new(self.hash_name).digest_size if self.hash_name else 0


ALGORITHMS: dict[str, Algorithm] = {
    "ES256": Algorithm("ES256", "EC", "ecdsa", "sha256", "P-256"),
    "ES384": Algorithm("ES384", "EC", "ecdsa", "sha384", "P-384"),
    "ES512": Algorithm("ES512", "EC", "ecdsa", "sha512", "P-521"),
    "RS256": Algorithm("RS256", "RSA", "pkcs1", "sha256"),
    "RS384": Algorithm("RS384", "RSA", "pkcs1", "sha384"),
    "RS512": Algorithm("RS512", "RSA", "pkcs1", "sha512"),
    "PS256": Algorithm("PS256", "RSA", "pss", "sha256"),
    "PS384": Algorithm("PS384", "RSA", "pss", "sha384"),
    "PS512": Algorithm("PS512", "RSA", "pss", "sha512"),
    "EdDSA": Algorithm("EdDSA", "OKP", "eddsa", None, "Ed25519"),
    "HS256": Algorithm("HS256", "oct", "hmac", "sha256"),
    "HS384": Algorithm("HS384", "oct", "hmac", "sha384"),
    "HS512": Algorithm("HS512", "oct", "hmac", "sha512"),
    # RFC 9964 §3: pure ML-DSA, empty context string; the parameter set is the algorithm.
    "ML-DSA-44": Algorithm("ML-DSA-44", "AKP", "mldsa"),
    "ML-DSA-65": Algorithm("ML-DSA-65", "AKP", "mldsa"),
    "ML-DSA-87": Algorithm("ML-DSA-87", "AKP", "mldsa"),
}

# Algorithms the keyring generates; the rest are accepted from remote key sets only.
GENERATED = ("ES256", "EdDSA", "RS256", "PS256", "HS256", "ML-DSA-44", "ML-DSA-65", "ML-DSA-87")
# Asymmetric algorithms we verify in client assertions, DPoP proofs and remote key sets.
ASYMMETRIC = tuple(name for name, alg in ALGORITHMS.items() if not alg.symmetric)

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def algorithm(name: str) -> Algorithm:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise KeyRejected(f"unsupported algorithm {name!r}") from None


def _hash_name(alg: Algorithm) -> str:
    if alg.hash_name is None:  # EdDSA: only reached if a family's branch is wrong
        raise KeyRejected(f"{alg.name} names no hash")
    return alg.hash_name


def _hash(alg: Algorithm) -> hashes.HashAlgorithm:
    return _HASHES[_hash_name(alg)]()


def curve(alg: Algorithm) -> Curve:
    """The curve an EC algorithm is pinned to."""
    if alg.curve is None:
        raise KeyRejected(f"{alg.name} names no curve")
    return CURVES[alg.curve]


def ml_dsa(alg: Algorithm) -> MlDsaParameters:
    """The FIPS 204 parameter set an ML-DSA algorithm is pinned to."""
    try:
        return ML_DSA[alg.name]
    except KeyError:
        raise KeyRejected(f"{alg.name} is not an ML-DSA algorithm") from None


def verifier(alg: Algorithm, key: PublicKey) -> Verify:
    """A verify function bound to one key and one algorithm; checked against the key's type."""
    check_key_matches(alg, key)
    family = alg.family
    if family == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
        return _ecdsa_verifier(key, alg)
    if family in ("pkcs1", "pss") and isinstance(key, rsa.RSAPublicKey):
        return _rsa_verifier(key, alg)
    if family == "eddsa" and isinstance(key, ed25519.Ed25519PublicKey):
        return _eddsa_verifier(key)
    if family == "hmac" and isinstance(key, bytes):
        return _hmac_verifier(key, alg)
    if family == "mldsa" and isinstance(key, ml_dsa(alg).public_class):
        return _mldsa_verifier(key, alg)
    raise KeyRejected(f"{alg.name} cannot verify with this key")


def signer(alg: Algorithm, key: PrivateKey) -> Sign:
    family = alg.family
    if family == "ecdsa" and isinstance(key, ec.EllipticCurvePrivateKey):
        check_key_matches(alg, key.public_key())
        return _ecdsa_signer(key, alg)
    if family in ("pkcs1", "pss") and isinstance(key, rsa.RSAPrivateKey):
        check_key_matches(alg, key.public_key())
        pad = _rsa_padding(alg)
        digest = _hash(alg)
        return lambda message: key.sign(message, pad, digest)
    if family == "eddsa" and isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign
    if family == "hmac" and isinstance(key, bytes):
        check_key_matches(alg, key)
        name = _hash_name(alg)
        return lambda message: hmac.digest(key, message, name)
    if family == "mldsa" and isinstance(key, ml_dsa(alg).private_class):
        return key.sign  # RFC 9964 §3: the empty context string, cryptography's default
    raise KeyRejected(f"{alg.name} cannot sign with this key")


def check_key_matches(alg: Algorithm, key: PublicKey) -> None:
    """Refuse a key whose type, curve or size does not fit the algorithm it is pinned to."""
    if alg.family == "ecdsa":
        if not isinstance(key, ec.EllipticCurvePublicKey) or alg.curve is None:
            raise KeyRejected(f"{alg.name} needs an EC key")
        if key.curve.name != CURVES[alg.curve].factory().name:
            raise KeyRejected(f"{alg.name} needs curve {alg.curve}")
    elif alg.family in ("pkcs1", "pss"):
        if not isinstance(key, rsa.RSAPublicKey):
            raise KeyRejected(f"{alg.name} needs an RSA key")
        check_rsa_public(key)
    elif alg.family in ("eddsa", "mldsa"):
        _check_fixed_key(alg, key)
    elif not isinstance(key, bytes):
        raise KeyRejected(f"{alg.name} needs a symmetric secret")
    elif len(key) < alg.hash_bytes:  # RFC 7518 §3.2: at least the hash output size
        raise KeyRejected(f"{alg.name} needs a secret of at least {alg.hash_bytes * 8} bits")


def _check_fixed_key(alg: Algorithm, key: PublicKey) -> None:
    """Ed25519 and ML-DSA: the key's class is its parameter set."""
    expected = ed25519.Ed25519PublicKey if alg.family == "eddsa" else ml_dsa(alg).public_class
    if not isinstance(key, expected):
        raise KeyRejected(f"{alg.name} needs an {alg.curve or alg.name} key")


def check_rsa_public(key: rsa.RSAPublicKey) -> None:
    numbers = key.public_numbers()
    if key.key_size < MIN_RSA_BITS:
        raise KeyRejected(f"RSA keys must have at least {MIN_RSA_BITS} bits")
    if numbers.e < 3 or numbers.e % 2 == 0:
        raise KeyRejected("RSA public exponent must be odd and at least 3")
    if is_roca_vulnerable(numbers.n):
        raise KeyRejected("RSA modulus has the ROCA fingerprint (CVE-2017-15361)")


def _ecdsa_verifier(key: ec.EllipticCurvePublicKey, alg: Algorithm) -> Verify:
    pinned = curve(alg)
    size, order = pinned.coordinate_bytes, pinned.order
    signature_algorithm = ec.ECDSA(_hash(alg))
    key_verify = key.verify

    def verify(message: bytes, signature: bytes) -> bool:
        # RFC 7518 §3.4: exactly R || S, each the coordinate size; 0 < r, s < n (CVE-2022-21449).
        if len(signature) != 2 * size:
            return False
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        if not (0 < r < order and 0 < s < order):
            return False
        try:
            key_verify(encode_dss_signature(r, s), message, signature_algorithm)
        except InvalidSignature:
            return False
        return True

    return verify


def _ecdsa_signer(key: ec.EllipticCurvePrivateKey, alg: Algorithm) -> Sign:
    size = curve(alg).coordinate_bytes
    signature_algorithm = ec.ECDSA(_hash(alg))

    def sign(message: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(message, signature_algorithm))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    return sign


def _rsa_padding(alg: Algorithm) -> padding.AsymmetricPadding:
    if alg.family == "pss":  # RFC 7518 §3.5: MGF1 with the same hash, salt = hash size
        digest = _hash(alg)
        return padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
    return padding.PKCS1v15()


def _rsa_verifier(key: rsa.RSAPublicKey, alg: Algorithm) -> Verify:
    pad = _rsa_padding(alg)
    digest = _hash(alg)
    size = (key.key_size + 7) // 8
    key_verify = key.verify

    def verify(message: bytes, signature: bytes) -> bool:
        if len(signature) != size:
            return False
        try:
            key_verify(signature, message, pad, digest)
        except InvalidSignature:
            return False
        return True

    return verify


def _eddsa_verifier(key: ed25519.Ed25519PublicKey) -> Verify:
    key_verify = key.verify

    def verify(message: bytes, signature: bytes) -> bool:
        if len(signature) != 64:
            return False
        try:
            key_verify(signature, message)
        except InvalidSignature:
            return False
        return True

    return verify


def _mldsa_verifier(key: MlDsaPublicKey, alg: Algorithm) -> Verify:
    size = ml_dsa(alg).signature_bytes
    key_verify = key.verify

    def verify(message: bytes, signature: bytes) -> bool:
        if len(signature) != size:  # FIPS 204 sigDecode: one fixed length per parameter set
            return False
        try:
            key_verify(signature, message)
        except InvalidSignature:
            return False
        return True

    return verify


def _hmac_verifier(secret: bytes, alg: Algorithm) -> Verify:
    name = _hash_name(alg)
    compare = hmac.compare_digest

    def verify(message: bytes, signature: bytes) -> bool:
        return compare(hmac.digest(secret, message, name), signature)

    return verify
