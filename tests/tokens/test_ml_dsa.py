"""ML-DSA (FIPS 204) as JOSE (RFC 9964): known answers, AKP JWKs, and two independent judges.

jwcrypto (≥ 1.6 implements RFC 9964) verifies what we sign and signs what we verify; dilithium-py
(a pure-Python FIPS 204) checks our raw signatures, so a fault shared by `cryptography` and
jwcrypto (both on OpenSSL) would still show.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from dilithium_py.ml_dsa import ML_DSA_44, ML_DSA_65, ML_DSA_87
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws

from tokenward.core.errors import JoseError
from tokenward.tokens import algorithms as algs
from tokenward.tokens.b64 import b64url_decode, b64url_encode
from tokenward.tokens.errors import KeyRejected, KeySetRejected
from tokenward.tokens.jwk import (
    key_from_jwk,
    key_set_from_jwks,
    ml_dsa_private_key,
    private_akp_jwk,
    private_key_from_akp_jwk,
    thumbprint,
)
from tokenward.tokens.jws import MAX_COMPACT_LENGTH, parse_compact, sign_compact, verify_compact
from tokenward.tokens.keyring import KeyState, new_key, open_key, seal_key
from tokenward.tokens.sealing import KeySealer, generate_master_key

ML_DSA = ("ML-DSA-44", "ML-DSA-65", "ML-DSA-87")
PURE_PYTHON = {"ML-DSA-44": ML_DSA_44, "ML-DSA-65": ML_DSA_65, "ML-DSA-87": ML_DSA_87}
VECTORS = Path(__file__).resolve().parents[1] / "vectors"
KAT = json.loads((VECTORS / "ml_dsa_kat.json").read_text(encoding="utf-8"))["vectors"]


def managed(alg: str) -> Any:
    return new_key(algs.algorithm(alg), KeyState.ACTIVE, time.time())


def token(alg: str, key: Any, claims: dict[str, Any] | None = None) -> str:
    payload = orjson.dumps(claims or {"sub": "alice", "aud": "https://api.example"})
    return sign_compact({"alg": alg, "kid": key.kid, "typ": "at+jwt"}, payload, key.sign)


# --- FIPS 204 known answers ---------------------------------------------------------------
@pytest.mark.parametrize("vector", KAT, ids=lambda v: f"{v['alg']}-{v['count']}")
def test_known_answers_seed_to_public_key_and_signature(vector: dict[str, str]) -> None:
    alg = algs.algorithm(vector["alg"])
    private = ml_dsa_private_key(alg, bytes.fromhex(vector["xi"]))
    public = private.public_key()
    assert public.public_bytes_raw().hex() == vector["pk"]
    message, context = bytes.fromhex(vector["msg"]), bytes.fromhex(vector["ctx"])
    signature = bytes.fromhex(vector["sig"])
    public.verify(signature, message, context)  # raises InvalidSignature on a wrong answer
    module = PURE_PYTHON[vector["alg"]]
    assert module.verify(bytes.fromhex(vector["pk"]), message, signature, ctx=context)
    # The pure-Python implementation reproduces the deterministic answer byte for byte.
    _pk, secret = module.key_derive(bytes.fromhex(vector["xi"]))
    assert module.sign(secret, message, ctx=context, deterministic=True) == signature


def test_known_answers_cover_every_parameter_set() -> None:
    assert {vector["alg"] for vector in KAT} == set(ML_DSA)


# --- sizes ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("alg", "public", "signature"),
    [("ML-DSA-44", 1312, 2420), ("ML-DSA-65", 1952, 3309), ("ML-DSA-87", 2592, 4627)],
)
def test_sizes_are_fips_204_table_2(alg: str, public: int, signature: int) -> None:
    key = managed(alg)
    assert len(b64url_decode(key.verification.public_jwk["pub"])) == public
    assert len(key.sign(b"message")) == signature
    assert len(token(alg, key)) < MAX_COMPACT_LENGTH


# --- our tokens, judged by jwcrypto and dilithium-py -------------------------------------
@pytest.mark.parametrize("alg", ML_DSA)
def test_jwcrypto_verifies_our_tokens_through_our_jwk(alg: str) -> None:
    key = managed(alg)
    value = token(alg, key)
    theirs = jwcrypto_jwk.JWK(**key.verification.public_jwk)
    verified = jwcrypto_jws.JWS()
    verified.deserialize(value)
    verified.verify(theirs, alg=alg)
    assert json.loads(verified.payload)["sub"] == "alice"
    assert theirs.thumbprint() == key.kid == thumbprint(key.private.public_key())


@pytest.mark.parametrize("alg", ML_DSA)
def test_dilithium_py_verifies_our_raw_signatures(alg: str) -> None:
    key = managed(alg)
    jws = parse_compact(token(alg, key))
    public = b64url_decode(key.verification.public_jwk["pub"])
    # RFC 9964 §3: pure ML-DSA over the JWS signing input, with the empty context string.
    assert PURE_PYTHON[alg].verify(public, jws.signing_input, jws.signature, ctx=b"")
    assert not PURE_PYTHON[alg].verify(public, jws.signing_input + b"x", jws.signature)


# --- their tokens and keys, judged by us ---------------------------------------------------
@pytest.mark.parametrize("alg", ML_DSA)
def test_we_verify_jwcrypto_tokens_and_load_its_jwks(alg: str) -> None:
    theirs = jwcrypto_jwk.JWK.generate(kty="AKP", alg=alg, kid="jwcrypto-1")
    signed = jwcrypto_jws.JWS(b'{"sub":"bob"}')
    signed.add_signature(theirs, alg=alg, protected={"alg": alg, "kid": "jwcrypto-1"})
    compact = signed.serialize(compact=True)
    keys = key_set_from_jwks({"keys": [theirs.export_public(as_dict=True)]})
    jws, key = verify_compact(compact, keys.get)
    assert key.alg.name == alg
    assert jws.payload == b'{"sub":"bob"}'
    # Their private JWK (the seed) opens to the same key in ours, and signs what they verify.
    private_alg, private = private_key_from_akp_jwk(theirs.export_private(as_dict=True))
    assert private_alg.name == alg
    ours = sign_compact({"alg": alg, "kid": "jwcrypto-1"}, b'{"sub":"carol"}', private.sign)
    check = jwcrypto_jws.JWS()
    check.deserialize(ours)
    check.verify(theirs, alg=alg)
    assert b64url_decode(theirs.export_private(as_dict=True)["priv"]) == (
        private.private_bytes_raw()
    )


@pytest.mark.parametrize("alg", ML_DSA)
def test_our_private_jwk_is_the_seed_and_jwcrypto_reads_it(alg: str) -> None:
    key = managed(alg)
    jwk = private_akp_jwk(key.private, key.kid)
    assert len(b64url_decode(jwk["priv"])) == 32
    theirs = jwcrypto_jwk.JWK(**jwk)
    assert theirs.thumbprint() == key.kid
    signed = jwcrypto_jws.JWS(b"{}")
    signed.add_signature(theirs, alg=alg, protected={"alg": alg, "kid": key.kid})
    verify_compact(signed.serialize(compact=True), lambda kid: key.verification)


# --- strict parsing ---------------------------------------------------------------------------
def public(alg: str = "ML-DSA-65") -> dict[str, Any]:
    return dict(managed(alg).verification.public_jwk)


def test_an_akp_key_without_alg_is_refused() -> None:
    jwk = public()
    del jwk["alg"]
    with pytest.raises(KeyRejected, match="alg"):
        key_from_jwk(jwk)


@pytest.mark.parametrize(
    ("claimed", "actual"), [("ML-DSA-44", "ML-DSA-65"), ("ML-DSA-87", "ML-DSA-44")]
)
def test_pub_of_another_parameter_set_is_refused(claimed: str, actual: str) -> None:
    jwk = public(actual)
    jwk["alg"] = claimed
    with pytest.raises(KeyRejected, match="bytes"):
        key_from_jwk(jwk)


@pytest.mark.parametrize("cut", [1, -1])
def test_pub_of_a_wrong_size_is_refused(cut: int) -> None:
    jwk = public()
    raw = b64url_decode(jwk["pub"])
    jwk["pub"] = b64url_encode(raw[:-1] if cut > 0 else raw + b"\0")
    with pytest.raises(KeyRejected, match="1952 bytes"):
        key_from_jwk(jwk)


def test_an_akp_key_under_a_classical_alg_is_refused() -> None:
    jwk = public()
    jwk["alg"] = "ES256"
    with pytest.raises(KeyRejected, match="kty"):
        key_from_jwk(jwk)


@pytest.mark.parametrize("member", ["priv", "d"])
def test_private_members_never_enter_a_public_set(member: str) -> None:
    jwk = public()
    jwk[member] = b64url_encode(b"\1" * 32)
    with pytest.raises(KeyRejected, match="private"):
        key_from_jwk(jwk)


def test_a_private_akp_jwk_holds_the_seed_and_nothing_else() -> None:
    key = managed("ML-DSA-44")
    jwk = private_akp_jwk(key.private, key.kid)
    with pytest.raises(KeyRejected, match="seed"):
        private_key_from_akp_jwk({**jwk, "priv": b64url_encode(b"\1" * 64)})  # an expanded key
    with pytest.raises(KeyRejected, match="only private member"):
        private_key_from_akp_jwk({**jwk, "d": jwk["priv"]})
    other = managed("ML-DSA-44")
    with pytest.raises(KeyRejected, match="not the public key"):
        private_key_from_akp_jwk({**jwk, "pub": other.verification.public_jwk["pub"]})


def test_a_key_set_of_mixed_families_still_refuses_duplicates() -> None:
    jwk = public()
    with pytest.raises(KeySetRejected, match="duplicate"):
        key_set_from_jwks({"keys": [jwk, dict(jwk)]})


# --- the algorithm stays pinned to the key --------------------------------------------------
def test_a_token_cannot_choose_another_parameter_set() -> None:
    key = managed("ML-DSA-65")
    forged = sign_compact({"alg": "ML-DSA-44", "kid": key.kid}, b"{}", key.sign)
    with pytest.raises(JoseError, match="alg does not match"):
        verify_compact(forged, lambda kid: key.verification)


def test_a_signature_of_the_wrong_length_fails_before_the_primitive() -> None:
    key = managed("ML-DSA-44")
    assert not key.verification.verify(b"m", key.sign(b"m")[:-1])
    assert not key.verification.verify(b"m", b"\0" * 2420)


def test_ml_dsa_keys_do_not_verify_for_other_algorithms() -> None:
    key = managed("ML-DSA-65")
    with pytest.raises(KeyRejected):
        algs.verifier(algs.algorithm("ML-DSA-87"), key.private.public_key())
    with pytest.raises(KeyRejected):
        algs.verifier(algs.algorithm("EdDSA"), key.private.public_key())


# --- sealed at rest as the seed --------------------------------------------------------------
@pytest.mark.parametrize("alg", ML_DSA)
def test_keys_are_sealed_as_their_32_byte_seed(alg: str) -> None:
    sealer = KeySealer(generate_master_key())
    key = managed(alg)
    stored = seal_key(key, sealer)
    assert sealer.open(stored.sealed_private, f"{key.kid}/{alg}") == key.private.private_bytes_raw()
    assert len(key.private.private_bytes_raw()) == 32
    reopened = open_key(stored, sealer)
    verify_compact(token(alg, reopened), lambda kid: key.verification)
