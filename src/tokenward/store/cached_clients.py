"""A read-through cache in front of a durable ClientStore.

Every token, introspection and revocation request authenticates its client: without the cache
that is one SELECT (and, on SQLite, two thread hops) per request, a fifth of the request path
measured under load (docs/performance.md). Records are kept for `ttl` seconds. A change made
through this store (the admin API, the console, a client disabled here) drops its entry at
once; a change written by another process (the `tokenward client` CLI, another node) is seen
within `ttl`. Disabling a client also revokes what it holds through the revocation feed, which
every node applies as before. Unknown ids are not cached, so a flood of made-up ids cannot
grow the cache past the registered clients.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from tokenward.core.ports import ClientStore
from tokenward.core.records import ClientRecord

DEFAULT_TTL = 2.0


class CachedClientStore:
    def __init__(
        self,
        inner: ClientStore,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, ClientRecord]] = {}

    async def get(self, client_id: str) -> ClientRecord | None:
        now = self._clock()
        entry = self._entries.get(client_id)
        if entry is not None and entry[0] > now:
            return entry[1]
        record = await self._inner.get(client_id)
        if record is None:
            self._entries.pop(client_id, None)
        else:
            self._entries[client_id] = (now + self._ttl, record)
        return record

    async def put(self, client: ClientRecord) -> None:
        self._entries.pop(client.client_id, None)
        try:
            await self._inner.put(client)
        finally:
            self._entries.pop(client.client_id, None)  # a get racing the write may have refilled it

    async def list_all(self) -> Sequence[ClientRecord]:
        return await self._inner.list_all()

    async def delete(self, client_id: str) -> bool:
        self._entries.pop(client_id, None)
        try:
            return await self._inner.delete(client_id)
        finally:
            self._entries.pop(client_id, None)

    def forget(self, client_id: str | None = None) -> None:
        """Drop one entry (None: all), when another process is known to have changed it."""
        if client_id is None:
            self._entries.clear()
        else:
            self._entries.pop(client_id, None)
