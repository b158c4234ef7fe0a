"""Sealed interaction state: the validated authorization request travels through the login and
consent forms encrypted and authenticated (AES-GCM under a subkey of the master key), bound to
the browser's CSRF cookie and to an expiry, so no server-side store is needed between steps.

Each sealed form is good for one submission: its random id is recorded in the replay cache when
it is opened, so a form sent twice (the back button, a copy in the history, a replay by whoever
saw it) is refused. Decision forms (consent, device confirmation) live a few minutes; the forms
where people type (sign-in, the device code) a little longer.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tokenward.oauth.errors import InvalidRequest
from tokenward.tokens.b64 import Base64Error, b64url_decode, b64url_encode

INTERACTION_LIFETIME = 600  # sign-in and the device code: people type there
DECISION_LIFETIME = 180  # consent and device confirmation: one click
LIFETIMES = {"consent": DECISION_LIFETIME, "device-confirm": DECISION_LIFETIME}
MAX_SEALED_LENGTH = 16 * 1024
EXPIRED = "the form has expired or was not sent from this browser"
FirstUse = Callable[[str, float], Awaitable[bool]]


class InteractionSealer:
    def __init__(
        self, key: bytes, first_use: FirstUse, clock: Callable[[], float] = time.time
    ) -> None:
        """`first_use`: the replay cache's (`ReplayCache.first_use`), shared by every node."""
        self._aead = AESGCM(key)
        self._first_use = first_use
        self._clock = clock

    def seal(self, kind: str, state: dict[str, Any], csrf: str) -> str:
        expires = self._clock() + LIFETIMES.get(kind, INTERACTION_LIFETIME)
        body = {"k": kind, "s": state, "c": csrf, "e": expires, "j": secrets.token_urlsafe(16)}
        nonce = secrets.token_bytes(12)
        return b64url_encode(nonce + self._aead.encrypt(nonce, orjson.dumps(body), kind.encode()))

    async def open(self, kind: str, sealed: str | None, csrf_cookie: str | None) -> dict[str, Any]:
        """The state, if the blob is ours, of this kind, unexpired, bound to this browser and
        never opened before (this opening uses it up)."""
        if not sealed or len(sealed) > MAX_SEALED_LENGTH or not csrf_cookie:
            raise InvalidRequest(EXPIRED)
        try:
            raw = b64url_decode(sealed)
            body = orjson.loads(self._aead.decrypt(raw[:12], raw[12:], kind.encode()))
        except (Base64Error, InvalidTag, ValueError):
            raise InvalidRequest(EXPIRED) from None
        if body["e"] < self._clock() or not hmac.compare_digest(body["c"], csrf_cookie):
            raise InvalidRequest(EXPIRED)
        if not await self._first_use(f"interaction:{body['j']}", body["e"]):
            raise InvalidRequest("this form was already sent")
        state: dict[str, Any] = body["s"]
        return state
