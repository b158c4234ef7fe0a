"""Scope strings (RFC 6749 §3.3): space-delimited, case-sensitive scope-tokens."""

from __future__ import annotations

import re

from tokenward.oauth.errors import InvalidScope

# scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")
MAX_SCOPES = 64


def parse_scope(value: str | None) -> frozenset[str] | None:
    """None when the parameter is absent; otherwise the set of scope-tokens, validated."""
    if value is None:
        return None
    tokens = value.split(" ")
    if len(tokens) > MAX_SCOPES or any(_SCOPE_TOKEN.fullmatch(token) is None for token in tokens):
        raise InvalidScope("the scope parameter is malformed")
    return frozenset(tokens)


def granted_scopes(requested: frozenset[str] | None, allowed: frozenset[str]) -> frozenset[str]:
    """The requested scopes if all are allowed; all allowed ones when none were requested."""
    if requested is None:
        return allowed
    if not requested <= allowed:
        raise InvalidScope("the client may not request some of these scopes")
    return requested


def format_scope(scopes: frozenset[str]) -> str:
    return " ".join(sorted(scopes))
