"""Logout tokens and SETs are signed in the algorithm asked for, or not at all (issue 17)."""

from __future__ import annotations

import time

import pytest

from tokenward.oauth.ssf.signing import TokenSigner
from tokenward.tokens.errors import NoSigningKey
from tokenward.tokens.jws import parse_compact
from tokenward.tokens.keyring import KeyPolicy, Keyring


def test_an_algorithm_without_a_key_signs_nothing_rather_than_another() -> None:
    ring = Keyring(KeyPolicy(algorithm="ES256"), time.time)
    ring.ensure_ready()
    signer = TokenSigner({"ES256": ring}, lambda: "ES256")
    assert parse_compact(signer.sign({"iss": "x"}, "logout+jwt")).header["alg"] == "ES256"
    with pytest.raises(NoSigningKey) as refused:
        signer.sign({"iss": "x"}, "logout+jwt", "ML-DSA-65")
    assert refused.value.alg == "ML-DSA-65"
    idle = TokenSigner(
        {"ES256": ring, "PS256": Keyring(KeyPolicy(algorithm="PS256"), time.time)},
        lambda: "ES256",
    )
    with pytest.raises(NoSigningKey):
        idle.sign({"iss": "x"}, "logout+jwt", "PS256")  # a keyring without an active key


def test_sets_follow_the_deployment_algorithm_as_it_moves() -> None:
    """`keys migrate` moves the deployment's algorithm at run time; the signer asks each time."""
    es, ps = (Keyring(KeyPolicy(algorithm=alg), time.time) for alg in ("ES256", "PS256"))
    es.ensure_ready()
    ps.ensure_ready()
    current = ["ES256"]
    signer = TokenSigner({"ES256": es, "PS256": ps}, lambda: current[0])
    assert parse_compact(signer.sign({"iss": "x"}, "secevent+jwt")).header["alg"] == "ES256"
    current[0] = "PS256"
    es.retire()  # the old keyring, once nothing signs with it
    header = parse_compact(signer.sign({"iss": "x"}, "secevent+jwt")).header
    assert (header["alg"], header["kid"]) == ("PS256", ps.active().kid)
