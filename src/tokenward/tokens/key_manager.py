"""Loads the keyring from its store at start-up and persists every change (rotation, retirement)."""

from __future__ import annotations

from collections.abc import Callable

from tokenward.store.protocols import KeyStore
from tokenward.tokens.keyring import KeyPolicy, Keyring, ManagedKey, open_key, seal_key
from tokenward.tokens.sealing import KeySealer


class KeyManager:
    def __init__(self, store: KeyStore, sealer: KeySealer, keyring: Keyring) -> None:
        self._store = store
        self._sealer = sealer
        self.keyring = keyring

    @classmethod
    async def load(
        cls, store: KeyStore, sealer: KeySealer, policy: KeyPolicy, clock: Callable[[], float]
    ) -> KeyManager:
        """Every stored key is opened now, so a wrong master key fails at start-up, not later."""
        keys = [open_key(stored, sealer) for stored in await store.load_all()]
        manager = cls(store, sealer, Keyring(policy, clock, keys))
        await manager.save(manager.keyring.ensure_ready())
        return manager

    async def save(self, changed: list[ManagedKey]) -> None:
        if changed:
            await self._store.save([seal_key(key, self._sealer) for key in changed])

    async def rotate(self, *, force: bool = False) -> list[ManagedKey]:
        changed = self.keyring.rotate(force=force)
        await self.save(changed)
        return changed

    async def tick(self) -> list[ManagedKey]:
        """The schedule: retire expired keys and rotate when the period is over."""
        changed = self.keyring.advance()
        if self.keyring.rotation_due():
            changed += self.keyring.rotate()
        await self.save(changed)
        return changed
