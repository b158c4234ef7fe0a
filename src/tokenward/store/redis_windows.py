"""Usage windows shared by every gateway: one Lua script, one round trip per call.

The monitor's `UsageWindows` Protocol (see `tokenward.core.windows`) on Redis, reproducing
`MemoryWindows` call for call: each method is one script, which Redis runs atomically, so
several gateways sharing one Redis (and one `prefix`) see one window per key. The caller's
`now` is the clock (the event's time), as in memory; Redis's clock only expires idle keys.

- `spread`: `<prefix>s:<key>` a sorted set member -> touch sequence number (the last-seen
  order, which is MemoryWindows' dict order even when two members share a time) and
  `<prefix>st:<key>` a hash member -> last-seen time.
- `burst`: `<prefix>b:<key>` a list of "time count" entries, oldest first (MemoryWindows'
  deque), and `<prefix>bt:<key>` their running total, so a call costs amortised O(1).
- `rate`: `<prefix>r:<key>` a hash of the EWMA state; floats travel and are stored as
  "%.17g" strings (exact round trip: a Lua number returned to Redis is truncated to an integer).

Forgetting: MemoryWindows forgets the least recently used keys past `max_keys`; Redis forgets
by time. Every key has a TTL, so memory is bounded by the traffic of one window: spread and
burst keys live `window` after their last call (by then all their entries are stale anyway);
rate keys live until the baseline would have decayed below 1% of itself,
`bucket * (ceil(log(0.01) / log(1 - alpha)) + 2)`, after which the key starts afresh (a
first bucket again) where memory would keep a near-zero baseline. The TTL is counted on
Redis's clock, so it matches the window only while `now` is roughly the real time.

Errors: `redis.exceptions.RedisError` (connection lost, timeout, ...) propagates; the caller,
the monitor pipeline, decides whether a detector skips the event. On Redis Cluster the two
keys of spread and burst must share a slot: put a hash tag in `prefix` (e.g. `{tw-windows}:`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from redis.asyncio import Redis

from tokenward.core.windows import (
    MAX_GAP_BUCKETS,
    MAX_HITS,
    MAX_MEMBERS,
    MIN_SEEN_FRACTION,
    RateSample,
)

PREFIX = "tokenward:windows:"

# KEYS: the sequence zset, the time hash. ARGV: member, now, cutoff (now - window), TTL in ms,
# MAX_MEMBERS. Returns the members kept, in last-seen order (newest last).
SPREAD = """
local z, h = KEYS[1], KEYS[2]
local member, cutoff, limit = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[5])
local last = redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')
local seq = 1
if last[2] then seq = tonumber(last[2]) + 1 end
redis.call('ZADD', z, seq, member)
redis.call('HSET', h, member, ARGV[2])
local members = redis.call('ZRANGE', z, 0, -1)
local times = redis.call('HMGET', h, unpack(members))
local first, n = 1, #members
-- As in memory: stale members go from the front until a fresh one, then the oldest extras.
while first <= n do
  local t = tonumber(times[first])
  if t ~= nil and t > cutoff then break end
  first = first + 1
end
if n - first + 1 > limit then first = n - limit + 1 end
if first > 1 then
  local gone = {}
  for i = 1, first - 1 do gone[i] = members[i] end
  redis.call('ZREM', z, unpack(gone))
  redis.call('HDEL', h, unpack(gone))
end
if first > n then
  redis.call('DEL', z, h)
  return {}
end
redis.call('PEXPIRE', z, ARGV[4])
redis.call('PEXPIRE', h, ARGV[4])
local kept = {}
for i = first, n do kept[#kept + 1] = members[i] end
return kept
"""

# KEYS: the entry list, the total. ARGV: now, cutoff (now - window), count, TTL in ms,
# MAX_HITS. Returns the total of the entries kept (an integer).
BURST = """
local list, tot = KEYS[1], KEYS[2]
local cutoff, limit = tonumber(ARGV[2]), tonumber(ARGV[5])
local n = redis.call('RPUSH', list, ARGV[1] .. ' ' .. ARGV[3])
local total = tonumber(ARGV[3])
-- A total without entries is a leftover: an empty list means nothing counted before.
if n > 1 then total = total + tonumber(redis.call('GET', tot) or '0') end
while n > 0 do
  local at, c = string.match(redis.call('LINDEX', list, 0), '^(%S+) (%S+)$')
  if tonumber(at) > cutoff and n <= limit then break end
  redis.call('LPOP', list)
  total = total - tonumber(c)
  n = n - 1
end
if n == 0 then
  redis.call('DEL', list, tot)
  return 0
end
redis.call('SET', tot, string.format('%.17g', total), 'PX', ARGV[4])
redis.call('PEXPIRE', list, ARGV[4])
return total
"""

# KEYS: the state hash. ARGV: bucket index (Python's int(now // bucket)), now, bucket size,
# alpha, count, TTL in ms, MAX_GAP_BUCKETS, MIN_SEEN_FRACTION. The arithmetic is `_Rate.advance`
# operation for operation (Lua numbers are doubles, `^` is C pow, as Python's float `**`).
# Returns {count, baseline as "%.17g", closed}.
RATE = """
local k = KEYS[1]
local index, now, size = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local alpha, add = tonumber(ARGV[4]), tonumber(ARGV[5])
local max_gap, min_seen = tonumber(ARGV[7]), tonumber(ARGV[8])
local s = redis.call('HMGET', k, 'b', 'f', 'c', 'm', 'n')
local b, first, count, mean, closed = index, now, 0, 0.0, 0
if s[1] then
  b, first, count = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
  mean, closed = tonumber(s[4]), tonumber(s[5])
end
if index > b then
  if closed == 0 then
    local seen = ((b + 1) * size - first) / size
    if seen < min_seen then seen = min_seen end
    mean = count / seen
  else
    mean = alpha * count + (1.0 - alpha) * mean
  end
  local gap = math.min(index - b - 1, max_gap)
  if gap ~= 0 then mean = mean * (1.0 - alpha) ^ gap end
  closed = closed + 1 + gap
  b = index
  count = 0
end
count = count + add
local function g(x) return string.format('%.17g', x) end
redis.call('HSET', k, 'b', g(b), 'f', g(first), 'c', g(count), 'm', g(mean), 'n', g(closed))
redis.call('PEXPIRE', k, ARGV[6])
return {g(count), g(mean), g(closed)}
"""


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _rate_ttl_ms(bucket: float, alpha: float) -> int:
    """Buckets until the baseline has decayed below 1% of itself, plus the open and one more."""
    if alpha >= 1:
        idle = 1  # one empty bucket zeroes the baseline
    elif not alpha > 0:  # no decay at all (or NaN): as long as memory's gap cap
        idle = MAX_GAP_BUCKETS
    else:
        idle = min(math.ceil(math.log(0.01) / math.log1p(-alpha)), MAX_GAP_BUCKETS)
    return _ms(bucket * (idle + 2))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisWindows:
    """`UsageWindows` on Redis: each call one atomic script; keys expire instead of LRU."""

    def __init__(self, redis: Redis, prefix: str = PREFIX) -> None:
        """`prefix`: one per deployment sharing a Redis (the gateways of one monitor)."""
        self._redis = redis
        self._prefix = prefix
        self._spread = redis.register_script(SPREAD)
        self._burst = redis.register_script(BURST)
        self._rate = redis.register_script(RATE)

    async def spread(self, key: str, member: str, now: float, window: float) -> Sequence[str]:
        reply = await self._spread(
            keys=[self._prefix + "s:" + key, self._prefix + "st:" + key],
            args=[member, repr(float(now)), repr(float(now - window)), _ms(window), MAX_MEMBERS],
        )
        return [_text(value) for value in reply]

    async def burst(self, key: str, now: float, window: float, count: int = 1) -> int:
        reply = await self._burst(
            keys=[self._prefix + "b:" + key, self._prefix + "bt:" + key],
            args=[repr(float(now)), repr(float(now - window)), int(count), _ms(window), MAX_HITS],
        )
        return int(reply)

    async def rate(
        self, key: str, now: float, bucket: float, alpha: float, count: int = 1
    ) -> RateSample:
        # The index is Python's floor division, as in memory (Lua's floor(now / bucket) can
        # differ at bucket edges); floats go as repr, which parses back to the same double.
        reply = await self._rate(
            keys=[self._prefix + "r:" + key],
            args=[
                int(now // bucket),
                repr(float(now)),
                repr(float(bucket)),
                repr(float(alpha)),
                int(count),
                _rate_ttl_ms(bucket, alpha),
                MAX_GAP_BUCKETS,
                repr(MIN_SEEN_FRACTION),
            ],
        )
        count_, baseline, closed = (_text(value) for value in reply)
        return RateSample(int(float(count_)), float(baseline), int(float(closed)))
