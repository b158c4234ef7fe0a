"""Browser-mode session stores, memory and Redis, against one contract; the Redis one across
clients (two gateways), and what a dump of it holds (neither a cookie value nor a token)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.conftest import FrozenClock
from tests.store.redis_server import need_shared_redis
from tokenward.gateway import bff_store
from tokenward.gateway.bff_seal import Sealed, SessionRecord, new_secret
from tokenward.gateway.bff_store import MemorySessionStore, SessionStore
from tokenward.store.redis_bff_sessions import RedisSessionStore

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    if request.param == "memory":
        yield MemorySessionStore(FrozenClock())
        return
    redis = Redis.from_url(need_shared_redis())
    prefix = f"tw-test:{secrets.token_hex(6)}:bff:"
    yield RedisSessionStore(redis, prefix)
    async for name in redis.scan_iter(match=prefix + "*"):
        await redis.delete(name)
    await redis.aclose()


async def test_a_session_is_created_read_and_deleted(store: SessionStore) -> None:
    assert await store.load("k", None) is None
    await store.create("k", b"sealed", 60)
    assert await store.load("k", None) == b"sealed"
    assert await store.load("k", 120) == b"sealed"  # with an idle timeout: read and touched
    await store.delete("k")
    assert await store.load("k", None) is None
    await store.delete("k")  # deleting twice is fine


async def test_replace_never_recreates_a_session_that_is_gone(store: SessionStore) -> None:
    assert await store.replace("k", b"refreshed", 60) is False
    assert await store.load("k", None) is None  # logout meanwhile: it stays signed out
    await store.create("k", b"first", 60)
    assert await store.replace("k", b"refreshed", 60) is True
    assert await store.load("k", None) == b"refreshed"


async def test_a_pending_sign_in_is_taken_once(store: SessionStore) -> None:
    await store.put_login("state", b"pending", 600)
    takes = await asyncio.gather(*(store.take_login("state") for _ in range(8)))
    assert takes.count(b"pending") == 1
    assert takes.count(None) == 7
    assert await store.take_login("other") is None


async def test_the_refresh_lock_has_one_holder_and_only_it_unlocks(store: SessionStore) -> None:
    assert await store.lock("k", "a", 15) is True
    assert await store.lock("k", "b", 15) is False
    await store.unlock("k", "b")  # not b's: still held
    assert await store.lock("k", "c", 15) is False
    await store.unlock("k", "a")
    assert await store.lock("k", "c", 15) is True
    assert await store.lock("other", "a", 15) is True  # per session


async def test_memory_store_expires_sessions_logins_and_locks() -> None:
    clock = FrozenClock()
    store = MemorySessionStore(clock)
    await store.create("k", b"x", 100)
    await store.put_login("s", b"p", 10)
    assert await store.lock("k", "a", 15) is True
    clock.advance(50)
    assert await store.load("k", 30) == b"x"  # idle timeout: now ends 30 s from here
    clock.advance(20)
    assert await store.lock("k", "b", 15) is True  # the first holder's lock expired
    assert await store.take_login("s") is None
    assert await store.load("k", 30) == b"x"
    clock.advance(31)
    assert await store.load("k", 30) is None  # idle for longer than the idle timeout


@pytest.mark.redis
async def test_redis_ttls_follow_the_session_the_idle_timeout_and_the_lock() -> None:
    redis = Redis.from_url(need_shared_redis())
    prefix = f"tw-test:{secrets.token_hex(6)}:bff:"
    store = RedisSessionStore(redis, prefix)
    try:
        await store.create("k", b"x", 3600)
        assert 3_590_000 < await redis.pttl(prefix + "s:k") <= 3_600_000
        await store.load("k", 600)
        assert 590_000 < await redis.pttl(prefix + "s:k") <= 600_000
        await store.put_login("s", b"p", 600)
        assert 590_000 < await redis.pttl(prefix + "l:s") <= 600_000
        await store.lock("k", "a", 15)
        assert 14_000 < await redis.pttl(prefix + "r:k") <= 15_000
    finally:
        async for name in redis.scan_iter(match=prefix + "*"):
            await redis.delete(name)
        await redis.aclose()


@pytest.mark.redis
async def test_two_gateways_race_for_one_lock_and_one_pending_sign_in() -> None:
    url, prefix = need_shared_redis(), f"tw-test:{secrets.token_hex(6)}:bff:"
    first, second = Redis.from_url(url), Redis.from_url(url)
    a, b = RedisSessionStore(first, prefix), RedisSessionStore(second, prefix)
    try:
        locks = await asyncio.gather(
            *(store.lock("k", f"{i}", 15) for i, store in enumerate([a, b] * 5))
        )
        assert locks.count(True) == 1
        await a.put_login("state", b"pending", 600)
        takes = await asyncio.gather(b.take_login("state"), a.take_login("state"))
        assert sorted(takes, key=bool) == [None, b"pending"]
    finally:
        async for name in first.scan_iter(match=prefix + "*"):
            await first.delete(name)
        await first.aclose()
        await second.aclose()


@pytest.mark.redis
async def test_a_dump_of_redis_holds_no_cookie_value_and_no_token() -> None:
    redis = Redis.from_url(need_shared_redis())
    prefix = f"tw-test:{secrets.token_hex(6)}:bff:"
    store = RedisSessionStore(redis, prefix)
    cookie = new_secret()
    record = SessionRecord(
        access_token="eyJ.access." + secrets.token_urlsafe(32),
        refresh_token="refresh-" + secrets.token_urlsafe(32),
        access_expires_at=1.0,
        refresh_ahead=30.0,
        csrf=secrets.token_urlsafe(32),
        ends_at=2.0,
    )
    sealed = Sealed(cookie)
    try:
        await store.create(sealed.key, sealed.seal(record), 60)
        dump = b""
        async for name in redis.scan_iter(match=prefix + "*"):
            dump += name + b"\n" + (await redis.get(name) or b"") + b"\n"
        assert sealed.key.encode() in dump  # the scan did find the session
        for secret in (cookie, record.access_token, record.refresh_token or "", record.csrf):
            assert secret.encode() not in dump
        # Only the cookie opens it; under another cookie it is no session at all.
        assert Sealed(cookie).session(await store.load(sealed.key, None)) == record
        other = Sealed(new_secret())
        assert other.session(await store.load(sealed.key, None)) is None
    finally:
        async for name in redis.scan_iter(match=prefix + "*"):
            await redis.delete(name)
        await redis.aclose()


async def test_memory_store_is_bounded_and_the_oldest_give_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bff_store, "MAX_LOGINS", 3)
    clock = FrozenClock()
    store = MemorySessionStore(clock)
    for index in range(5):  # /login is unauthenticated: a flood must not grow memory
        await store.put_login(f"s{index}", b"p", 600)
    assert [await store.take_login(f"s{index}") for index in range(5)] == [
        None, None, b"p", b"p", b"p"
    ]  # fmt: skip
