"""Worked examples: RFC 7515 App. A, RFC 7517 App. A and B, RFC 7638 §3.1, RFC 8037 App. A.

The values live in tests/vectors/*.json, copied from the RFC text. Each one is also checked
against itself where the RFC allows it (a signature that verifies, a private key that yields the
published public key, a certificate holding the published modulus), so a mistyped character
fails loudly instead of testing nothing.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tokenward.core.errors import JoseError
from tokenward.tokens import algorithms as algs
from tokenward.tokens.b64 import b64_to_int, b64url_decode, b64url_encode
from tokenward.tokens.errors import KeyRejected
from tokenward.tokens.jwk import (
    VerificationKey,
    key_from_jwk,
    key_set_from_jwks,
    thumbprint,
)
from tokenward.tokens.jws import payload_bytes, sign_compact, verify_compact

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi"})


def _vectors(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


RFC7515 = _vectors("rfc7515_appendix_a.json")
RFC7517 = _vectors("rfc7517_examples.json")
RFC7638_8037 = _vectors("rfc7638_rfc8037.json")


def _public(jwk: dict[str, Any], **extra: str) -> dict[str, Any]:
    return {name: value for name, value in jwk.items() if name not in PRIVATE_MEMBERS} | extra


def _only(key: VerificationKey) -> Any:
    return lambda _kid: key


def _signing_input_and_signature(compact: str) -> tuple[bytes, bytes]:
    signing_input, _, signature = compact.rpartition(".")
    return signing_input.encode("ascii"), b64url_decode(signature)


def _ec_private(jwk: dict[str, Any], curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
    private = ec.derive_private_key(b64_to_int(jwk["d"]), curve)
    numbers = private.public_key().public_numbers()
    assert (numbers.x, numbers.y) == (b64_to_int(jwk["x"]), b64_to_int(jwk["y"]))
    return private


# --- RFC 7515 Appendix A -----------------------------------------------------------------
def test_rfc7515_a1_hs256_verifies_and_signs_identically() -> None:
    example = RFC7515["A.1"]
    secret = b64url_decode(example["jwk"]["k"])
    assert len(secret) == 64
    key = key_from_jwk(example["jwk"] | {"alg": "HS256"}, allow_secret=True)
    jws, used = verify_compact(example["compact"], _only(key))
    assert used.alg.name == "HS256"
    assert jws.header == json.loads(example["header_json"])
    assert payload_bytes(jws) == RFC7515["payload_json"].encode()
    assert b64url_decode(example["compact"].split(".")[0]) == example["header_json"].encode()
    signing_input, signature = _signing_input_and_signature(example["compact"])
    assert algs.signer(algs.algorithm("HS256"), secret)(signing_input) == signature


def test_rfc7515_a1_secret_without_alg_is_refused() -> None:
    with pytest.raises(KeyRejected, match="explicit 'alg'"):
        key_from_jwk(RFC7515["A.1"]["jwk"], allow_secret=True)


def test_rfc7515_a2_rs256_verifies_and_signs_identically() -> None:
    example = RFC7515["A.2"]
    key = key_from_jwk(_public(example["jwk"]))  # no alg in the JWK: an RSA key means RS256
    jws, used = verify_compact(example["compact"], _only(key))
    assert used.alg.name == "RS256"
    assert jws.header == {"alg": "RS256"}
    assert payload_bytes(jws) == RFC7515["payload_json"].encode()
    jwk = example["jwk"]
    public_numbers = rsa.RSAPublicNumbers(b64_to_int(jwk["e"]), b64_to_int(jwk["n"]))
    p, q, d, dp, dq, qi = (b64_to_int(jwk[name]) for name in ("p", "q", "d", "dp", "dq", "qi"))
    private = rsa.RSAPrivateNumbers(
        p, q, d, dp, dq, qi, public_numbers=public_numbers
    ).private_key()
    assert private.key_size == 2048
    signing_input, signature = _signing_input_and_signature(example["compact"])
    assert algs.signer(algs.algorithm("RS256"), private)(signing_input) == signature


def test_rfc7515_a3_es256_signature_verifies_and_ours_too() -> None:
    example = RFC7515["A.3"]
    key = key_from_jwk(_public(example["jwk"]))
    jws, used = verify_compact(example["compact"], _only(key))
    assert used.alg.name == "ES256"
    assert payload_bytes(jws) == RFC7515["payload_json"].encode()
    # ECDSA is randomized: our signature differs from the RFC's but must verify the same way.
    sign = algs.signer(algs.algorithm("ES256"), _ec_private(example["jwk"], ec.SECP256R1()))
    signing_input, theirs = _signing_input_and_signature(example["compact"])
    ours = sign(signing_input)
    assert len(ours) == 64
    assert key.verify(signing_input, ours)
    assert key.verify(signing_input, theirs)


def test_rfc7515_a4_es512_verifies_and_ours_too() -> None:
    example = RFC7515["A.4"]
    key = key_from_jwk(_public(example["jwk"]))
    jws, used = verify_compact(example["compact"], _only(key))
    assert used.alg.name == "ES512"
    assert payload_bytes(jws) == example["payload"].encode()
    private = _ec_private(example["jwk"], ec.SECP521R1())
    token = sign_compact({"alg": "ES512"}, b"Payload", algs.signer(used.alg, private))
    assert token.split(".")[:2] == example["compact"].split(".")[:2]
    assert verify_compact(token, _only(key))[1] is key
    assert len(b64url_decode(token.split(".")[2])) == 132  # RFC 7518 §3.4: 2 x 66 octets


def test_rfc7515_a5_unsecured_jws_is_refused() -> None:
    example = RFC7515["A.5"]
    key = key_from_jwk(_public(RFC7515["A.3"]["jwk"]))
    with pytest.raises(JoseError, match="alg none"):
        verify_compact(example["compact"], _only(key))


@pytest.mark.parametrize(
    ("token_from", "key_from"), [("A.3", "A.4"), ("A.4", "A.3"), ("A.2", "A.3")]
)
def test_rfc7515_example_does_not_verify_under_another_examples_key(
    token_from: str, key_from: str
) -> None:
    key = key_from_jwk(_public(RFC7515[key_from]["jwk"]))
    with pytest.raises(JoseError, match="alg does not match"):
        verify_compact(RFC7515[token_from]["compact"], _only(key))


@pytest.mark.parametrize("example", ["A.1", "A.2", "A.3", "A.4"])
def test_rfc7515_example_with_another_payload_is_refused(example: str) -> None:
    jwk = RFC7515[example]["jwk"]
    key = key_from_jwk(
        _public(jwk, alg="HS256") if example == "A.1" else _public(jwk), allow_secret=True
    )
    header, _payload, signature = RFC7515[example]["compact"].split(".")
    other_payload = b64url_encode(b'{"iss":"mallory"}')
    forged = f"{header}.{other_payload}.{signature}"
    with pytest.raises(JoseError, match="signature does not verify"):
        verify_compact(forged, _only(key))


# --- RFC 7517 Appendices A.1 and B --------------------------------------------------------
def test_rfc7517_a1_set_loads_the_rsa_key_and_skips_the_encryption_key() -> None:
    keys = key_set_from_jwks(RFC7517["A.1"])
    assert set(keys) == {"2011-04-29"}
    rsa_key = keys["2011-04-29"]
    assert rsa_key.alg.name == "RS256"
    assert rsa_key.public_jwk is not None
    assert len(b64url_decode(rsa_key.public_jwk["n"])) * 8 == 2048
    assert rsa_key.public_jwk["use"] == "sig"


def test_rfc7517_a1_ec_key_is_for_encryption_so_refused_alone() -> None:
    ec_jwk = RFC7517["A.1"]["keys"][0]
    with pytest.raises(KeyRejected, match="not for signatures"):
        key_from_jwk(ec_jwk)
    as_signing_key = {name: value for name, value in ec_jwk.items() if name != "use"}
    assert key_from_jwk(as_signing_key).alg.name == "ES256"


def test_rfc7517_a1_ec_point_is_the_a2_private_keys_point() -> None:
    ec_jwk = RFC7517["A.1"]["keys"][0] | {"d": RFC7517["A.2_ec_d"]}
    private = _ec_private(ec_jwk, ec.SECP256R1())
    assert private.curve.name == "secp256r1"


def test_rfc7517_b_x5c_key_loads_as_rs256_and_matches_its_certificate() -> None:
    jwk = RFC7517["B"]["keys"][0]
    keys = key_set_from_jwks(RFC7517["B"])
    assert set(keys) == {"1b94c"}
    key = keys["1b94c"]
    assert key.alg.name == "RS256"
    certificate = x509.load_der_x509_certificate(base64.b64decode(jwk["x5c"][0]))
    public = certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == 2048
    assert public.public_numbers() == rsa.RSAPublicNumbers(
        b64_to_int(jwk["e"]), b64_to_int(jwk["n"])
    )
    assert key.public_jwk is not None
    assert "x5c" not in key.public_jwk  # we republish the bare key, never the chain


# --- RFC 7638 §3.1 ------------------------------------------------------------------------
def test_rfc7638_thumbprint_example() -> None:
    example = RFC7638_8037["rfc7638_3.1"]
    jwk = example["jwk"]
    public = rsa.RSAPublicNumbers(b64_to_int(jwk["e"]), b64_to_int(jwk["n"])).public_key()
    assert thumbprint(public) == example["thumbprint"]
    loaded = key_from_jwk(jwk)
    assert loaded.kid == "2011-04-29"
    assert loaded.public_jwk is not None
    assert loaded.public_jwk["n"] == jwk["n"]


# --- RFC 8037 Appendix A ------------------------------------------------------------------
def _ed25519_private() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(
        b64url_decode(RFC7638_8037["rfc8037_A.1_private"]["d"])
    )


def test_rfc8037_a1_private_key_yields_the_a2_public_key() -> None:
    raw = (
        _ed25519_private()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    assert b64url_encode(raw) == RFC7638_8037["rfc8037_A.2_public"]["x"]
    assert RFC7638_8037["rfc8037_A.1_private"]["x"] == RFC7638_8037["rfc8037_A.2_public"]["x"]


def test_rfc8037_a2_public_key_loads_as_eddsa() -> None:
    key = key_from_jwk(RFC7638_8037["rfc8037_A.2_public"])
    assert key.alg.name == "EdDSA"
    with pytest.raises(KeyRejected, match="private key members"):
        key_from_jwk(RFC7638_8037["rfc8037_A.1_private"])


def test_rfc8037_a3_thumbprint() -> None:
    assert thumbprint(_ed25519_private().public_key()) == RFC7638_8037["rfc8037_A.3_thumbprint"]


def test_rfc8037_a4_signing_is_byte_identical() -> None:
    example = RFC7638_8037["rfc8037_A.4"]
    sign = algs.signer(algs.algorithm("EdDSA"), _ed25519_private())
    token = sign_compact(json.loads(example["header_json"]), example["payload"].encode(), sign)
    assert token == example["compact"]


def test_rfc8037_a5_verification() -> None:
    example = RFC7638_8037["rfc8037_A.4"]
    key = key_from_jwk(RFC7638_8037["rfc8037_A.2_public"])
    jws, used = verify_compact(example["compact"], _only(key))
    assert used is key
    assert jws.header == {"alg": "EdDSA"}
    assert payload_bytes(jws) == b"Example of Ed25519 signing"
    signing_input, signature = _signing_input_and_signature(example["compact"])
    tampered = bytes([signature[0] ^ 1]) + signature[1:]
    assert key.verify(signing_input, tampered) is False
