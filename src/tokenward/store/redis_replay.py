"""Single-use markers shared by every node (DPoP proof jti, private_key_jwt jti): SET NX PX."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from redis.asyncio import Redis

PREFIX = "tokenward:replay:"


class RedisReplayCache:
    def __init__(
        self, redis: Redis, clock: Callable[[], float] = time.time, prefix: str = PREFIX
    ) -> None:
        self._redis = redis
        self._clock = clock
        self._prefix = prefix

    async def first_use(self, key: str, expires_at: float) -> bool:
        ttl_ms = max(1, int((expires_at - self._clock()) * 1000))
        return bool(await self._redis.set(self._name(key), b"1", nx=True, px=ttl_ms))

    async def hold(self, key: str, expires_at: float) -> None:
        ttl_ms = int((expires_at - self._clock()) * 1000)
        if ttl_ms <= 0:
            await self._redis.delete(self._name(key))
        else:
            await self._redis.set(self._name(key), b"1", px=ttl_ms)

    def _name(self, key: str) -> str:
        # Keys hold client-chosen jti values of any length: store a digest. surrogatepass, as
        # the SQL cache: a jti is any JSON string, and "replace" made distinct lone surrogates
        # one key (the second refused as a replay). Other strings encode as before.
        return self._prefix + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
