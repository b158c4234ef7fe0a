"""The Redis replay cache on the machine's Redis: a claim is taken once, `hold` extends it to the
given expiry or releases it (the Shared Signals receiver's pending-then-done jti markers)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.conftest import FrozenClock
from tests.store.redis_server import need_shared_redis
from tokenward.store.redis_replay import RedisReplayCache

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
async def client() -> AsyncIterator[Redis]:
    redis = Redis.from_url(need_shared_redis())
    yield redis
    await redis.aclose()


async def test_a_claim_is_extended_or_released(client: Redis) -> None:
    clock = FrozenClock()
    prefix = f"tw-test:{secrets.token_hex(6)}:"
    cache = RedisReplayCache(client, clock, prefix)
    now = clock()
    try:
        assert await cache.first_use("set:a", now + 60)
        assert not await cache.first_use("set:a", now + 60)
        await cache.hold("set:a", now + 3600)
        ttls = [await client.pttl(name) async for name in client.scan_iter(match=prefix + "*")]
        assert len(ttls) == 1
        assert 3_500_000 < ttls[0] <= 3_600_000  # held until the SET is too old

        await cache.hold("set:a", now)  # released
        assert await cache.first_use("set:a", now + 60)  # a retry claims it again
        assert not await cache.first_use("set:a", now + 60)
    finally:
        async for name in client.scan_iter(match=prefix + "*"):
            await client.delete(name)


async def test_keys_differing_only_in_lone_surrogates_are_distinct(client: Redis) -> None:
    """A jti is any JSON string; two made of different lone surrogates are two jtis. Digested
    with `errors="replace"` both were "?", and the second was refused as a replay."""
    clock = FrozenClock()
    prefix = f"tw-test:{secrets.token_hex(6)}:"
    cache = RedisReplayCache(client, clock, prefix)
    now = clock()
    try:
        assert await cache.first_use("dpop:\ud800", now + 60)
        assert await cache.first_use("dpop:\ud801", now + 60)
        assert await cache.first_use("dpop:?", now + 60)
        assert not await cache.first_use("dpop:\ud800", now + 60)
    finally:
        async for name in client.scan_iter(match=prefix + "*"):
            await client.delete(name)
