"""The deployment's IP blocklist on Redis: every authorization server and gateway refuses what
the monitor on any node (or an admin) blocked, within about a second.

`is_blocked` runs on every request, so it never touches Redis: it reads this process's own
view, a dict. `block` and `unblock` change that view at once and queue the change; a background
task (`start()`/`stop()`) writes queued changes to Redis and, every `refresh_interval`, replaces
the view with the shared state plus whatever is still queued here.

Redis holds one hash, `<prefix>blocked`: field = canonical IP, value = compact JSON
`{"until": <epoch seconds>, "reason": ..., "by": ...}`. Changes go through one Lua script, which
Redis runs atomically: a block keeps the later `until` of the old and new entries (as
`MemoryBlocklist` does), so two nodes blocking one address at once keep the longer block; an
unblock is HDEL. Entries a refresh finds expired are deleted by the next script call, and only
if nobody rewrote them in between.

Why polling and no pub/sub: blocks are rare, a one-second bound is what the design promises,
and a poll of the whole hash heals by itself after any outage or lost message, where pub/sub
would need a resync path anyway. The poll reads the whole hash (HGETALL), which is cheap for the
few hundred entries a deployment normally holds.

Redis unreachable: `is_blocked` keeps answering from the last view (entries still expire by
their `until`), changes stay queued (at most `QUEUE_LIMIT`, the oldest dropped and counted in
`dropped`) and are written when Redis is back; the loop logs the error type once per outage and
never raises. `until` is absolute, computed on the blocking node's clock: clock skew between
nodes shifts expiries by the skew.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis

from tokenward.core.blocklist import MAX_ENTRIES, BlockEntry, blockable_ip, canonical_ip
from tokenward.core.lifecycle import cancel_and_wait

log = structlog.get_logger(__name__)

QUEUE_LIMIT = 10_000  # changes waiting for Redis; past it the oldest are dropped
MAX_SECONDS = 100 * 365 * 86_400.0  # "forever" (inf) is stored as a century: JSON has no inf
SYNC_TIMEOUT = 10.0  # a hung Redis must not stall the loop forever

# KEYS[1] the hash. ARGV[1] '1' to return the hash (HGETALL) afterwards, '0' not to; then
# changes, five arguments each, applied in order:
#   'b', ip, until, reason, by   a block: the later of the stored and the new until wins, with
#                                this block's reason and by (MemoryBlocklist.block)
#   'u', ip, '', '', ''          an unblock
#   'x', ip, value, '', ''       found expired: deleted only if still exactly `value`
# `until` arrives as Python's repr, which parses back to the same double; a stored until that
# wins is written back as %.17g (exact too). Strings are quoted by cjson.
SYNC = """
local h = KEYS[1]
for i = 2, #ARGV, 5 do
  local op, ip = ARGV[i], ARGV[i + 1]
  if op == 'b' then
    local text = ARGV[i + 2]
    local old = redis.call('HGET', h, ip)
    if old then
      local ok, data = pcall(cjson.decode, old)
      if ok and type(data) == 'table' then
        local t = tonumber(data['until'])
        if t and t > tonumber(text) then text = string.format('%.17g', t) end
      end
    end
    redis.call('HSET', h, ip, '{"until":' .. text .. ',"reason":' .. cjson.encode(ARGV[i + 3])
      .. ',"by":' .. cjson.encode(ARGV[i + 4]) .. '}')
  elseif op == 'u' then
    redis.call('HDEL', h, ip)
  elseif redis.call('HGET', h, ip) == ARGV[i + 2] then
    redis.call('HDEL', h, ip)
  end
end
if ARGV[1] == '1' then return redis.call('HGETALL', h) end
return 0
"""


@dataclass(frozen=True, slots=True)
class _Change:
    seq: int  # to forget exactly what was written, even if the queue moved meanwhile
    ip: str
    entry: BlockEntry | None  # None: an unblock


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(ip: str, value: object) -> BlockEntry | None:
    """The entry stored for `ip`, or None if the value is not one (skipped, left alone)."""
    try:
        data = orjson.loads(value if isinstance(value, bytes | str) else b"")
        return BlockEntry(ip, float(data["until"]), str(data["reason"]), str(data["by"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


class RedisBlocklist:
    """`IpBlocklist` shared through Redis; reads are local, writes and refreshes background."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        clock: Callable[[], float] = time.time,
        refresh_interval: float = 1.0,
        owns_client: bool = False,
    ) -> None:
        """`prefix`: one per deployment sharing a Redis. `owns_client`: `stop()` closes it."""
        self._redis = redis
        self._key = prefix + "blocked"
        self._clock = clock
        self._interval = refresh_interval
        self._owns_client = owns_client
        self._script = redis.register_script(SYNC)
        self._view: dict[str, BlockEntry] = {}
        self._queue: deque[_Change] = deque()
        self._seq = 0
        self._expired: dict[str, Any] = {}  # ip -> raw value read, deleted by the next call
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.dropped = 0  # changes lost to a full queue during an outage
        self.synced_at: float | None = None  # the clock at the last successful refresh

    # --- IpBlocklist ---------------------------------------------------------------------
    def is_blocked(self, ip: str) -> bool:
        # As MemoryBlocklist: the exact spelling first, canonicalised only if needed.
        view = self._view
        entry = view.get(ip)
        if entry is None:
            if not view:
                return False
            entry = view.get(canonical_ip(ip))
            if entry is None:
                return False
        if entry.until <= self._clock():
            view.pop(entry.ip, None)
            return False
        return True

    def block(self, ip: str, seconds: float, reason: str, by: str) -> BlockEntry:
        if math.isnan(seconds):
            raise ValueError("seconds is NaN")
        ip = blockable_ip(ip)
        now = self._clock()
        old = self._view.get(ip)
        until = max(now + min(seconds, MAX_SECONDS), old.until if old else 0.0)
        entry = BlockEntry(ip, until, reason, by)
        self._put(self._view, entry, now)
        self._enqueue(ip, entry)
        return entry

    def unblock(self, ip: str) -> bool:
        ip = canonical_ip(ip)
        # Queued even if unknown here: another node's block may not have reached this view yet.
        self._enqueue(ip, None)
        return self._view.pop(ip, None) is not None

    def entries(self) -> Sequence[BlockEntry]:
        now = self._clock()
        return sorted((e for e in self._view.values() if e.until > now), key=lambda e: -e.until)

    # --- life cycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Start the background loop; its first refresh runs at once. Never waits for Redis."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the loop, write what is still queued (if Redis answers), close an owned client."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        try:
            async with asyncio.timeout(SYNC_TIMEOUT):
                await self.flush()
        except Exception as exc:  # noqa: BLE001 - shutting down: report, do not fail the caller
            log.warning("ip_blocklist_unflushed", queued=len(self._queue), error=type(exc).__name__)
        if self._owns_client:
            await self._redis.aclose()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def flush(self) -> None:
        """Write the queued changes (and pending expiry deletions). Raises on Redis errors."""
        if self._queue or self._expired:
            await self._call(read=False)

    async def refresh(self) -> None:
        """Write the queued changes, then replace the view with the shared state plus whatever
        was queued meanwhile. Raises on Redis errors (the view is then left as it was)."""
        reply = await self._call(read=True)
        now = self._clock()
        remote: dict[str, BlockEntry] = {}
        expired: dict[str, Any] = {}
        pairs = list(reply) if isinstance(reply, list) else []
        for field, value in zip(pairs[::2], pairs[1::2], strict=True):
            ip = _text(field)
            entry = _decode(ip, value)
            if entry is None:
                continue
            if entry.until <= now:
                expired[ip] = value
            else:
                remote[ip] = entry
        if len(remote) > MAX_ENTRIES:  # keep the longest blocks
            kept = heapq.nlargest(MAX_ENTRIES, remote.values(), key=lambda e: e.until)
            remote = {entry.ip: entry for entry in kept}
        # Changes made while the call was in flight are not in the reply: replay them, as the
        # script will, so a fresh block does not vanish nor a fresh unblock come back.
        self._overlay(remote, self._queue, now)
        self._view = remote
        self._expired = expired
        self.synced_at = now

    # --- internals -----------------------------------------------------------------------
    def _enqueue(self, ip: str, entry: BlockEntry | None) -> None:
        if len(self._queue) >= QUEUE_LIMIT:
            self._queue.popleft()
            self.dropped += 1
        self._seq += 1
        self._queue.append(_Change(self._seq, ip, entry))

    def _put(self, view: dict[str, BlockEntry], entry: BlockEntry, now: float) -> None:
        """Insert keeping at most MAX_ENTRIES: expired ones go first, then the soonest to end."""
        if entry.ip not in view and len(view) >= MAX_ENTRIES:
            for ip in [ip for ip, e in view.items() if e.until <= now]:
                del view[ip]
            if len(view) >= MAX_ENTRIES:
                soonest = min(view.values(), key=lambda e: e.until)
                if soonest.until >= entry.until:
                    return  # the new one would be the first to go
                del view[soonest.ip]
        view[entry.ip] = entry

    def _overlay(self, view: dict[str, BlockEntry], changes: Iterable[_Change], now: float) -> None:
        for change in changes:
            if change.entry is None:
                view.pop(change.ip, None)
                continue
            old = view.get(change.ip)
            if old is not None and old.until > change.entry.until:
                entry = BlockEntry(change.ip, old.until, change.entry.reason, change.entry.by)
            else:
                entry = change.entry
            self._put(view, entry, now)

    async def _call(self, *, read: bool) -> Any:
        changes = list(self._queue)  # a snapshot: block/unblock may append while we wait
        args: list[str | bytes] = ["1" if read else "0"]
        for change in changes:
            if change.entry is None:
                args += ["u", change.ip, "", "", ""]
            else:
                e = change.entry
                args += ["b", change.ip, repr(e.until), e.reason, e.by]
        for ip, value in self._expired.items():
            args += ["x", ip, value, "", ""]
        reply = await self._script(keys=[self._key], args=args)
        # Written: forget exactly those (the queue may have grown or dropped its head since).
        if changes:
            last = changes[-1].seq
            while self._queue and self._queue[0].seq <= last:
                self._queue.popleft()
        self._expired = {}
        return reply

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(SYNC_TIMEOUT):
                    await self.refresh()
            except Exception as exc:  # noqa: BLE001 - the loop outlives any Redis failure
                if not self._failing:  # once per outage, not every interval
                    log.warning(
                        "ip_blocklist_unavailable",
                        error=type(exc).__name__,
                        queued=len(self._queue),
                    )
                self._failing = True
            else:
                if self._failing:
                    log.info("ip_blocklist_recovered", dropped=self.dropped)
                self._failing = False
            # Python 3.11's asyncio.wait_for, which redis-py uses for its socket timeout, can
            # swallow a cancellation that races a finished write (CPython gh-86296): honour a
            # pending one here, or `stop()` would wait for this loop forever.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            await asyncio.sleep(self._interval)
