"""Signing SETs and logout tokens with the server's keyring: the same keys as the JWKS at
/jwks, each key pinned to its algorithm, the `typ` header naming what the token is (RFC 8417
§2.3 `secevent+jwt`, Back-Channel Logout 1.0 §2.4 `logout+jwt`) so that neither can pass for
an ID token or an access token."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from tokenward.tokens.errors import NoSigningKey
from tokenward.tokens.jws import sign_compact
from tokenward.tokens.keyring import Keyring


class TokenSigner:
    """`keyrings` by algorithm; `default`: the algorithm the deployment signs its own tokens
    (SETs) with now. A callable, asked at each signing, not a setting read once: `tokenward
    keys migrate` moves that algorithm at run time and the old keyring then retires, so a
    fixed name would first sign with a key on its way out, then with none at all."""

    def __init__(self, keyrings: Mapping[str, Keyring], default: Callable[[], str]) -> None:
        self._keyrings = keyrings
        self._default = default

    def sign(self, claims: Mapping[str, Any], typ: str, alg: str | None = None) -> str:
        """`alg`: the client's (its ID tokens'); without an active key for it, `NoSigningKey`:
        the receiver checks the algorithm it registered, so another one would only be refused
        there (and would hide the misconfiguration)."""
        name = alg or self._default()
        ring = self._keyrings.get(name)
        if ring is None or not ring.has_active():
            raise NoSigningKey(name)
        key = ring.active()
        header = {"alg": key.alg.name, "kid": key.kid, "typ": typ}
        return sign_compact(header, orjson.dumps(dict(claims)), key.sign)
