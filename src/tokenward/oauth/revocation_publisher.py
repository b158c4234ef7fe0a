"""`GET /revocations`: the revocation log, paged and long-polled, for resource servers that share
no database with us (`guard.RemoteRevocations` follows it).

Pull with long-poll rather than push: every request stands alone, so any node behind any load
balancer can answer it (the log and its sequence numbers are global, in the database), a lost
connection costs one retry, and no proxy has to be taught to stream. Each answer is read from
the database, never from this node's mirror: an entry written on another node is there even
before Redis or the periodic re-read tells this node about it; those only wake the long-polls.

Bounded: `limit` ≤ 1000 entries per page, `wait` ≤ 25 s, at most `max_waiters` long-polls per
node (beyond that the answer comes at once with a `retry` hint), concurrent identical reads
share one query, and distinct reads queue for `read_slots` database connections (a 503 after
`queue_timeout`). Entries carry digests only (core.revocation_wire).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from tokenward.core.records import Revocation
from tokenward.core.revocation_wire import MAX_LIMIT, MAX_SEQ, MAX_WAIT, digest
from tokenward.oauth.errors import InvalidRequest, TemporarilyUnavailable

Page = tuple[int, Sequence[tuple[int, Revocation]]]
POLL_HINT = 1  # seconds between polls suggested to a caller that does not long-poll
BUSY_HINT = 2  # ... and to one whose long-poll did not fit
_DIGITS = re.compile(r"[0-9]{1,19}")


class RevocationLog(Protocol):
    async def page(self, after: int, now: float, limit: int) -> Page: ...

    def changed(self) -> asyncio.Event: ...


@dataclass(frozen=True, slots=True)
class FeedQuery:
    after: int = 0  # the caller's cursor: 0 asks for a snapshot of every live entry
    limit: int = MAX_LIMIT
    wait: int = 0  # seconds to hold the request when there is nothing after `after`


def parse_query(pairs: Sequence[tuple[str, str]]) -> FeedQuery:
    """The query string's `after`, `limit` and `wait`; anything malformed is invalid_request.
    Unknown parameters are ignored (RFC 6749 §3.1), repeated ones refused."""
    seen: dict[str, str] = {}
    for name, value in pairs:
        if name in ("after", "limit", "wait"):
            if name in seen:
                raise InvalidRequest(f"the {name} parameter is repeated")
            seen[name] = value
    return FeedQuery(
        after=_integer(seen, "after", 0, 0, MAX_SEQ),
        limit=_integer(seen, "limit", MAX_LIMIT, 1, MAX_LIMIT),
        wait=_integer(seen, "wait", 0, 0, MAX_WAIT),
    )


def _integer(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if _DIGITS.fullmatch(raw) is None or not low <= int(raw) <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}")
    return int(raw)


class RevocationPublisher:
    def __init__(
        self,
        log: RevocationLog,
        clock: Callable[[], float] = time.time,
        *,
        max_waiters: int = 512,
        read_slots: int = 4,
        queue_timeout: float = 2.0,
    ) -> None:
        self._log = log
        self._clock = clock
        self._max_waiters = max_waiters
        self._waiting = 0
        self._slots = asyncio.Semaphore(read_slots)
        self._queue_timeout = queue_timeout
        self._reads: dict[tuple[int, int, asyncio.Event], asyncio.Future[Page]] = {}
        self._closed = asyncio.Event()

    def close(self) -> None:
        """Answer every long-poll now and hold no new one: the server is shutting down, and a
        follower should move to another node rather than wait here."""
        self._closed.set()

    async def answer(
        self, query: FeedQuery, disconnected: Callable[[], Awaitable[object]] | None = None
    ) -> dict[str, Any]:
        """The JSON body. `disconnected` returns when the caller has gone (ends a long-poll)."""
        change = self._log.changed()  # before the read: a change after it wakes us
        head, entries = await self._read(query, change)
        retry = POLL_HINT if query.wait == 0 else 0
        if head == query.after and query.wait > 0 and not self._closed.is_set():
            if self._waiting >= self._max_waiters:
                retry = BUSY_HINT
            else:
                self._waiting += 1
                try:
                    head, entries = await self._hold(query, change, disconnected)
                finally:
                    self._waiting -= 1
        more = len(entries) == query.limit
        if more:
            retry = 0
        return {
            "head": head,
            # With a full page, the caller goes on from its last entry; else it has everything
            # up to the head (expired entries are skipped, not missing).
            "next": entries[-1][0] if more else head,
            "more": more,
            "retry": retry,
            "entries": [
                {
                    "seq": seq,
                    "kind": revocation.kind,
                    "digest": digest(revocation.kind, revocation.value),
                    "issued_before": revocation.issued_before,
                    "expires_at": revocation.expires_at,
                }
                for seq, revocation in entries
            ],
        }

    async def _hold(
        self,
        query: FeedQuery,
        change: asyncio.Event,
        disconnected: Callable[[], Awaitable[object]] | None,
    ) -> Page:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + query.wait
        page: Page = (query.after, ())
        while page[0] == query.after:
            remaining = deadline - loop.time()
            if remaining <= 0 or not await self._woken(change, remaining, disconnected):
                break
            change = self._log.changed()
            page = await self._read(query, change)
        return page

    async def _woken(
        self,
        change: asyncio.Event,
        within: float,
        disconnected: Callable[[], Awaitable[object]] | None,
    ) -> bool:
        """True when the log changed; False on timeout, shutdown or a caller gone."""
        changed = asyncio.ensure_future(change.wait())
        waits: list[asyncio.Future[Any]] = [changed, asyncio.ensure_future(self._closed.wait())]
        if disconnected is not None:
            waits.append(asyncio.ensure_future(disconnected()))
        try:
            done, _ = await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        return done == {changed}

    async def _read(self, query: FeedQuery, change: asyncio.Event) -> Page:
        # Callers holding the same change event share one query: a read that started before
        # the change they were woken by is never theirs to join.
        key = (query.after, query.limit, change)
        read = self._reads.get(key)
        if read is None:
            read = asyncio.ensure_future(self._read_now(query.after, query.limit))
            self._reads[key] = read
            read.add_done_callback(partial(self._forget, key))
        # Shielded: one caller leaving must not cancel the query the others wait for.
        return await asyncio.shield(read)

    async def _read_now(self, after: int, limit: int) -> Page:
        try:
            async with asyncio.timeout(self._queue_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise TemporarilyUnavailable(
                "the revocation feed is busy; retry shortly",
                headers={"retry-after": str(BUSY_HINT)},
            ) from None
        try:
            return await self._log.page(after, self._clock(), limit)
        finally:
            self._slots.release()

    def _forget(self, key: tuple[int, int, asyncio.Event], read: asyncio.Future[Page]) -> None:
        if self._reads.get(key) is read:
            del self._reads[key]
        if not read.cancelled():
            read.exception()  # retrieved: every caller that still waits gets it raised
