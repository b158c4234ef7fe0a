"""Browser-mode sessions shared by every gateway: the gateway's `SessionStore` port on Redis.

With this store a browser signed in through one gateway is served by any other (no sticky
sessions). Keys, under the deployment's `Namespace.bff_sessions` prefix:

- `s:<key>`: the sealed session record, with a TTL (the session's remaining lifetime, or the
  idle timeout, whichever ends first); `load` with an idle timeout is one GETEX;
- `l:<key>`: a pending sign-in, read with GETDEL: a callback is redeemed once, on one gateway;
- `r:<key>`: the session's refresh lock (SET NX PX; released by a compare-and-delete script,
  so a holder that overran its TTL never frees a lock someone else took since).

`<key>` is derived from the cookie (or state) by HKDF and the records are AES-GCM sealed under
another derivation (`tokenward.gateway.bff_seal`): Redis never holds a cookie value or a
readable token. Redis errors propagate: the gateway answers 503.
"""

from __future__ import annotations

from typing import cast

from redis.asyncio import Redis

PREFIX = "tokenward:bff:"

UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _milliseconds(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisSessionStore:
    def __init__(self, redis: Redis, prefix: str = PREFIX) -> None:
        """`prefix`: one per deployment sharing a Redis (`Namespace.bff_sessions`)."""
        self._redis = redis
        self._prefix = prefix
        self._unlock = redis.register_script(UNLOCK)

    async def create(self, key: str, blob: bytes, ttl: float) -> None:
        await self._redis.set(self._prefix + "s:" + key, blob, px=_milliseconds(ttl))

    async def load(self, key: str, idle: float | None) -> bytes | None:
        name = self._prefix + "s:" + key
        if idle is None:
            found = await self._redis.get(name)
        else:
            found = await self._redis.getex(name, px=_milliseconds(idle))
        return cast("bytes | None", found)

    async def replace(self, key: str, blob: bytes, ttl: float) -> bool:
        # XX: a session logged out (or expired) meanwhile stays gone.
        done = await self._redis.set(
            self._prefix + "s:" + key, blob, px=_milliseconds(ttl), xx=True
        )
        return bool(done)

    async def delete(self, key: str) -> None:
        await self._redis.delete(self._prefix + "s:" + key)

    async def put_login(self, key: str, blob: bytes, ttl: float) -> None:
        await self._redis.set(self._prefix + "l:" + key, blob, px=_milliseconds(ttl))

    async def take_login(self, key: str) -> bytes | None:
        return cast("bytes | None", await self._redis.getdel(self._prefix + "l:" + key))

    async def lock(self, key: str, owner: str, ttl: float) -> bool:
        taken = await self._redis.set(
            self._prefix + "r:" + key, owner, px=_milliseconds(ttl), nx=True
        )
        return bool(taken)

    async def unlock(self, key: str, owner: str) -> None:
        await self._unlock(keys=[self._prefix + "r:" + key], args=[owner])
