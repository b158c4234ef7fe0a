"""PKCE against the RFC 7636 Appendix B example."""

from __future__ import annotations

import pytest

from tokenward.oauth.errors import InvalidGrant, InvalidRequest
from tokenward.oauth.pkce import check_challenge, s256, verify

# RFC 7636 Appendix B
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_rfc7636_appendix_b() -> None:
    assert s256(VERIFIER) == CHALLENGE
    verify(VERIFIER, CHALLENGE)


def test_wrong_verifier_is_invalid_grant() -> None:
    with pytest.raises(InvalidGrant):
        verify("x" * 43, CHALLENGE)


@pytest.mark.parametrize("verifier", [None, "short", "a" * 129, "é" * 50, "a b" * 20])
def test_malformed_verifier(verifier: str | None) -> None:
    with pytest.raises(InvalidGrant):
        verify(verifier, CHALLENGE)


@pytest.mark.parametrize(
    ("challenge", "method"),
    [(None, None), (CHALLENGE, None), (CHALLENGE, "plain"), (CHALLENGE, "s256"), ("abc", "S256")],
)
def test_only_s256_challenges_accepted(challenge: str | None, method: str | None) -> None:
    with pytest.raises(InvalidRequest):
        check_challenge(challenge, method)


def test_valid_challenge() -> None:
    assert check_challenge(CHALLENGE, "S256") == CHALLENGE
