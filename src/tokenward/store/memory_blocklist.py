"""`IpBlocklist` in this process: one node, forgotten on restart."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from tokenward.core.blocklist import MAX_ENTRIES, BlockEntry, blockable_ip, canonical_ip


class MemoryBlocklist:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._until: dict[str, BlockEntry] = {}

    def is_blocked(self, ip: str) -> bool:
        entry = self._until.get(ip)
        if entry is None:
            if not self._until:
                return False
            entry = self._until.get(canonical_ip(ip))
            if entry is None:
                return False
        if entry.until <= self._clock():
            self._until.pop(entry.ip, None)
            return False
        return True

    def block(self, ip: str, seconds: float, reason: str, by: str) -> BlockEntry:
        ip = blockable_ip(ip)
        now = self._clock()
        if len(self._until) >= MAX_ENTRIES:
            self._until = {k: e for k, e in self._until.items() if e.until > now}
        old = self._until.get(ip)
        until = max(now + seconds, old.until if old else 0.0)
        entry = self._until[ip] = BlockEntry(ip, until, reason, by)
        return entry

    def unblock(self, ip: str) -> bool:
        return self._until.pop(canonical_ip(ip), None) is not None

    def entries(self) -> Sequence[BlockEntry]:
        now = self._clock()
        return sorted((e for e in self._until.values() if e.until > now), key=lambda e: -e.until)
