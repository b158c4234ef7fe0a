"""Idempotency stores, memory and Redis, against one contract; the Redis one across clients."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from tests.store.redis_server import need_shared_redis
from tokenward.core.idempotency_records import Stored
from tokenward.gateway.idempotency import IdempotencyStore, MemoryIdempotencyStore
from tokenward.store.redis_idempotency import (
    IN_FLIGHT_LIMIT,
    RedisIdempotencyStore,
    decode,
    encode,
)

pytestmark = pytest.mark.anyio
ANSWER = Stored(201, [(b"content-type", b"application/json"), (b"x-id", b"7")], b'{"id":7}')


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[IdempotencyStore]:
    if request.param == "memory":
        yield MemoryIdempotencyStore()
        return
    redis = Redis.from_url(need_shared_redis())
    prefix = f"tw-test:{secrets.token_hex(6)}:"
    yield RedisIdempotencyStore(redis, prefix)
    async for name in redis.scan_iter(match=prefix + "*"):
        await redis.delete(name)
    await redis.aclose()


async def test_first_is_new_then_busy_then_replayed(store: IdempotencyStore) -> None:
    assert await store.begin("k", b"fp", 0.0, 60) == "new"
    assert await store.begin("k", b"fp", 1.0, 60) == "busy"
    assert await store.begin("k", b"other", 1.0, 60) == "mismatch"
    await store.complete("k", ANSWER, 2.0, 60)
    assert await store.begin("k", b"fp", 3.0, 60) == ANSWER
    assert await store.begin("k", b"other", 3.0, 60) == "mismatch"
    assert await store.begin("k2", b"fp", 3.0, 60) == "new"  # keys are independent


async def test_release_frees_an_in_flight_key_but_never_a_stored_answer(
    store: IdempotencyStore,
) -> None:
    assert await store.begin("k", b"fp", 0.0, 60) == "new"
    await store.release("k")
    assert await store.begin("k", b"fp2", 0.0, 60) == "new"
    await store.complete("k", ANSWER, 0.0, 60)
    await store.release("k")  # too late: the answer stands
    assert await store.begin("k", b"fp2", 0.0, 60) == ANSWER


async def test_redis_records_expire_with_the_route_ttl() -> None:
    redis = Redis.from_url(need_shared_redis())
    prefix = f"tw-test:{secrets.token_hex(6)}:"
    store = RedisIdempotencyStore(redis, prefix, owns_client=True)
    assert await store.begin("k", b"fp", 0.0, 0.2) == "new"
    (name,) = [name async for name in redis.scan_iter(match=prefix + "*")]
    assert IN_FLIGHT_LIMIT * 1000 - 2000 < await redis.pttl(name) <= IN_FLIGHT_LIMIT * 1000
    await store.complete("k", ANSWER, 0.0, 0.2)
    assert 0 < await redis.pttl(name) <= 200
    assert b"alice" not in name  # key names are digests: no subject or client value in Redis
    await asyncio.sleep(0.3)
    assert await store.begin("k", b"fp2", 0.0, 0.2) == "new"
    await store.release("k")
    await store.stop()


async def test_concurrent_begins_on_two_clients_have_one_winner() -> None:
    url = need_shared_redis()
    prefix = f"tw-test:{secrets.token_hex(6)}:"
    nodes = [RedisIdempotencyStore(Redis.from_url(url), prefix, owns_client=True) for _ in "ab"]
    for round_ in range(20):
        key = f"alice\0key-{round_}"
        states = await asyncio.gather(
            *(nodes[index % 2].begin(key, b"fp", 0.0, 60) for index in range(10))
        )
        assert sorted(states, key=str) == ["busy"] * 9 + ["new"]
        await nodes[round_ % 2].complete(key, ANSWER, 0.0, 60)
        assert await nodes[(round_ + 1) % 2].begin(key, b"fp", 0.0, 60) == ANSWER
        await nodes[0].release(key)
    for node in nodes:
        await node.stop()


fields = st.tuples(st.binary(max_size=40), st.binary(max_size=300))


@given(
    st.integers(100, 599),
    st.lists(fields, max_size=20),
    st.binary(max_size=2000),
)
def test_answers_survive_encoding(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    stored = Stored(status, headers, body)
    assert decode(encode(stored)) == stored
