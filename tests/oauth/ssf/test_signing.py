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
    signer = TokenSigner({"ES256": ring}, "ES256")
    assert parse_compact(signer.sign({"iss": "x"}, "logout+jwt")).header["alg"] == "ES256"
    with pytest.raises(NoSigningKey) as refused:
        signer.sign({"iss": "x"}, "logout+jwt", "ML-DSA-65")
    assert refused.value.alg == "ML-DSA-65"
    idle = TokenSigner(
        {"ES256": ring, "PS256": Keyring(KeyPolicy(algorithm="PS256"), time.time)}, "ES256"
    )
    with pytest.raises(NoSigningKey):
        idle.sign({"iss": "x"}, "logout+jwt", "PS256")  # a keyring without an active key
