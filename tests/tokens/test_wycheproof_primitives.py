"""Wycheproof primitive vectors against `tokenward.tokens.algorithms.verifier`, one case per tcId.

ECDSA (P1363 R||S, as JWS uses it), Ed25519, RSASSA-PKCS1-v1_5 and RSASSA-PSS: the key comes
through our JWK loader (`key_from_jwk`, with its hygiene checks), and the same public key loaded
from the group's DER goes straight to `algorithms.verifier`; both must give the vector's answer,
which also shows the JWK and the DER describe one key. valid -> True, invalid -> False.

HMAC-SHA256 is HS256 only where HS256 can be: a key of at least 32 bytes (shorter keys are
refused by `check_key_matches`, RFC 7518 §3.2) and a full 32-byte tag. A truncated tag is never
an HS256 signature, so every truncated-tag case, valid as a truncated MAC or not, must fail.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.conftest import SHARED, shared_path
from tokenward.tokens import algorithms as algs
from tokenward.tokens.b64 import b64url_encode
from tokenward.tokens.errors import KeyRejected
from tokenward.tokens.jwk import key_from_jwk

FOLDER = ("vectors", "wycheproof", "testvectors_v1")
SIGNATURE_FILES = {
    "ecdsa_secp256r1_sha256_p1363_test.json": "ES256",
    "ecdsa_secp384r1_sha384_p1363_test.json": "ES384",
    "ecdsa_secp521r1_sha512_p1363_test.json": "ES512",
    "ed25519_test.json": "EdDSA",
    "rsa_signature_2048_sha256_test.json": "RS256",
    "rsa_pss_2048_sha256_mgf1_32_test.json": "PS256",
}
HMAC_FILE = "hmac_sha256_test.json"
EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}

# `acceptable` cases: the standard allows either answer. We pin the one we give, and why.
ACCEPTABLE: dict[tuple[str, int], tuple[bool, str]] = {
    ("RS256", 8): (
        False,
        "MissingNull: DigestInfo without the NULL algorithm parameter. RFC 8017 §9.2 note 1 lets "
        "verifiers accept it; OpenSSL (and so we) rejects it, which only refuses more.",
    ),
}


def _load(name: str) -> dict[str, Any] | None:
    path = SHARED.joinpath(*FOLDER, name)
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:50] or "case"


def _signature_cases() -> list[Any]:
    cases = []
    for name, alg in SIGNATURE_FILES.items():
        data = _load(name)
        if data is None:
            cases.append(pytest.param(name, alg, {}, {}, id=f"{alg}-vectors-missing"))
            continue
        for group in data["testGroups"]:
            for case in group["tests"]:
                case_id = f"{alg}-tc{case['tcId']}-{_slug(case['comment'])}"
                cases.append(pytest.param(name, alg, group, case, id=case_id))
    return cases


def _hmac_cases() -> list[Any]:
    data = _load(HMAC_FILE)
    if data is None:
        return [pytest.param({}, {}, id="HS256-vectors-missing")]
    return [
        pytest.param(group, case, id=f"HS256-tc{case['tcId']}-{_slug(case['comment'])}")
        for group in data["testGroups"]
        for case in group["tests"]
    ]


def _group_jwk(alg: str, group: dict[str, Any]) -> dict[str, Any]:
    jwk = group.get("publicKeyJwk") or group.get("keyJwk")
    if jwk is not None:
        return dict(jwk)
    # Some ECDSA groups (edge-case keys from other sources) carry no JWK: build it from the point.
    point = bytes.fromhex(group["publicKey"]["uncompressed"])
    assert point[0] == 4
    size = (len(point) - 1) // 2
    return {
        "kty": "EC",
        "crv": EC_CURVES[alg],
        "x": b64url_encode(point[1 : 1 + size]),
        "y": b64url_encode(point[1 + size :]),
    }


def _der_public_key(group: dict[str, Any]) -> algs.PublicKey:
    public = serialization.load_der_public_key(bytes.fromhex(group["publicKeyDer"]))
    assert isinstance(
        public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
    )
    return public


def _refused_by_hygiene(group: dict[str, Any]) -> bool:
    """What our RSA hygiene must refuse, from the group's own description of its key."""
    if "keySize" not in group:
        return False
    public = group.get("publicKey", {})
    exponent = int(public.get("publicExponent", "03"), 16)
    return int(group["keySize"]) < algs.MIN_RSA_BITS or exponent < 3 or exponent % 2 == 0


@pytest.mark.parametrize(("name", "alg", "group", "case"), _signature_cases())
def test_signature_vector(name: str, alg: str, group: dict[str, Any], case: dict[str, Any]) -> None:
    shared_path(*FOLDER, name)
    algorithm = algs.algorithm(alg)
    jwk = _group_jwk(alg, group)
    public = _der_public_key(group)
    if _refused_by_hygiene(group):
        with pytest.raises(KeyRejected):
            key_from_jwk(jwk)
        with pytest.raises(KeyRejected):
            algs.verifier(algorithm, public)
        return
    loaded = key_from_jwk(jwk)
    assert loaded.alg is algorithm
    direct = algs.verifier(algorithm, public)
    message, signature = bytes.fromhex(case["msg"]), bytes.fromhex(case["sig"])
    outcomes = {loaded.verify(message, signature), direct(message, signature)}
    assert len(outcomes) == 1, "the JWK-loaded and the DER-loaded key disagree"
    (outcome,) = outcomes
    if case["result"] == "acceptable":
        expected, _reason = ACCEPTABLE[(alg, case["tcId"])]
        assert outcome is expected
    else:
        assert outcome is (case["result"] == "valid")


@pytest.mark.parametrize(("group", "case"), _hmac_cases())
def test_hmac_sha256_vector(group: dict[str, Any], case: dict[str, Any]) -> None:
    shared_path(*FOLDER, HMAC_FILE)
    hs256 = algs.algorithm("HS256")
    key, message, tag = (bytes.fromhex(case[field]) for field in ("key", "msg", "tag"))
    assert len(key) * 8 == group["keySize"]
    assert len(tag) * 8 == group["tagSize"]
    if len(key) < 32:
        with pytest.raises(KeyRejected, match="at least 256 bits"):
            algs.verifier(hs256, key)
        return
    verify = algs.verifier(hs256, key)
    if len(tag) < 32:
        assert verify(message, tag) is False  # a truncated tag is not an HS256 signature
        return
    assert verify(message, tag) is (case["result"] == "valid")


def test_acceptable_cases_are_all_documented() -> None:
    found = set()
    for name, alg in SIGNATURE_FILES.items():
        shared_path(*FOLDER, name)
        data = _load(name)
        assert data is not None
        found |= {
            (alg, case["tcId"])
            for group in data["testGroups"]
            for case in group["tests"]
            if case["result"] == "acceptable"
        }
    assert found == set(ACCEPTABLE)
