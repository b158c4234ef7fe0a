"""Idempotency records shared by every gateway: one hash per key, one script per step.

The gateway's `IdempotencyStore` Protocol (`tokenward.gateway.idempotency`) on Redis, so a
retry that the balancer sends to another gateway still meets the first answer (or its 409):

- `begin` creates the in-flight marker (fingerprint only) with a TTL of `IN_FLIGHT_LIMIT`, or
  reports what is there: a different fingerprint, still in flight, or the stored answer;
- `complete` stores the answer beside the marker and sets the record's TTL to the route's;
- `release` deletes the marker unless an answer was stored.

Each step is one Lua script, so two gateways beginning the same key at once are serialised and
exactly one gets "new". Key names are SHA-256 digests: the key embeds the subject and a
client-chosen value of any length. Redis errors propagate: the gateway answers 503.
"""

from __future__ import annotations

import hashlib
import struct
from typing import cast

from redis.asyncio import Redis

from tokenward.core.idempotency_records import Headers, Stored

PREFIX = "tokenward:idempotency:"
IN_FLIGHT_LIMIT = 300.0  # as the memory store: a marker that outlives any timeout is stale

BEGIN = """
local fp = redis.call('HGET', KEYS[1], 'fp')
if not fp then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'new'}
end
if fp ~= ARGV[1] then return {'mismatch'} end
local answer = redis.call('HGET', KEYS[1], 'answer')
if not answer then return {'busy'} end
return {'stored', answer}
"""

# Only over our own in-flight marker: a record that expired meanwhile is not recreated.
COMPLETE = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'answer') == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'answer', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

RELEASE = """
if redis.call('HEXISTS', KEYS[1], 'answer') == 0 then return redis.call('DEL', KEYS[1]) end
return 0
"""

_HEAD = struct.Struct(">HH")  # status, number of header fields
_FIELD = struct.Struct(">HI")  # name length, value length


def encode(stored: Stored) -> bytes:
    parts = [_HEAD.pack(stored.status, len(stored.headers))]
    for name, value in stored.headers:
        parts += (_FIELD.pack(len(name), len(value)), name, value)
    parts.append(stored.body)
    return b"".join(parts)


def decode(blob: bytes) -> Stored:
    status, count = _HEAD.unpack_from(blob)
    offset = _HEAD.size
    headers: Headers = []
    for _ in range(count):
        name_length, value_length = _FIELD.unpack_from(blob, offset)
        offset += _FIELD.size
        name = blob[offset : offset + name_length]
        offset += name_length
        headers.append((name, blob[offset : offset + value_length]))
        offset += value_length
    return Stored(status, headers, blob[offset:])


def _milliseconds(seconds: float) -> str:
    return str(max(1, int(seconds * 1000)))


class RedisIdempotencyStore:
    def __init__(self, redis: Redis, prefix: str = PREFIX, *, owns_client: bool = False) -> None:
        """`prefix`: one per deployment sharing a Redis. `owns_client`: `stop()` closes it."""
        self._redis = redis
        self._prefix = prefix
        self._owns_client = owns_client
        self._begin = redis.register_script(BEGIN)
        self._complete = redis.register_script(COMPLETE)
        self._release = redis.register_script(RELEASE)

    def _name(self, key: str) -> str:
        return self._prefix + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()

    async def begin(self, key: str, fingerprint: bytes, now: float, ttl: float) -> str | Stored:
        reply = cast(
            "list[bytes]",
            await self._begin(
                keys=[self._name(key)], args=[fingerprint, _milliseconds(IN_FLIGHT_LIMIT)]
            ),
        )
        state = reply[0].decode()
        return decode(reply[1]) if state == "stored" else state

    async def complete(self, key: str, response: Stored, now: float, ttl: float) -> None:
        await self._complete(keys=[self._name(key)], args=[encode(response), _milliseconds(ttl)])

    async def release(self, key: str) -> None:
        await self._release(keys=[self._name(key)])

    # Lifespan hooks (the gateway's `background`): the client connects on first use.
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        if self._owns_client:
            await self._redis.aclose()
