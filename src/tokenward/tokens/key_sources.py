"""Where a verifier (the guard's validator, oauth's client keys) finds verification keys: its own
keyring, a fixed set, or a remote JWKS (`remote_jwks`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from tokenward.tokens.jwk import VerificationKey
from tokenward.tokens.keyring import ManagedKey


class KeySource(Protocol):
    def get(self, kid: str | None) -> VerificationKey | None:
        """A key by `kid` from memory; never does I/O (it is on the hot path)."""
        ...

    async def refresh(self, *, unknown_kid: bool) -> bool:
        """Refetch if allowed now; True when the key set changed. Bounded by the source."""
        ...

    def refresh_sync(self, *, unknown_kid: bool) -> bool: ...


class HeldKeys(Protocol):
    """A keyring, or the key manager holding one keyring per algorithm."""

    def verification_key(self, kid: str | None) -> VerificationKey | None: ...

    def managed_keys(self) -> list[ManagedKey]: ...


class KeyringKeySource:
    """The embedded case: the issuer's own keyring, shared in memory.

    `reload` (e.g. `KeyManager.reload`): on an unknown `kid`, re-read the keyring from the
    database, at most once per `min_interval` seconds, so a key another process rotated in
    (`tokenward keys rotate`, another node) is trusted before the periodic reload comes round,
    and a flood of made-up kids costs one database read per interval. Without it, the keyring
    changes only when its owner changes it.
    """

    def __init__(
        self,
        keyring: HeldKeys,
        reload: Callable[[], Awaitable[None]] | None = None,
        *,
        min_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keyring = keyring
        self._reload = reload
        self._min_interval = min_interval
        self._clock = clock
        self._reloaded_at: float | None = None

    def get(self, kid: str | None) -> VerificationKey | None:
        return self._keyring.verification_key(kid)

    async def refresh(self, *, unknown_kid: bool) -> bool:
        if not unknown_kid or self._reload is None:
            return False
        now = self._clock()
        if self._reloaded_at is not None and now - self._reloaded_at < self._min_interval:
            return False
        self._reloaded_at = now
        before = self._kids()
        await self._reload()  # a storage error propagates: the caller answers 503, not 401
        return self._kids() != before

    def refresh_sync(self, *, unknown_kid: bool) -> bool:
        return False  # no blocking database read on the synchronous path

    def _kids(self) -> frozenset[str]:
        return frozenset(key.kid for key in self._keyring.managed_keys())


class StaticKeySource:
    """A fixed key set, e.g. from a JWKS file. A key without `kid` matches tokens without one."""

    def __init__(self, keys: Mapping[str | None, VerificationKey]) -> None:
        self._keys = dict(keys)

    def get(self, kid: str | None) -> VerificationKey | None:
        key = self._keys.get(kid)
        if key is None and kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))  # a single key may stand for a kid-less token
        return key

    def values(self) -> list[VerificationKey]:
        return list(self._keys.values())

    async def refresh(self, *, unknown_kid: bool) -> bool:
        return False

    def refresh_sync(self, *, unknown_kid: bool) -> bool:
        return False
