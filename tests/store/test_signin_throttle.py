"""The sign-in throttle, in memory, on Redis and on SQL alike: per (username, IP) tight, per IP
looser, per username a high ceiling; counted before the password check, so parallel guesses
cannot all pass; on Redis one allowance for every node and across restarts, and memory while it
is down; on SQLite and PostgreSQL one allowance for every process on the database."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.conftest import FrozenClock
from tests.store.conftest import SQL, open_engine
from tests.store.redis_server import need_shared_redis
from tokenward.core.throttle import SignInLimits, SignInThrottle
from tokenward.store.memory_signin_throttle import MemorySignInThrottle
from tokenward.store.redis_client import connect
from tokenward.store.redis_signin_throttle import RedisSignInThrottle
from tokenward.store.sql import SqlSignInThrottle, session_factory

pytestmark = pytest.mark.anyio
LIMITS = SignInLimits()
Factory = Callable[[], SignInThrottle]  # another node (a new client, the same shared state)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis), *SQL])
async def nodes(
    request: pytest.FixtureRequest, clock: FrozenClock, tmp_path: Path
) -> AsyncIterator[Factory]:
    if request.param == "memory":
        throttle = MemorySignInThrottle(clock)
        yield lambda: throttle  # one process: every "node" is this one
        return
    if request.param in ("sqlite", "postgres"):
        async with open_engine(request.param, tmp_path) as engine:
            # Each "node" draws its own connections from the pool: concurrent transactions.
            yield lambda: SqlSignInThrottle(session_factory(engine), clock)
        return
    url, prefix = need_shared_redis(), f"tw-test:{secrets.token_hex(6)}:signin:"
    clients: list[Redis] = []

    def node() -> SignInThrottle:
        clients.append(connect(url))
        return RedisSignInThrottle(clients[-1], prefix, MemorySignInThrottle(clock), clock=clock)

    yield node
    async for name in clients[0].scan_iter(match=prefix + "*"):
        await clients[0].delete(name)
    for client in clients:
        await client.aclose()


async def fail(throttle: SignInThrottle, username: str, ip: str, times: int = 1) -> None:
    for _ in range(times):
        attempt = await throttle.attempt(username, ip)
        assert attempt.wait is None, "refused early"


async def refused(throttle: SignInThrottle, username: str, ip: str) -> int | None:
    attempt = await throttle.attempt(username, ip)
    if attempt.wait is None:
        await throttle.forgive(attempt)  # a probe: leave the counts as they were
    return attempt.wait


async def test_an_attacker_from_one_address_does_not_lock_the_user_out(nodes: Factory) -> None:
    throttle = nodes()
    await fail(throttle, "alice", "203.0.113.66", LIMITS.pair.failures)

    assert await refused(throttle, "alice", "203.0.113.66") == 301  # until the window ends
    assert await refused(throttle, "Alice", "203.0.113.66") is not None  # one username, any case
    assert await refused(throttle, "alice", "198.51.100.7") is None  # alice at home
    assert await refused(throttle, "bob", "203.0.113.66") is None


async def test_one_address_guessing_many_usernames_is_stopped(nodes: Factory) -> None:
    throttle = nodes()
    for i in range(LIMITS.ip.failures):
        await fail(throttle, f"user{i}", "203.0.113.66")

    assert await refused(throttle, "someone-else", "203.0.113.66") == 301
    assert await refused(throttle, "someone-else", "198.51.100.7") is None


async def test_many_addresses_guessing_one_username_meet_its_ceiling(nodes: Factory) -> None:
    throttle = nodes()
    per_address = LIMITS.pair.failures - 1  # each address stays under its own limit
    addresses = -(-LIMITS.user.failures // per_address)
    for i in range(addresses):
        await fail(throttle, "alice", f"10.9.{i}.1", per_address)

    assert await refused(throttle, "alice", "198.51.100.7") is not None
    assert await refused(throttle, "bob", "198.51.100.7") is None


async def test_a_success_forgets_the_pairs_failures_only(
    nodes: Factory, clock: FrozenClock
) -> None:
    throttle = nodes()
    await fail(throttle, "alice", "198.51.100.7", LIMITS.pair.failures - 1)

    await throttle.succeeded(await throttle.attempt("alice", "198.51.100.7"))

    await fail(throttle, "alice", "198.51.100.7", LIMITS.pair.failures)  # a fresh allowance
    assert await refused(throttle, "alice", "198.51.100.7") is not None
    # The address's own count kept all nine failures (not the success): 11 more reach 20.
    for i in range(LIMITS.ip.failures - 2 * LIMITS.pair.failures + 1):
        await fail(throttle, f"user{i}", "198.51.100.7")
    assert await refused(throttle, "carol", "198.51.100.7") is not None


async def test_the_window_slides(nodes: Factory, clock: FrozenClock) -> None:
    throttle = nodes()
    await fail(throttle, "alice", "203.0.113.66", 1)
    clock.advance(100)
    await fail(throttle, "alice", "203.0.113.66", LIMITS.pair.failures - 1)
    assert await refused(throttle, "alice", "203.0.113.66") == 201  # the first leaves at 300 s

    clock.advance(201)

    assert await refused(throttle, "alice", "203.0.113.66") is None  # one slot came free
    await fail(throttle, "alice", "203.0.113.66", 1)
    assert await refused(throttle, "alice", "203.0.113.66") == 100  # 99 s, rounded up


async def test_parallel_guesses_get_exactly_the_allowance(nodes: Factory) -> None:
    # Counted before the (slow) password check: twenty guesses at once, on two nodes, get five.
    first, second = nodes(), nodes()
    attempts = await asyncio.gather(
        *((first if i % 2 else second).attempt("alice", "203.0.113.66") for i in range(20))
    )

    assert sum(1 for attempt in attempts if attempt.wait is None) == LIMITS.pair.failures


async def test_nodes_share_one_allowance_and_a_restart_keeps_it(nodes: Factory) -> None:
    first, second = nodes(), nodes()
    await fail(first, "alice", "203.0.113.66", 3)
    await fail(second, "alice", "203.0.113.66", LIMITS.pair.failures - 3)

    restarted = nodes()  # memory: the same process; Redis: a new client, as after a restart

    for node in (first, second, restarted):
        assert await refused(node, "alice", "203.0.113.66") is not None


async def test_forgiving_takes_back_one_attempt(nodes: Factory) -> None:
    throttle = nodes()
    await fail(throttle, "device:u1", "203.0.113.66", LIMITS.pair.failures - 1)
    right = await throttle.attempt("device:u1", "203.0.113.66")

    await throttle.forgive(right)

    await fail(throttle, "device:u1", "203.0.113.66", 1)  # the last slot: the right one is free
    assert await refused(throttle, "device:u1", "203.0.113.66") is not None


async def test_redis_down_falls_back_to_this_process(clock: FrozenClock) -> None:
    unreachable = connect("redis://127.0.0.1:9/0", timeout=0.2)  # discard port: refused
    throttle = RedisSignInThrottle(
        unreachable, "tw-test:", MemorySignInThrottle(clock), clock=clock
    )
    try:
        await fail(throttle, "alice", "203.0.113.66", LIMITS.pair.failures)
        assert await refused(throttle, "alice", "203.0.113.66") is not None  # still throttled
        right = await throttle.attempt("alice", "198.51.100.7")
        assert right.wait is None
        assert not right.shared
        await throttle.succeeded(right)  # taken back where it was counted, without Redis
    finally:
        await unreachable.aclose()
