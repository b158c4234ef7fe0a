"""Sealed interaction state: the validated authorization request travels through the login and
consent forms encrypted and authenticated (AES-GCM under a subkey of the master key), bound to
the browser's CSRF cookie and to an expiry, so no server-side store is needed between steps.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tokenward.oauth.errors import InvalidRequest
from tokenward.tokens.b64 import Base64Error, b64url_decode, b64url_encode

INTERACTION_LIFETIME = 600
MAX_SEALED_LENGTH = 16 * 1024


class InteractionSealer:
    def __init__(self, key: bytes, clock: Callable[[], float] = time.time) -> None:
        self._aead = AESGCM(key)
        self._clock = clock

    def seal(self, kind: str, state: dict[str, Any], csrf: str) -> str:
        body = {"k": kind, "s": state, "c": csrf, "e": self._clock() + INTERACTION_LIFETIME}
        nonce = secrets.token_bytes(12)
        return b64url_encode(nonce + self._aead.encrypt(nonce, orjson.dumps(body), kind.encode()))

    def open(self, kind: str, sealed: str | None, csrf_cookie: str | None) -> dict[str, Any]:
        """The state, if the blob is ours, of this kind, unexpired and bound to this browser."""
        if not sealed or len(sealed) > MAX_SEALED_LENGTH or not csrf_cookie:
            raise InvalidRequest("the form has expired or was not sent from this browser")
        try:
            raw = b64url_decode(sealed)
            body = orjson.loads(self._aead.decrypt(raw[:12], raw[12:], kind.encode()))
        except (Base64Error, InvalidTag, ValueError):
            raise InvalidRequest("the form has expired or was not sent from this browser") from None
        if body["e"] < self._clock() or not hmac.compare_digest(body["c"], csrf_cookie):
            raise InvalidRequest("the form has expired or was not sent from this browser")
        state: dict[str, Any] = body["s"]
        return state
