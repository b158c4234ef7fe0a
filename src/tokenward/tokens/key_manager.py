"""Loads the keyrings from their store at start-up and persists every change.

One keyring per algorithm, each with at most one active key: the deployment's access-token
algorithm (ES256 by default), those kept active besides (TOKENWARD_SIGNING_ALGS, audiences'
algorithms), and RS256, which OIDC requires ID tokens to be available in. The JWKS publishes
all of them. `migrate` moves signing to another algorithm without a failed request: the new
key is published ahead (the overlap rule), signing switches at a stored moment every node
shares, and the old keyring retires once nothing signs with it, its keys verifying on until
every token they signed has expired.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from tokenward.core.ports import KeyStore
from tokenward.core.records import SigningChoice
from tokenward.tokens import algorithms as algs
from tokenward.tokens.errors import NoSigningKey
from tokenward.tokens.jwk import VerificationKey
from tokenward.tokens.keyring import (
    KeyPolicy,
    Keyring,
    KeyRotationError,
    KeyState,
    ManagedKey,
    open_key,
    seal_key,
)
from tokenward.tokens.sealing import KeySealer
from tokenward.tokens.signing_choice import DEFAULT_AUDIENCE, SigningPolicy


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    """What `migrate` stored: when signing switches, and what it switches from."""

    audience: str | None
    alg: str
    previous: str
    switch_at: float
    kid: str
    retire_after: float  # seconds a retiring key still verifies after the switch


class KeyManager:
    def __init__(
        self,
        store: KeyStore,
        sealer: KeySealer,
        keyrings: Sequence[Keyring],
        *,
        signing: SigningPolicy | None = None,
        kept: Iterable[str] = (),
    ) -> None:
        self._store = store
        self._sealer = sealer
        # Shared (not copied) with the token signers: a keyring added at run time is theirs too.
        self.keyrings = {ring.policy.algorithm: ring for ring in keyrings}
        self._template = keyrings[0].policy
        self._clock = keyrings[0].clock
        self.signing = signing or SigningPolicy(self._template.algorithm, clock=self._clock)
        # Algorithms kept active whatever the choices say (TOKENWARD_SIGNING_ALGS, and RS256
        # for OIDC's ID tokens); the others retire when no choice signs with them.
        self._kept = frozenset(kept)
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
        *,
        signing: SigningPolicy | None = None,
        kept: Iterable[str] = (),
    ) -> KeyManager:
        """Every stored key is opened now, so a wrong master key fails at start-up, not later."""
        keys = [open_key(stored, sealer) for stored in await store.load_all()]
        by_alg = {policy.algorithm: policy for policy in policies}
        for key in keys:  # keyrings a migration added, still verifying what they signed
            if key.state != KeyState.RETIRED and key.alg.name not in by_alg:
                by_alg[key.alg.name] = replace(policies[0], algorithm=key.alg.name)
        rings = [
            Keyring(policy, clock, [key for key in keys if key.alg.name == alg])
            for alg, policy in by_alg.items()
        ]
        manager = cls(store, sealer, rings, signing=signing, kept=kept)
        manager.signing.update(await store.load_choices())
        wanted = manager.wanted()
        for ring in rings:
            if ring.policy.algorithm in wanted:
                await manager.save(ring.ensure_ready())
        await manager.save(manager._retire_unwanted())
        return manager

    # --- reading -------------------------------------------------------------------------
    @property
    def keyring(self) -> Keyring:
        """The keyring of the deployment's access-token algorithm as the choices stand now."""
        ring = self.keyrings.get(self.signing.default_alg())
        if ring is not None and ring.has_active():
            return ring
        return next(iter(self.keyrings.values()))

    def active(self) -> ManagedKey:
        """The key signing the deployment's own responses now (introspection JWTs)."""
        return self.keyring.active()

    def signing_ring(self, alg: str) -> Keyring:
        """The keyring that signs `alg`. Fails closed (`NoSigningKey`) when `alg` has no active
        key (a client pinned to an algorithm the deployment never held, or migrated away from):
        another algorithm would be a token its audience was promised it would not get."""
        ring = self.keyrings.get(alg)
        if ring is not None and ring.has_active():
            return ring
        raise NoSigningKey(alg)

    def access_token_ring(self, audience: Sequence[str], client_alg: str | None) -> Keyring:
        return self.signing_ring(self.signing.access_token_alg(audience, client_alg))

    def wanted(self) -> frozenset[str]:
        """Algorithms with an active key: kept, or signed with by a choice now or soon."""
        return self._kept | self.signing.in_use()

    def signing_keyrings(self) -> list[Keyring]:
        wanted = self.wanted()
        return [ring for alg, ring in self.keyrings.items() if alg in wanted]

    def algorithms(self) -> list[str]:
        """Algorithms we sign with now (discovery lists them)."""
        return [alg for alg, ring in self.keyrings.items() if ring.has_active()]

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

    # --- changing ------------------------------------------------------------------------
    async def save(self, changed: list[ManagedKey]) -> None:
        if changed:
            await self._store.save([seal_key(key, self._sealer) for key in changed])

    async def rotate(self, *, force: bool = False) -> list[ManagedKey]:
        async with self._lock:
            changed = [key for ring in self.signing_keyrings() for key in ring.rotate(force=force)]
            await self.save(changed)
            return changed

    async def migrate(
        self, alg: str, audience: str | None = None, *, force: bool = False
    ) -> MigrationPlan:
        """Move access-token signing (of one audience, or the deployment's) to `alg`.

        The new keyring's active key is published now; signing switches once it has been
        published for `publish_ahead` (at once with `force`, or when it already was), on
        every node at the same moment; the old algorithm's keys retire at the first tick
        after the switch if nothing else signs with them, and verify until the tokens they
        signed have expired."""
        if alg not in algs.GENERATED or algs.ALGORITHMS[alg].symmetric:
            choices = ", ".join(a for a in algs.GENERATED if not algs.ALGORITHMS[a].symmetric)
            raise KeyRotationError(f"migrate to one of {choices}")
        async with self._lock:
            await self._reload()
            now = self._clock()
            name = audience or DEFAULT_AUDIENCE
            previous = (
                self.signing.audience_alg(audience) if audience else None
            ) or self.signing.default_alg()
            if previous == alg:
                raise KeyRotationError(f"access tokens for this audience are signed {alg} already")
            ring = self._ring(alg)
            changed = ring.ensure_ready()
            key = ring.active()
            ready_at = key.created_at + ring.policy.publish_ahead
            switch_at = now if force else max(now, ready_at)
            choice = SigningChoice(name, alg, previous, switch_at)
            await self.save(changed)
            await self._store.save_choices([choice])
            self.signing.update(
                [*(c for c in self.signing.choices() if c.audience != name), choice]
            )
            policy = ring.policy
            return MigrationPlan(
                audience,
                alg,
                previous,
                switch_at,
                key.kid,
                policy.max_token_lifetime + policy.leeway,
            )

    async def reload(self) -> None:
        """Pick up rotations and migrations other nodes stored (they share the database)."""
        async with self._lock:
            await self._reload()

    async def _reload(self) -> None:
        keys = [open_key(stored, self._sealer) for stored in await self._store.load_all()]
        for key in keys:
            if key.state != KeyState.RETIRED:
                self._ring(key.alg.name)
        for ring in self.keyrings.values():
            ring.merge(keys)
        self.signing.update(await self._store.load_choices())

    def _ring(self, alg: str) -> Keyring:
        ring = self.keyrings.get(alg)
        if ring is None:
            ring = Keyring(replace(self._template, algorithm=alg), self._clock)
            self.keyrings[alg] = ring
        return ring

    def _retire_unwanted(self) -> list[ManagedKey]:
        wanted = self.wanted()
        return [
            key for alg, ring in self.keyrings.items() if alg not in wanted for key in ring.retire()
        ]

    async def tick(self) -> list[ManagedKey]:
        """The schedule: pick up other nodes' changes, retire expired keys and keyrings no
        choice signs with any more, rotate when due."""
        async with self._lock:
            await self._reload()
            changed: list[ManagedKey] = self._retire_unwanted()
            for ring in self.keyrings.values():
                changed += ring.advance()
                if ring.rotation_due():
                    changed += ring.rotate()
            await self.save(changed)
            return changed
