"""HMAC keys with ids, and the key set that lets them rotate without breaking links in flight.

The current key signs; every key in the set verifies. Rotation: add the new key to the
verifiers first (as verify-only), then make it current on the signers, and drop the old one once
the longest-lived link it signed has expired.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping

from tokenward.signedurl.mac import HmacSha256

MIN_SECRET_BYTES = 32  # RFC 2104 §3: shorter than the hash output weakens HMAC-SHA256
KID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")


class SigningKey:
    """One HMAC-SHA256 secret and its id. Keeps only the pre-keyed MAC; its repr shows the id."""

    __slots__ = ("kid", "mac")

    def __init__(self, kid: str, secret: bytes) -> None:
        if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
            raise ValueError("a key id is 1-64 characters of A-Z a-z 0-9 . _ -")
        if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"a signing secret needs at least {MIN_SECRET_BYTES} bytes")
        self.kid = kid
        self.mac = HmacSha256(secret)

    @classmethod
    def generate(cls, kid: str) -> SigningKey:
        return cls(kid, secrets.token_bytes(MIN_SECRET_BYTES))

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, secret=<redacted>)"


class KeySet:
    """The key that signs now, and every key whose links are still honoured."""

    __slots__ = ("_by_kid", "current")

    def __init__(self, current: SigningKey, verify_only: Iterable[SigningKey] = ()) -> None:
        by_kid: dict[str, HmacSha256] = {current.kid: current.mac}
        for key in verify_only:
            if key.kid in by_kid:
                # Two secrets under one id would make verification depend on list order.
                raise ValueError(f"duplicate key id {key.kid!r}")
            by_kid[key.kid] = key.mac
        self.current = current
        self._by_kid = by_kid

    @classmethod
    def from_secrets(cls, secrets_by_kid: Mapping[str, bytes], current: str) -> KeySet:
        """Build from configuration: `{"2025-06": b"...", "2025-05": b"..."}`, current="2025-06"."""
        if current not in secrets_by_kid:
            raise ValueError("the current key id is not among the keys")
        keys = [SigningKey(kid, secret) for kid, secret in secrets_by_kid.items()]
        return cls(
            next(key for key in keys if key.kid == current),
            [key for key in keys if key.kid != current],
        )

    def mac(self, kid: str) -> HmacSha256 | None:
        return self._by_kid.get(kid)

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._by_kid)

    def __repr__(self) -> str:
        return f"KeySet(current={self.current.kid!r}, kids={list(self._by_kid)!r})"
