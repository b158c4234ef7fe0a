"""Key hygiene the JOSE libraries skip: weak, inconsistent or non-signing keys never load."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import shared_path
from tokenward.tokens import algorithms as algs
from tokenward.tokens.b64 import b64_to_int, b64url_decode, b64url_encode, int_to_b64
from tokenward.tokens.errors import KeyRejected, KeySetRejected
from tokenward.tokens.jwk import (
    MAX_KEYS_IN_SET,
    key_from_jwk,
    key_set_from_jwks,
    public_jwk,
    secret_jwk,
)
from tokenward.tokens.roca import is_roca_vulnerable

JwkFactory = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def rsa_2048() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def ec_jwk(p256: ec.EllipticCurvePrivateKey) -> JwkFactory:
    def make(kid: str = "ec-1", **members: Any) -> dict[str, Any]:
        jwk: dict[str, Any] = dict(public_jwk(p256.public_key(), kid, "ES256"))
        jwk.update(members)
        return {name: value for name, value in jwk.items() if value is not None}

    return make


def _rsa_jwk(n: int, e: int, **members: Any) -> dict[str, Any]:
    return {"kty": "RSA", "n": int_to_b64(n), "e": int_to_b64(e), "alg": "RS256"} | members


# --- RSA ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [1024, 2047])
def test_rsa_below_2048_bits_is_refused(bits: int) -> None:
    public = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()
    assert public.key_size == bits
    with pytest.raises(KeyRejected, match="at least 2048 bits"):
        key_from_jwk(_rsa_jwk(public.public_numbers().n, 65537))
    with pytest.raises(KeyRejected, match="at least 2048 bits"):
        algs.verifier(algs.algorithm("PS256"), public)


def test_rsa_2048_bits_loads(rsa_2048: rsa.RSAPrivateKey) -> None:
    numbers = rsa_2048.public_key().public_numbers()
    assert key_from_jwk(_rsa_jwk(numbers.n, numbers.e)).alg.name == "RS256"
    assert key_from_jwk(_rsa_jwk(numbers.n, 3)).alg.name == "RS256"  # small odd e is fine


@pytest.mark.parametrize("exponent", [1, 2, 4, 65536, 0])
def test_rsa_exponent_one_or_even_is_refused(rsa_2048: rsa.RSAPrivateKey, exponent: int) -> None:
    n = rsa_2048.public_key().public_numbers().n
    with pytest.raises(KeyRejected):
        key_from_jwk(_rsa_jwk(n, exponent))


class _PermissiveRsaKey:
    """An RSA key as a laxer backend might hand it over, to test our own check in isolation."""

    def __init__(self, n: int, e: int) -> None:
        self.key_size = n.bit_length()
        self._numbers = rsa.RSAPublicNumbers(e, n)

    def public_numbers(self) -> rsa.RSAPublicNumbers:
        return self._numbers


@pytest.mark.parametrize("exponent", [1, 2, 65536])
def test_check_rsa_public_refuses_bad_exponents_itself(
    rsa_2048: rsa.RSAPrivateKey, exponent: int
) -> None:
    n = rsa_2048.public_key().public_numbers().n
    with pytest.raises(KeyRejected, match="odd and at least 3"):
        algs.check_rsa_public(_PermissiveRsaKey(n, exponent))  # type: ignore[arg-type]


def _wycheproof_roca_jwk() -> dict[str, Any]:
    path = shared_path("vectors", "wycheproof", "testvectors_v1", "json_web_key_test.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    (group,) = [g for g in data["testGroups"] if g["comment"] == "jws_rsa_roca_key"]
    (jwk,) = group["public"]["keys"]
    assert isinstance(jwk, dict)
    return jwk


def test_roca_modulus_is_refused() -> None:
    jwk = _wycheproof_roca_jwk()
    assert b64_to_int(jwk["n"]).bit_length() >= 2048  # refused for ROCA, not for its size
    assert is_roca_vulnerable(b64_to_int(jwk["n"]))
    with pytest.raises(KeyRejected, match="ROCA"):
        key_from_jwk(jwk)
    with pytest.raises(KeyRejected, match="ROCA"):
        key_set_from_jwks({"keys": [jwk]})


def test_ordinary_moduli_are_not_flagged_as_roca(rsa_2048: rsa.RSAPrivateKey) -> None:
    assert not is_roca_vulnerable(rsa_2048.public_key().public_numbers().n)
    assert not is_roca_vulnerable(b64_to_int(_wycheproof_roca_jwk()["n"]) + 2)


# --- HMAC ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("alg", "size", "accepted"),
    [
        ("HS256", 31, False),
        ("HS256", 32, True),
        ("HS384", 47, False),
        ("HS384", 48, True),
        ("HS512", 63, False),
        ("HS512", 64, True),
        ("HS256", 1, False),
    ],
)
def test_hmac_secret_shorter_than_the_hash_is_refused(alg: str, size: int, accepted: bool) -> None:
    jwk = secret_jwk(b"k" * size, "s-1", alg)
    if accepted:
        assert key_from_jwk(jwk, allow_secret=True).alg.name == alg
    else:
        with pytest.raises(KeyRejected, match="at least"):
            key_from_jwk(jwk, allow_secret=True)


def test_empty_hmac_secret_is_refused() -> None:
    with pytest.raises(KeyRejected):
        key_from_jwk({"kty": "oct", "alg": "HS256", "k": ""}, allow_secret=True)


def test_secret_is_refused_unless_allowed() -> None:
    jwk = secret_jwk(b"k" * 32, "s-1", "HS256")
    with pytest.raises(KeyRejected, match="symmetric"):
        key_from_jwk(jwk)
    with pytest.raises(KeyRejected, match="symmetric"):
        key_set_from_jwks({"keys": [jwk]})


# --- EC and OKP ---------------------------------------------------------------------------
def test_ec_point_off_the_curve_is_refused(ec_jwk: JwkFactory) -> None:
    jwk = ec_jwk()
    off = int_to_b64((b64_to_int(jwk["y"]) + 1) % 2**256, 32)
    with pytest.raises(KeyRejected, match="not on the curve"):
        key_from_jwk(jwk | {"y": off})
    with pytest.raises(KeyRejected, match="not on the curve"):
        key_from_jwk(jwk | {"x": int_to_b64(0, 32), "y": int_to_b64(0, 32)})


@pytest.mark.parametrize("member", ["x", "y"])
def test_short_or_long_ec_coordinates_are_refused(ec_jwk: JwkFactory, member: str) -> None:
    jwk = ec_jwk()
    raw = b64url_decode(jwk[member])
    for wrong in (raw[1:], b"\x00" + raw, b""):
        with pytest.raises(KeyRejected):
            key_from_jwk(jwk | {member: b64url_encode(wrong)})


def test_short_coordinate_is_refused_even_when_the_value_fits() -> None:
    """A coordinate with a leading zero byte must still be sent at full size (RFC 7518 §6.2.1.2)."""
    public = next(
        key
        for key in (ec.derive_private_key(d, ec.SECP256R1()).public_key() for d in range(1, 5000))
        if key.public_numbers().x < 2**248  # about 1 key in 256; deterministic via d
    )
    jwk = public_jwk(public, "k", "ES256")
    assert key_from_jwk(jwk).alg.name == "ES256"
    short = b64url_encode(public.public_numbers().x.to_bytes(31, "big"))
    with pytest.raises(KeyRejected, match="full size"):
        key_from_jwk(jwk | {"x": short})


def test_ed25519_key_of_the_wrong_length_is_refused() -> None:
    for size in (31, 33, 0):
        with pytest.raises(KeyRejected):
            key_from_jwk({"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(b"\x01" * size)})


# --- kty / alg / crv agreement ------------------------------------------------------------
@pytest.mark.parametrize(
    "change",
    [
        {"alg": "RS256"},  # RSA alg on an EC key
        {"alg": "EdDSA"},
        {"alg": "HS256"},
        {"alg": "ES384"},  # right kty, wrong curve
        {"alg": "ES512"},
        {"crv": "P-384"},  # crv disagrees with ES256
        {"crv": "secp256k1"},
        {"kty": "RSA"},
        {"kty": "OKP"},
        {"kty": "oct"},
        {"alg": "none"},
        {"alg": "ES256K"},
        {"alg": "es256"},
        {"alg": 256},
        {"kty": None},
        {"kty": 1},
        {"kid": 7},
    ],
    ids=str,
)
def test_kty_alg_crv_disagreement_is_refused(ec_jwk: JwkFactory, change: dict[str, Any]) -> None:
    jwk = ec_jwk() | change
    jwk = {name: value for name, value in jwk.items() if value is not None}
    with pytest.raises(KeyRejected):
        key_from_jwk(jwk, allow_secret=True)


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "OKP", "crv": "Ed448", "x": b64url_encode(b"\x01" * 57)},
        {"kty": "OKP", "crv": "X25519", "x": b64url_encode(b"\x01" * 32)},
        {"kty": "OKP", "crv": "Ed25519", "alg": "ES256", "x": b64url_encode(b"\x01" * 32)},
        {"kty": "EC", "crv": "P-192", "x": "AA", "y": "AA"},
        {"kty": "oct", "k": b64url_encode(b"k" * 64)},  # a secret must name its alg
        {"kty": "oct", "alg": "A256GCM", "k": b64url_encode(b"k" * 32)},
    ],
    ids=lambda jwk: f"{jwk['kty']}-{jwk.get('crv', jwk.get('alg'))}",
)
def test_keys_without_an_unambiguous_signing_algorithm_are_refused(jwk: dict[str, Any]) -> None:
    with pytest.raises(KeyRejected):
        key_from_jwk(jwk, allow_secret=True)


# --- use / key_ops ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "members",
    [
        {"use": "enc"},
        {"use": "SIG"},
        {"key_ops": ["encrypt"]},
        {"key_ops": ["sign"]},
        {"key_ops": []},
        {"key_ops": ["wrapKey", "deriveKey"]},
    ],
    ids=str,
)
def test_non_signing_keys_are_refused_alone_and_skipped_in_a_set(
    ec_jwk: JwkFactory, members: dict[str, Any]
) -> None:
    with pytest.raises(KeyRejected, match="not for signatures"):
        key_from_jwk(ec_jwk(use=None) | members)
    other = ec_jwk(kid="ec-2")
    keys = key_set_from_jwks({"keys": [ec_jwk(use=None) | members, other]})
    assert set(keys) == {"ec-2"}


def test_key_ops_must_be_an_array(ec_jwk: JwkFactory) -> None:
    with pytest.raises(KeyRejected, match="key_ops must be an array"):
        key_from_jwk(ec_jwk(key_ops="verify"))


@pytest.mark.parametrize(
    "members", [{"use": "sig"}, {"key_ops": ["verify"]}, {"key_ops": ["sign", "verify"]}], ids=str
)
def test_signing_keys_load(ec_jwk: JwkFactory, members: dict[str, Any]) -> None:
    assert key_from_jwk(ec_jwk(use=None) | members).alg.name == "ES256"


# --- key sets -----------------------------------------------------------------------------
def test_duplicate_kid_is_refused(ec_jwk: JwkFactory) -> None:
    with pytest.raises(KeySetRejected, match="duplicate kid"):
        key_set_from_jwks({"keys": [ec_jwk(kid="same"), ec_jwk(kid="same")]})


def test_two_keys_without_kid_are_refused(ec_jwk: JwkFactory) -> None:
    with pytest.raises(KeySetRejected, match="duplicate kid"):
        key_set_from_jwks({"keys": [ec_jwk(kid=None), ec_jwk(kid=None)]})


def test_mixed_symmetric_and_asymmetric_set_is_refused(ec_jwk: JwkFactory) -> None:
    secret = secret_jwk(b"k" * 32, "s-1", "HS256")
    with pytest.raises(KeySetRejected, match="mixes"):
        key_set_from_jwks({"keys": [secret, ec_jwk()]}, allow_secret=True)
    # The rule looks at the whole set, encryption-only keys included.
    with pytest.raises(KeySetRejected, match="mixes"):
        key_set_from_jwks({"keys": [secret | {"use": "enc"}, ec_jwk()]}, allow_secret=True)


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "oth", "k"])
def test_private_members_in_a_public_set_are_refused(ec_jwk: JwkFactory, member: str) -> None:
    jwk = ec_jwk(**{member: "AQAB"})
    with pytest.raises(KeyRejected, match="private key members"):
        key_from_jwk(jwk, allow_secret=True)
    with pytest.raises(KeyRejected, match="private key members"):
        key_set_from_jwks({"keys": [jwk]}, allow_secret=True)


def test_more_than_64_keys_are_refused(ec_jwk: JwkFactory) -> None:
    assert MAX_KEYS_IN_SET == 64
    keys = [ec_jwk(kid=f"k{index}") for index in range(MAX_KEYS_IN_SET + 1)]
    with pytest.raises(KeySetRejected, match="at most 64"):
        key_set_from_jwks({"keys": keys})
    assert len(key_set_from_jwks({"keys": keys[:MAX_KEYS_IN_SET]})) == MAX_KEYS_IN_SET


@pytest.mark.parametrize("document", [[], {}, {"keys": {}}, {"keys": "x"}, None, "keys"], ids=str)
def test_a_jwks_must_be_an_object_with_a_keys_array(document: Any) -> None:
    with pytest.raises(KeySetRejected):
        key_set_from_jwks(document)


def test_one_bad_signing_key_refuses_the_whole_set(ec_jwk: JwkFactory) -> None:
    bad = ec_jwk(kid="bad", alg="ES384")
    with pytest.raises(KeyRejected):
        key_set_from_jwks({"keys": [ec_jwk(), bad]})


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA", "HS256"])
def test_a_key_of_another_type_is_refused_for_signing_and_verifying(
    alg: str, p256: ec.EllipticCurvePrivateKey, rsa_2048: rsa.RSAPrivateKey
) -> None:
    """A KeyRejected, not an assert that `python -O` would strip."""
    wrong: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = rsa_2048 if alg != "RS256" else p256
    with pytest.raises(KeyRejected):
        algs.signer(algs.algorithm(alg), wrong)
    with pytest.raises(KeyRejected):
        algs.verifier(algs.algorithm(alg), wrong.public_key())
    with pytest.raises(KeyRejected):
        algs.signer(algs.algorithm(alg), b"s" * 64 if alg != "HS256" else p256)
