"""Keeps every validator's in-memory revocation mirror in step with the durable log.

The database (SQLite embedded, PostgreSQL scaled out) is the source of truth; Redis pub/sub
carries each new entry to every node within milliseconds. Entries carry their sequence number:
a message that is not the next one means a gap, and the node re-reads the log from where it is.
A periodic re-read bounds staleness even when messages are lost or Redis is down, and a
revocation written while Redis is down is published once it is back. Past `max_staleness`
without a successful sync the mirror stops vouching (validators answer 503), unless the operator
chose `fail_open`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tokenward.core.lifecycle import cancel_and_wait
from tokenward.core.ports import RevocationStore
from tokenward.core.records import Revocation
from tokenward.core.revocation_mirror import RevocationMirror

log = structlog.get_logger(__name__)
CHANNEL = "tokenward:revocations"
# How long /revoke waits for the push before it answers anyway: the revocation is already in
# the log and in this node's mirrors, and the loops publish it when Redis answers again.
PUBLISH_WAIT = 0.5


class Siblings(Protocol):
    """The other processes of this server on this machine (store/local_fanout.py), told when
    this one wrote a revocation, and telling it when they did."""

    def tell(self) -> None: ...

    async def start(self, on_told: Callable[[], None]) -> None: ...

    async def stop(self) -> None: ...


def encode(seq: int, revocation: Revocation) -> bytes:
    return orjson.dumps(
        {
            "seq": seq,
            "kind": revocation.kind,
            "value": revocation.value,
            "issued_before": revocation.issued_before,
            "expires_at": revocation.expires_at,
        }
    )


def decode(message: bytes) -> tuple[int, Revocation]:
    data = orjson.loads(message)
    return int(data["seq"]), Revocation(
        str(data["kind"]), str(data["value"]), data["issued_before"], float(data["expires_at"])
    )


class RevocationFeed:
    """A RevocationStore for the server: writes go to the log, then to local mirrors and Redis."""

    def __init__(
        self,
        durable: RevocationStore,
        mirrors: Sequence[RevocationMirror],
        *,
        redis: Redis | None = None,
        clock: Callable[[], float] = time.time,
        resync_interval: float = 2.0,
        max_staleness: float = 30.0,
        fail_open: bool = False,
        channel: str = CHANNEL,
        on_revoke: Callable[[str], None] | None = None,
        followers: Sequence[Callable[[int, Revocation], None]] = (),
        siblings: Siblings | None = None,
    ) -> None:
        self._channel = channel  # one per deployment sharing a Redis (and per test)
        self._durable = durable
        self._mirrors = list(mirrors)
        self._redis = redis
        self._clock = clock
        self._resync_interval = resync_interval
        self._max_staleness = max_staleness
        self._fail_open = fail_open
        self._on_revoke = on_revoke  # told the kind of each revocation written (metrics)
        # Told each new entry with its sequence number, whichever process wrote it: at once
        # when written here, and when this node applies it from the log or Redis (so an entry
        # may come twice: followers dedupe by seq). Not the entries read at start-up. Must not
        # block or raise (continuous access evaluation).
        self._followers = tuple(followers)
        self._unpublished: list[tuple[int, Revocation]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._sync_lock = asyncio.Lock()
        # One publisher at a time: revoke(), the resync loop and the listen loop all publish,
        # and must neither publish an entry twice over nor pop each other's.
        self._publish_lock = asyncio.Lock()
        self.synced_at: float | None = None
        self.applied_seq = 0
        self._changed = asyncio.Event()
        # `serve --workers N` without Redis: the other workers re-read the log when told.
        self._siblings = siblings
        self._wake = asyncio.Event()

    # --- RevocationStore -----------------------------------------------------------------
    async def revoke(self, revocation: Revocation) -> int:
        seq = await self._durable.revoke(revocation)
        if self._on_revoke is not None:
            self._on_revoke(revocation.kind)
        for follower in self._followers:
            follower(seq, revocation)
        for mirror in self._mirrors:
            mirror.apply(revocation)  # at once here; the feed advances applied_seq in order
        self._notify()
        if self._siblings is not None:
            self._siblings.tell()
        self._unpublished.append((seq, revocation))
        try:
            async with asyncio.timeout(PUBLISH_WAIT):
                await self._publish_pending()
        except TimeoutError:
            log.warning("revocation_publish_deferred", pending=len(self._unpublished), error="slow")
        return seq

    async def since(self, seq: int) -> Sequence[tuple[int, Revocation]]:
        return await self._durable.since(seq)

    async def active(self, now: float) -> Sequence[tuple[int, Revocation]]:
        return await self._durable.active(now)

    async def page(
        self, after: int, now: float, limit: int
    ) -> tuple[int, Sequence[tuple[int, Revocation]]]:
        return await self._durable.page(after, now, limit)

    def changed(self) -> asyncio.Event:
        """Set as soon as this node learns of a new entry (written here, pushed by Redis or
        re-read from the log): what a long-poll on GET /revocations waits on. Take it before
        reading the log, so an entry that lands in between still wakes the reader."""
        return self._changed

    # --- life cycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Bootstrap from the log, then follow it (pub/sub and periodic re-reads)."""
        entries = await self._durable.active(self._clock())
        for seq, revocation in entries:
            self._apply(seq, revocation, advance=False)
        await self.resync()
        if self._siblings is not None:
            await self._siblings.start(self._wake.set)
        self._tasks.append(asyncio.create_task(self._resync_loop()))
        if self._redis is not None:
            self._tasks.append(asyncio.create_task(self._listen_loop(self._redis)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks.clear()
        if self._siblings is not None:
            await self._siblings.stop()

    def staleness(self) -> float:
        """Seconds since the mirror was last known to be complete (the metric)."""
        return self._clock() - self.synced_at if self.synced_at is not None else float("inf")

    async def resync(self) -> int:
        """Apply every entry after the last one applied, in order; mark the mirror fresh."""
        async with self._sync_lock:
            entries = await self._durable.since(self.applied_seq)
            for seq, revocation in entries:
                self._apply(seq, revocation)
            if entries:
                self._notify()
            self._mark_fresh()
            return len(entries)

    # --- internals -----------------------------------------------------------------------
    def _apply(self, seq: int, revocation: Revocation, *, advance: bool = True) -> None:
        for mirror in self._mirrors:
            mirror.apply(revocation, seq if advance else None)
        if advance:
            self.applied_seq = max(self.applied_seq, seq)
            for follower in self._followers:
                follower(seq, revocation)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _mark_fresh(self) -> None:
        self.synced_at = now = self._clock()
        fresh_until = float("inf") if self._fail_open else now + self._max_staleness
        for mirror in self._mirrors:
            mirror.fresh_until = fresh_until

    async def _on_message(self, payload: bytes) -> None:
        try:
            seq, revocation = decode(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("revocation_message_malformed")
            return
        if seq == self.applied_seq + 1:
            self._apply(seq, revocation)
            self._notify()
        elif seq > self.applied_seq:
            await self.resync()  # a gap: a message was lost or arrived out of order

    async def _publish_pending(self) -> None:
        if self._redis is None:
            self._unpublished.clear()  # other processes find it in the log on their next sync
            return
        try:
            async with self._publish_lock:
                while self._unpublished:
                    seq, revocation = self._unpublished[0]
                    # Cancelled mid-publish (PUBLISH_WAIT), the entry stays and goes out again:
                    # subscribers ignore a sequence number they already applied.
                    await self._redis.publish(self._channel, encode(seq, revocation))
                    self._unpublished.pop(0)
        except (RedisError, OSError) as exc:
            # Not lost: it is in the log, and it is published again when Redis is back.
            log.warning(
                "revocation_publish_deferred",
                pending=len(self._unpublished),
                error=type(exc).__name__,
            )

    async def _resync_loop(self) -> None:
        while True:
            # The interval, or sooner when another worker says the log grew.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._resync_interval)
            self._wake.clear()
            try:
                await self.resync()
                await self._publish_pending()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a failing database
                log.warning(
                    "revocation_resync_failed", error=type(exc).__name__, staleness=self.staleness()
                )

    async def _listen_loop(self, redis: Redis) -> None:
        backoff = 0.1
        while True:
            try:
                async with redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    await self.resync()  # anything published while we were away
                    await self._publish_pending()
                    backoff = 0.1
                    await self._consume(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect whatever broke
                log.warning("revocation_subscription_lost", error=type(exc).__name__)
                await asyncio.sleep(backoff)
                # Capped at 1 s: a reconnect attempt is cheap, and every second without the
                # subscription is a second of revocations arriving by re-read only.
                backoff = min(backoff * 2, 1.0)

    async def _consume(self, pubsub: Any) -> None:
        async for message in pubsub.listen():
            if message.get("type") == "message":
                await self._on_message(message["data"])
