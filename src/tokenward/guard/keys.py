"""Where the validator finds verification keys: its own keyring, a fixed set, or a remote JWKS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from tokenward.tokens.jwk import VerificationKey
from tokenward.tokens.keyring import Keyring


class KeySource(Protocol):
    def get(self, kid: str | None) -> VerificationKey | None:
        """A key by `kid` from memory; never does I/O (it is on the hot path)."""
        ...

    async def refresh(self, *, unknown_kid: bool) -> bool:
        """Refetch if allowed now; True when the key set changed. Bounded by the source."""
        ...

    def refresh_sync(self, *, unknown_kid: bool) -> bool: ...


class KeyringKeySource:
    """The embedded case: the issuer's own keyring, shared in memory."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def get(self, kid: str | None) -> VerificationKey | None:
        return self._keyring.verification_key(kid)

    async def refresh(self, *, unknown_kid: bool) -> bool:
        return False

    def refresh_sync(self, *, unknown_kid: bool) -> bool:
        return False


class StaticKeySource:
    """A fixed key set, e.g. from a JWKS file. A key without `kid` matches tokens without one."""

    def __init__(self, keys: Mapping[str | None, VerificationKey]) -> None:
        self._keys = dict(keys)

    def get(self, kid: str | None) -> VerificationKey | None:
        key = self._keys.get(kid)
        if key is None and kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))  # a single key may stand for a kid-less token
        return key

    async def refresh(self, *, unknown_kid: bool) -> bool:
        return False

    def refresh_sync(self, *, unknown_kid: bool) -> bool:
        return False
