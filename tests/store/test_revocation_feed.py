"""The revocation feed: the log is the truth, Redis pub/sub the fast path, resync the net."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.conftest import FrozenClock
from tests.store.redis_server import need_shared_redis, private_redis
from tokenward.core.errors import TemporarilyUnavailable
from tokenward.core.records import Revocation, RevocationKind
from tokenward.guard import RevocationMirror
from tokenward.store.memory import MemoryRevocationStore
from tokenward.store.redis_client import connect
from tokenward.store.revocation_feed import RevocationFeed, decode, encode

pytestmark = pytest.mark.anyio


def jti(value: str, clock: float) -> Revocation:
    return Revocation(RevocationKind.JTI, value, None, clock + 3600)


async def until(condition: object, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def test_without_redis_other_nodes_catch_up_by_resync() -> None:
    log = MemoryRevocationStore()
    a, b = RevocationMirror(), RevocationMirror()
    node_a, node_b = RevocationFeed(log, [a]), RevocationFeed(log, [b])
    await node_a.revoke(jti("t1", time.time()))
    assert "t1" in a.jtis
    assert "t1" not in b.jtis
    assert await node_b.resync() == 1
    assert "t1" in b.jtis
    assert b.applied_seq == 1


async def test_a_local_write_never_skips_an_earlier_entry() -> None:
    log = MemoryRevocationStore()
    a, b = RevocationMirror(), RevocationMirror()
    node_a, node_b = RevocationFeed(log, [a]), RevocationFeed(log, [b])
    await node_b.revoke(jti("from-b", time.time()))  # seq 1, A has not seen it yet
    await node_a.revoke(jti("from-a", time.time()))  # seq 2, applied locally at A
    assert node_a.applied_seq == 0  # the local apply did not advance past seq 1
    await node_a.resync()
    assert {"from-a", "from-b"} <= a.jtis.keys()


async def test_pubsub_reaches_another_node_in_milliseconds() -> None:
    url = need_shared_redis()
    channel = f"test:{secrets.token_hex(8)}"
    log = MemoryRevocationStore()
    a, b = RevocationMirror(), RevocationMirror()
    redis_a, redis_b = Redis.from_url(url), Redis.from_url(url)
    node_a = RevocationFeed(log, [a], redis=redis_a, channel=channel, resync_interval=3600)
    node_b = RevocationFeed(log, [b], redis=redis_b, channel=channel, resync_interval=3600)
    await node_a.start()
    await node_b.start()
    try:
        await asyncio.sleep(0.2)  # both subscribed
        started = time.monotonic()
        await node_a.revoke(jti("fast", time.time()))
        await until(lambda: "fast" in b.jtis)
        assert time.monotonic() - started < 0.5
        assert b.applied_seq == 1
    finally:
        await node_a.stop()
        await node_b.stop()
        await redis_a.aclose()
        await redis_b.aclose()


async def test_a_gap_in_sequence_numbers_triggers_a_resync() -> None:
    url = need_shared_redis()
    channel = f"test:{secrets.token_hex(8)}"
    log = MemoryRevocationStore()
    await log.revoke(jti("missed-1", time.time()))
    await log.revoke(jti("missed-2", time.time()))
    mirror = RevocationMirror()
    redis = Redis.from_url(url)
    feed = RevocationFeed(log, [mirror], redis=redis, channel=channel, resync_interval=3600)
    feed.applied_seq = 0
    try:
        await feed._on_message(encode(2, jti("missed-2", time.time())))
        assert {"missed-1", "missed-2"} <= mirror.jtis.keys()
        assert feed.applied_seq == 2
    finally:
        await redis.aclose()


class FailingLog(MemoryRevocationStore):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def since(self, seq: int) -> Sequence[tuple[int, Revocation]]:
        if self.down:
            raise ConnectionError("database unavailable")
        return await super().since(seq)


async def test_stale_mirror_fails_closed_then_recovers(clock: FrozenClock) -> None:
    log = FailingLog()
    mirror = RevocationMirror()
    feed = RevocationFeed(log, [mirror], clock=clock, max_staleness=30)
    await feed.resync()
    assert mirror.fresh_until == clock() + 30
    log.down = True
    with pytest.raises(ConnectionError):
        await feed.resync()
    clock.advance(31)
    from tests.conftest import AUDIENCE, ISSUER
    from tokenward.guard import KeyringKeySource, Validator
    from tokenward.tokens.grant import TokenGrant
    from tokenward.tokens.jwt_access import JwtAccessTokenStrategy
    from tokenward.tokens.keyring import KeyPolicy, Keyring

    ring = Keyring(KeyPolicy(), clock)
    ring.ensure_ready()
    token = (
        JwtAccessTokenStrategy(ring, ISSUER, clock=clock)
        .mint_sync(TokenGrant("u", "c", (AUDIENCE,)))
        .value
    )
    validator = Validator(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=KeyringKeySource(ring),
        revocations=mirror,
        clock=clock,
    )
    with pytest.raises(TemporarilyUnavailable):
        validator.authenticate_sync("Bearer " + token)
    log.down = False
    await feed.resync()
    assert validator.authenticate_sync("Bearer " + token).sub == "u"
    assert feed.staleness() == 0


async def test_fail_open_keeps_serving(clock: FrozenClock) -> None:
    mirror = RevocationMirror()
    feed = RevocationFeed(MemoryRevocationStore(), [mirror], clock=clock, fail_open=True)
    await feed.resync()
    assert mirror.fresh_until == float("inf")


async def test_revocation_while_redis_is_down_is_published_when_it_returns(tmp_path: Path) -> None:
    channel = f"test:{secrets.token_hex(8)}"
    with private_redis(str(tmp_path)) as server:
        log = MemoryRevocationStore()
        a, b = RevocationMirror(), RevocationMirror()
        redis_a, redis_b = Redis.from_url(server.url), Redis.from_url(server.url)
        node_a = RevocationFeed(log, [a], redis=redis_a, channel=channel, resync_interval=3600)
        node_b = RevocationFeed(log, [b], redis=redis_b, channel=channel, resync_interval=0.2)
        await node_a.start()
        await node_b.start()
        try:
            await asyncio.sleep(0.2)
            server.stop()
            await node_a.revoke(jti("during-outage", time.time()))  # accepted: the log has it
            assert "during-outage" in a.jtis
            server.start()
            await until(lambda: "during-outage" in b.jtis, within=10)
            await until(lambda: not node_a._unpublished, within=10)
        finally:
            await node_a.stop()
            await node_b.stop()
            await redis_a.aclose()
            await redis_b.aclose()


async def test_validator_rejects_after_remote_revocation(clock: FrozenClock) -> None:
    log = MemoryRevocationStore()
    mirror = RevocationMirror()
    other = RevocationFeed(log, [RevocationMirror()])
    feed = RevocationFeed(log, [mirror])
    await other.revoke(Revocation(RevocationKind.SUBJECT, "u", clock() + 1, clock() + 3600))
    await feed.resync()
    assert mirror.reason("j", "u", None, "c", int(clock())) is not None


async def test_concurrent_revocations_are_each_published_once() -> None:
    """revoke(), the resync loop and the listen loop publish concurrently: one at a time, or
    they pop each other's entries (a 500 at /revoke) or publish one twice."""
    url = need_shared_redis()
    channel = f"test:{secrets.token_hex(8)}"
    log = MemoryRevocationStore()
    a = RevocationMirror()
    redis_a, listener = connect(url), Redis.from_url(url)
    node_a = RevocationFeed(log, [a], redis=redis_a, channel=channel, resync_interval=0.001)
    pubsub = listener.pubsub()
    await pubsub.subscribe(channel)
    await node_a.start()
    try:
        now = time.time()
        seqs = await asyncio.gather(*(node_a.revoke(jti(f"c{i}", now)) for i in range(50)))
        assert sorted(seqs) == list(range(1, 51))
        received: list[int] = []
        deadline = time.monotonic() + 5
        while len(received) < 50 and time.monotonic() < deadline:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is not None:
                received.append(decode(message["data"])[0])
        await asyncio.sleep(0.1)  # nothing more arrives
        while (message := await pubsub.get_message(ignore_subscribe_messages=True)) is not None:
            received.append(decode(message["data"])[0])
        assert sorted(received) == list(range(1, 51))
    finally:
        await node_a.stop()
        await pubsub.aclose()
        await redis_a.aclose()
        await listener.aclose()


async def test_an_unresponsive_redis_delays_revoke_by_half_a_second_at_most() -> None:
    """A Redis that accepts connections and never answers: /revoke still answers, the
    revocation is in the log and this node's mirror, and stays queued for publishing."""
    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    redis = connect(f"redis://127.0.0.1:{port}/0")
    log = MemoryRevocationStore()
    a = RevocationMirror()
    node = RevocationFeed(log, [a], redis=redis, channel="test:silent", resync_interval=3600)
    try:
        started = time.monotonic()
        await node.revoke(jti("stuck", time.time()))
        assert time.monotonic() - started < 0.5 + 0.3
        assert "stuck" in a.jtis
        assert [seq for seq, _ in await log.since(0)] == [1]
        assert node._unpublished  # published once Redis answers again
    finally:
        await redis.aclose()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_changed_is_set_by_a_local_write_and_by_a_resync_of_another_nodes() -> None:
    log = MemoryRevocationStore()
    node_a, node_b = RevocationFeed(log, [RevocationMirror()]), RevocationFeed(log, [])
    before_write = node_a.changed()
    await node_a.revoke(jti("local", time.time()))
    assert before_write.is_set()
    before_resync = node_a.changed()
    assert not before_resync.is_set()  # a fresh event for the next change
    assert await node_a.resync() == 1  # its own entry, now in order: a change too
    before_remote = node_a.changed()
    await node_b.revoke(jti("remote", time.time()))
    assert not before_remote.is_set()
    assert await node_a.resync() == 1
    assert before_remote.is_set()
    quiet = node_a.changed()
    assert await node_a.resync() == 0
    assert not quiet.is_set()  # a re-read that finds nothing wakes nobody
