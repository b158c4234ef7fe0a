"""What browser mode keeps about a session, sealed so that the store alone reveals nothing.

The session cookie's value is a random 256-bit secret that only the browser holds. From it, HKDF
(SHA-256) derives two unrelated values:

- the store key (`Sealed.key`): where the record lives; a dump of the store does not contain
  the cookie value, and the key does not lead back to it;
- the AES-256-GCM key that seals the record (its tokens), with the store key as associated data
  (a record moved under another key does not open).

So a copy of Redis (a backup, a replica, a `KEYS *`) holds neither a cookie that would sign
someone in nor a token; reading a session needs the browser's cookie. The pending sign-in
(PKCE verifier, return path) is sealed the same way under its `state`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SECRET_BYTES = 32  # 256 bits: the cookie value, and a sign-in's state
MAX_SECRET_LENGTH = 128  # characters; a longer cookie is refused before any derivation
NONCE_BYTES = 12
MAX_RECORD_BYTES = 64 * 1024  # tokens are a few kB; anything larger is not ours
_KEY_INFO = b"tokenward bff store key v1"
_SEAL_INFO = b"tokenward bff seal key v1"


@dataclass
class SessionRecord:
    access_token: str
    refresh_token: str | None
    access_expires_at: float
    refresh_ahead: float  # refresh this long before the access token expires
    csrf: str
    ends_at: float  # the absolute end, whatever the idle timeout says


@dataclass(frozen=True)
class PendingLogin:
    verifier: str
    return_to: str
    expires_at: float
    step_up: str = ""  # a step-up sign-in: what it asks for (bff_stepup.StepUp.marker)


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def _derive(secret: str, info: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info)
    return hkdf.derive(secret.encode("utf-8", "surrogatepass"))


class Sealed:
    """The store key and the sealing key of one cookie (or state) value."""

    def __init__(self, secret: str) -> None:
        self.key = _derive(secret, _KEY_INFO).hex()
        self._aead = AESGCM(_derive(secret, _SEAL_INFO))

    @classmethod
    def of(cls, secret: str | None) -> Sealed | None:
        """None for a missing or oversized value (refused before any work)."""
        if not secret or len(secret) > MAX_SECRET_LENGTH:
            return None
        return cls(secret)

    def seal(self, value: SessionRecord | PendingLogin) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        plain = json.dumps(asdict(value), separators=(",", ":")).encode()
        return nonce + self._aead.encrypt(nonce, plain, self.key.encode())

    def _open(self, blob: bytes) -> dict[str, Any] | None:
        if len(blob) > MAX_RECORD_BYTES or len(blob) <= NONCE_BYTES:
            return None
        try:
            plain = self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], self.key.encode())
        except InvalidTag:
            return None
        value = json.loads(plain)
        return value if isinstance(value, dict) else None

    def session(self, blob: bytes | None) -> SessionRecord | None:
        """The record, or None when absent or not sealed under this cookie."""
        fields = self._open(blob) if blob is not None else None
        try:
            return SessionRecord(**fields) if fields is not None else None
        except TypeError:  # sealed by another version with other fields: signed out
            return None

    def pending(self, blob: bytes | None) -> PendingLogin | None:
        fields = self._open(blob) if blob is not None else None
        try:
            return PendingLogin(**fields) if fields is not None else None
        except TypeError:
            return None
