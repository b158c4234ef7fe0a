"""PKCE (RFC 7636), S256 only: `plain` would hand the verifier to whoever sees the request."""

from __future__ import annotations

import hashlib
import hmac
import re

from tokenward.oauth.errors import InvalidGrant, InvalidRequest
from tokenward.tokens.b64 import b64url_encode

# RFC 7636 §4.1: 43-128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# §4.2: S256 challenge = BASE64URL(SHA256(verifier)): exactly 43 characters
_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")


def s256(verifier: str) -> str:
    return b64url_encode(hashlib.sha256(verifier.encode("ascii")).digest())


def check_challenge(challenge: str | None, method: str | None) -> str:
    """The challenge of an authorization request; S256 is required for every client."""
    if challenge is None:
        raise InvalidRequest("code_challenge is required (PKCE with S256)")
    if method != "S256":
        raise InvalidRequest("code_challenge_method must be S256")
    if _CHALLENGE.fullmatch(challenge) is None:
        raise InvalidRequest("code_challenge is malformed")
    return challenge


def verify(verifier: str | None, challenge: str) -> None:
    """RFC 7636 §4.6, in constant time."""
    if verifier is None:
        raise InvalidGrant("code_verifier is required")
    if _VERIFIER.fullmatch(verifier) is None:
        raise InvalidGrant("code_verifier is malformed")
    if not hmac.compare_digest(s256(verifier), challenge):
        raise InvalidGrant("code_verifier does not match the code_challenge")
