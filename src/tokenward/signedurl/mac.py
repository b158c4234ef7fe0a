"""HMAC-SHA256 (RFC 2104) with the key's pads hashed once, and the base64url form links carry.

`hmac.digest` derives both keyed pads on every call. A verifier checks many links under a few
keys, so it keeps the two keyed SHA-256 states and copies them per message: the same bytes
(tests/signedurl/test_mac.py compares with `hmac.digest`) for about a third of the cost
(`make bench ONLY=P7`). Only public hashlib calls; comparison stays `hmac.compare_digest`.
"""

from __future__ import annotations

import binascii
import hashlib

BLOCK_SIZE = 64  # SHA-256's block, in bytes (RFC 2104 §2: B)
_IPAD = bytes(byte ^ 0x36 for byte in range(256))  # translation tables: XOR with the pad
_OPAD = bytes(byte ^ 0x5C for byte in range(256))
_URLSAFE = bytes.maketrans(b"+/", b"-_")


class HmacSha256:
    """A pre-keyed HMAC-SHA256. Holds key-derived state, so its repr shows nothing of it."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > BLOCK_SIZE:
            key = hashlib.sha256(key).digest()  # RFC 2104 §2: long keys are hashed first
        padded = key.ljust(BLOCK_SIZE, b"\0")
        self._inner = hashlib.sha256(padded.translate(_IPAD))
        self._outer = hashlib.sha256(padded.translate(_OPAD))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def b64(self, message: bytes) -> bytes:
        """The MAC as unpadded base64url (43 ASCII bytes): the `tw_sig` value."""
        return binascii.b2a_base64(self.digest(message), newline=False).translate(_URLSAFE)[:-1]

    def __repr__(self) -> str:
        return "HmacSha256(<keyed>)"
