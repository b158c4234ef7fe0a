"""Bearer token extraction from the Authorization header only (RFC 6750 §2.1)."""

from __future__ import annotations

import re

from tokenward.core.errors import InvalidRequest, InvalidToken, MissingToken
from tokenward.tokens.jws import MAX_COMPACT_LENGTH

MAX_TOKEN_LENGTH = MAX_COMPACT_LENGTH
# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_SCHEME = "bearer "


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header: scheme case-insensitive, one space.

    The charset is checked by the caller: `check_b64token` for opaque tokens, strict base64url
    per segment for JWTs (which is stricter and would repeat the scan on the hot path).
    """
    if authorization is None:
        raise MissingToken("no bearer token")
    prefix = authorization[: len(_SCHEME)]
    if prefix.lower() != _SCHEME:
        if authorization.lower().rstrip() == "bearer":
            raise InvalidRequest("the Bearer scheme needs a token")
        raise MissingToken("no bearer token")  # another scheme: not ours to judge
    token = authorization[len(_SCHEME) :]
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("the access token is too long")
    if not token or token[0] == " ":
        raise InvalidRequest("exactly one space must follow the Bearer scheme")
    return token


def check_b64token(token: str) -> None:
    """RFC 6750 §2.1 charset. JWTs get the stricter base64url check per segment instead."""
    if _B64TOKEN.fullmatch(token) is None:
        raise InvalidToken("the access token has characters outside the b64token set")


def credentials(authorization: str | None) -> tuple[str, str]:
    """(scheme, token) for the Bearer or DPoP scheme (RFC 9449 §7.1), same framing rules."""
    if authorization is not None and authorization[:5].lower() == "dpop ":
        token = bearer_token("Bearer " + authorization[5:])
        return "DPoP", token
    return "Bearer", bearer_token(authorization)
