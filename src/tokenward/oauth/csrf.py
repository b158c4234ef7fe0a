"""CSRF tokens for the browser pages and the admin console: only values this server issued.

A token is `<random>.<issued at>.<mac>`, the MAC an HMAC-SHA256 under a master-key subkey over
the purpose, the random part and the time. A cookie we did not issue (planted from a sibling
domain, or made up) fails the MAC and is replaced by a fresh token, never adopted; a token for
the sign-in pages is no token for the console. A valid one is reused while it is young, so
several tabs keep working.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable

from tokenward.tokens.b64 import b64url_encode

CSRF_LIFETIME = 8 * 3600
_TOKEN = re.compile(r"([A-Za-z0-9_-]{43})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})")


class CsrfTokens:
    def __init__(
        self,
        key: bytes,
        clock: Callable[[], float] = time.time,
        lifetime: int = CSRF_LIFETIME,
    ) -> None:
        self._key = key
        self._clock = clock
        self.lifetime = lifetime

    def issue(self, presented: str | None, purpose: str) -> str:
        """`presented` if we issued it for `purpose` less than half a lifetime ago, else new."""
        issued_at = self._issued_at(presented, purpose)
        young = issued_at is not None and self._clock() - issued_at < self.lifetime / 2
        if presented is not None and young:
            return presented
        nonce, now = secrets.token_urlsafe(32), int(self._clock())
        return f"{nonce}.{now}.{self._mac(purpose, nonce, now)}"

    def valid(self, value: str | None, purpose: str) -> bool:
        return self._issued_at(value, purpose) is not None

    def matches(self, cookie: str | None, field: str | None, purpose: str) -> bool:
        """Double submit with a token of ours: the form field equals a valid cookie."""
        if not cookie or not field or not self.valid(cookie, purpose):
            return False
        return hmac.compare_digest(cookie.encode(), field.encode())

    def _issued_at(self, value: str | None, purpose: str) -> int | None:
        match = _TOKEN.fullmatch(value) if value and len(value) < 128 else None
        if match is None:
            return None
        nonce, issued, mac = match.group(1), int(match.group(2)), match.group(3)
        if not hmac.compare_digest(mac, self._mac(purpose, nonce, issued)):
            return None
        age = self._clock() - issued
        return issued if -60 <= age < self.lifetime else None  # a minute of clock skew

    def _mac(self, purpose: str, nonce: str, issued: int) -> str:
        message = f"{purpose}\x00{nonce}\x00{issued}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return b64url_encode(digest)
