"""Private keys at rest: AES-256-GCM under a master key that lives only in settings.

The key id and algorithm are the associated data, so a sealed blob cannot be moved to another
key record. A wrong master key fails authentication on the first key, at start-up.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tokenward.tokens.b64 import Base64Error, b64url_decode, b64url_encode
from tokenward.tokens.errors import MasterKeyError

_VERSION = b"tw1"
_NONCE_BYTES = 12
MASTER_KEY_BYTES = 32


def generate_master_key() -> str:
    return b64url_encode(secrets.token_bytes(MASTER_KEY_BYTES))


class KeySealer:
    def __init__(self, master_key: str | None) -> None:
        if not master_key:
            raise MasterKeyError(
                "no master key: set TOKENWARD_MASTER_KEY (43 base64url characters, "
                "e.g. from `tokenward keys master-key`) or TOKENWARD_MASTER_KEY_FILE"
            )
        try:
            raw = b64url_decode(master_key.strip())
        except Base64Error:
            raise MasterKeyError("the master key is not base64url") from None
        if len(raw) != MASTER_KEY_BYTES:
            raise MasterKeyError(f"the master key must be {MASTER_KEY_BYTES} bytes (256 bits)")
        self._aead = AESGCM(raw)

    def __repr__(self) -> str:
        return "KeySealer(<master key hidden>)"

    def seal(self, plaintext: bytes, context: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, sealed: bytes, context: str) -> bytes:
        if not sealed.startswith(_VERSION):
            raise MasterKeyError(f"sealed key {context!r} has an unknown format")
        nonce = sealed[len(_VERSION) : len(_VERSION) + _NONCE_BYTES]
        try:
            return self._aead.decrypt(
                nonce, sealed[len(_VERSION) + _NONCE_BYTES :], context.encode()
            )
        except InvalidTag:
            raise MasterKeyError(
                f"the master key does not open sealed key {context!r}: wrong master key, "
                "or the stored key was altered"
            ) from None


def derive_subkey(master_key: str, purpose: str, length: int = 32) -> bytes:
    """An independent key for one purpose (client-secret digests, CSRF, ...), from the master key.

    HKDF (RFC 5869) with the purpose as `info`: a leak of one subkey reveals neither the master
    key nor any other subkey.
    """
    KeySealer(master_key)  # same validation and error messages as for sealing
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose.encode()).derive(
        b64url_decode(master_key.strip())
    )
