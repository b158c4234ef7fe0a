"""A durable revocation store that also feeds this process's in-memory mirrors.

Embedded mode: the write goes to the database (source of truth) and then straight into every
local validator's mirror, so the next request sees it. Other processes catch up through
`since()` (scale-out adds pub/sub on top of the same interface).
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenward.guard.revocation_mirror import RevocationMirror
from tokenward.store.protocols import RevocationStore
from tokenward.store.records import Revocation


class MirroredRevocationStore:
    def __init__(self, durable: RevocationStore, mirrors: Sequence[RevocationMirror]) -> None:
        self._durable = durable
        self._mirrors = list(mirrors)

    async def bootstrap(self, now: float) -> int:
        """Load every revocation that can still match a live token into the mirrors."""
        entries = await self._durable.active(now)
        for seq, revocation in entries:
            for mirror in self._mirrors:
                mirror.apply(revocation, seq)
        return len(entries)

    async def catch_up(self) -> int:
        """Apply what other processes wrote since the mirrors last saw the log."""
        start = min((mirror.applied_seq for mirror in self._mirrors), default=0)
        entries = await self._durable.since(start)
        for seq, revocation in entries:
            for mirror in self._mirrors:
                if seq > mirror.applied_seq:
                    mirror.apply(revocation, seq)
        return len(entries)

    async def revoke(self, revocation: Revocation) -> int:
        seq = await self._durable.revoke(revocation)
        for mirror in self._mirrors:
            # Applied now, but without advancing applied_seq: another node's entry with a lower
            # seq may still be in flight, and catch_up() must not skip it.
            mirror.apply(revocation)
        return seq

    async def since(self, seq: int) -> Sequence[tuple[int, Revocation]]:
        return await self._durable.since(seq)

    async def active(self, now: float) -> Sequence[tuple[int, Revocation]]:
        return await self._durable.active(now)
