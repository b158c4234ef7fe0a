"""A read-through cache in front of a durable ClientStore.

Every token, introspection and revocation request authenticates its client: without the cache
that is one SELECT (and, on SQLite, two thread hops) per request, a fifth of the request path
measured under load (docs/performance.md). Records are kept for `ttl` seconds. A change made
through this store (the admin API, the console, a client disabled here) drops its entry at
once; a change written by another process (the `tokenward client` CLI, another node) is seen
within `ttl`. Disabling a client also revokes what it holds through the revocation feed, which
every node applies as before. Unknown ids are not cached, so a flood of made-up ids cannot
grow the cache past the registered clients.

Concurrent misses for one id share one read: when an entry expires under load, every request
in flight for that client would otherwise read it at once (on PostgreSQL, hundreds of the same
SELECT every `ttl`). A write or `forget` during that read keeps its result out of the cache.
"""

from __future__ import annotations

import asyncio
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
        self._reading: dict[str, asyncio.Task[ClientRecord | None]] = {}  # misses in flight

    async def get(self, client_id: str) -> ClientRecord | None:
        entry = self._entries.get(client_id)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        reading = self._reading.get(client_id)
        if reading is None:
            reading = asyncio.ensure_future(self._read(client_id))
            self._reading[client_id] = reading
        # Shielded: a caller that gives up (its client left) does not cancel the others' read.
        return await asyncio.shield(reading)

    async def _read(self, client_id: str) -> ClientRecord | None:
        this = asyncio.current_task()
        started = self._clock()
        try:
            record = await self._inner.get(client_id)
        finally:
            current = self._reading.get(client_id) is this
            if current:
                del self._reading[client_id]
        if current:  # no write or forget through this store since the read began
            if record is None:
                self._entries.pop(client_id, None)
            else:
                self._entries[client_id] = (started + self._ttl, record)
        return record

    def _drop(self, client_id: str) -> None:
        self._entries.pop(client_id, None)
        self._reading.pop(client_id, None)  # its result, read before this, is not cached

    async def put(self, client: ClientRecord) -> None:
        self._drop(client.client_id)
        try:
            await self._inner.put(client)
        finally:
            self._drop(client.client_id)  # a get racing the write may have refilled it

    async def list_all(self) -> Sequence[ClientRecord]:
        return await self._inner.list_all()

    async def delete(self, client_id: str) -> bool:
        self._drop(client_id)
        try:
            return await self._inner.delete(client_id)
        finally:
            self._drop(client_id)

    def forget(self, client_id: str | None = None) -> None:
        """Drop one entry (None: all), when another process is known to have changed it."""
        if client_id is None:
            self._entries.clear()
            self._reading.clear()
        else:
            self._drop(client_id)
