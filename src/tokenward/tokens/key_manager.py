"""Loads the keyrings from their store at start-up and persists every change.

One keyring per algorithm: the access-token algorithm (ES256 by default) and RS256, which OIDC
requires ID tokens to be available in. The JWKS publishes all of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from tokenward.core.ports import KeyStore
from tokenward.tokens.jwk import VerificationKey
from tokenward.tokens.keyring import KeyPolicy, Keyring, ManagedKey, open_key, seal_key
from tokenward.tokens.sealing import KeySealer


class KeyManager:
    def __init__(self, store: KeyStore, sealer: KeySealer, keyrings: Sequence[Keyring]) -> None:
        self._store = store
        self._sealer = sealer
        self.keyrings = {ring.policy.algorithm: ring for ring in keyrings}
        self.keyring = keyrings[0]  # the access-token keyring
        # One change at a time: a reload (a gateway's, on an unknown kid) merging stored
        # states while the schedule's tick is between its change and its save would write
        # back the states it just replaced.
        self._lock = asyncio.Lock()

    @classmethod
    async def load(
        cls,
        store: KeyStore,
        sealer: KeySealer,
        policies: Sequence[KeyPolicy],
        clock: Callable[[], float],
    ) -> KeyManager:
        """Every stored key is opened now, so a wrong master key fails at start-up, not later."""
        keys = [open_key(stored, sealer) for stored in await store.load_all()]
        rings = [
            Keyring(policy, clock, [key for key in keys if key.alg.name == policy.algorithm])
            for policy in policies
        ]
        manager = cls(store, sealer, rings)
        for ring in rings:
            await manager.save(ring.ensure_ready())
        return manager

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [jwk for ring in self.keyrings.values() for jwk in ring.jwks()["keys"]]}

    def verification_key(self, kid: str | None) -> VerificationKey | None:
        """Any of our keys: for tokens we issued of every kind (ID tokens, introspection JWTs)."""
        for ring in self.keyrings.values():
            key = ring.verification_key(kid)
            if key is not None:
                return key
        return None

    def managed_keys(self) -> list[ManagedKey]:
        return sorted(
            (k for r in self.keyrings.values() for k in r.managed_keys()),
            key=lambda k: k.created_at,
        )

    async def save(self, changed: list[ManagedKey]) -> None:
        if changed:
            await self._store.save([seal_key(key, self._sealer) for key in changed])

    async def rotate(self, *, force: bool = False) -> list[ManagedKey]:
        async with self._lock:
            changed = [key for ring in self.keyrings.values() for key in ring.rotate(force=force)]
            await self.save(changed)
            return changed

    async def reload(self) -> None:
        """Pick up rotations other nodes stored (they share the database)."""
        async with self._lock:
            await self._reload()

    async def _reload(self) -> None:
        keys = [open_key(stored, self._sealer) for stored in await self._store.load_all()]
        for ring in self.keyrings.values():
            ring.merge(keys)

    async def tick(self) -> list[ManagedKey]:
        """The schedule: pick up other nodes' changes, retire expired keys, rotate when due."""
        async with self._lock:
            await self._reload()
            changed: list[ManagedKey] = []
            for ring in self.keyrings.values():
                changed += ring.advance()
                if ring.rotation_due():
                    changed += ring.rotate()
            await self.save(changed)
            return changed
