"""Gateways' usage events over a Redis stream to the servers' monitors: each event reaches one
monitor once; malformed entries are refused; an outage loses events, never a request."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import fields
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from tests.store.redis_server import need_shared_redis, private_redis
from tokenward.core.events import ALLOW, DENY, UsageEvent
from tokenward.store.redis_event_relay import VERSION, EventConsumer, EventRelay, decode_batch

pytestmark = pytest.mark.anyio


def _event(index: int, **fields: object) -> UsageEvent:
    base: dict[str, object] = {
        "time": 1_700_000_000.5 + index,
        "jti": f"jti-{index}",
        "sub": "alice",
        "client_id": "web",
        "route": "api",
        "ip": f"198.51.100.{index % 250}",
        "user_agent": None,
        "status": 200,
        "decision": ALLOW,
        "reason": "ok",
        "sid": None,
        "source": "gateway",
    }
    return UsageEvent(**{**base, **fields})  # type: ignore[arg-type]


def _row(event: UsageEvent) -> list[object]:
    return [getattr(event, field.name) for field in fields(UsageEvent)]


async def _until(condition: object, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def _until_group(redis: Redis, stream: str) -> None:
    for _ in range(250):
        if await redis.exists(stream) and await redis.xinfo_groups(stream):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the consumer group was not created")


async def test_each_event_reaches_exactly_one_of_two_servers() -> None:
    url = need_shared_redis()
    stream = f"tw-test:{secrets.token_hex(6)}:usage"
    redis = Redis.from_url(url)
    received: list[list[UsageEvent]] = [[], []]
    consumers = [
        EventConsumer(Redis.from_url(url), stream, received[index].append, block_ms=50)
        for index in range(2)
    ]
    for consumer in consumers:
        await consumer.start()
    relays = [EventRelay(Redis.from_url(url), stream, interval=0.01, batch=7) for _ in "ab"]
    try:
        # The group exists before anything is shipped ("$": only what arrives from now on).
        await _until_group(redis, stream)
        for relay in relays:
            await relay.start()
        sent = [_event(index, sid=f"s{index}") for index in range(300)]
        for index, event in enumerate(sent):
            relays[index % 2].emit(event)
        await _until(lambda: len(received[0]) + len(received[1]) >= len(sent))
        await asyncio.sleep(0.1)  # nothing more arrives: no duplicates
        everything = received[0] + received[1]
        assert sorted(everything, key=lambda e: e.time) == sent  # every field survives
        assert sum(relay.shipped for relay in relays) == len(sent)
    finally:
        for relay in relays:
            await relay.stop()
            await relay._redis.aclose()
        for consumer in consumers:
            await consumer.stop()
            await consumer._redis.aclose()
        await redis.delete(stream)
        await redis.aclose()


def test_malformed_batches_are_refused() -> None:
    good = [_row(_event(1))]
    assert decode_batch(orjson.dumps(good)) == [_event(1)]
    bad_rows = [
        {"not": "a list"},
        [[1, 2, 3]],
        [[*good[0][:7], "200", *good[0][8:]]],  # status as a string
        [[*good[0][:7], 99, *good[0][8:]]],
        [[*good[0][:8], "maybe", *good[0][9:]]],  # neither allow nor deny
        [[*good[0][:5], "x" * 513, *good[0][6:]]],  # an oversized field
        [[*good[0][:4], None, *good[0][5:]]],  # no route
        [[True, *good[0][1:]]],
    ]
    for rows in bad_rows:
        with pytest.raises((ValueError, TypeError)):
            decode_batch(orjson.dumps(rows))
    with pytest.raises(orjson.JSONDecodeError):
        decode_batch(b"{not json")


async def test_consumer_counts_and_skips_malformed_entries() -> None:
    url = need_shared_redis()
    stream = f"tw-test:{secrets.token_hex(6)}:usage"
    redis = Redis.from_url(url)
    seen: list[UsageEvent] = []
    consumer = EventConsumer(redis, stream, seen.append, block_ms=50)
    try:
        await consumer._ensure_group()
        await redis.xadd(stream, {"v": b"9", "e": b"[]"})
        await redis.xadd(stream, {"v": VERSION, "e": b'[["junk"]]'})
        denied = _event(2, decision=DENY, reason="revoked", status=401)
        row = _row(denied)
        await redis.xadd(stream, {"v": VERSION, "e": orjson.dumps([row])})
        while await consumer.poll():
            pass
        assert seen == [denied]
        assert consumer.malformed == 2
    finally:
        await redis.delete(stream)
        await redis.aclose()


async def test_an_outage_drops_events_and_never_raises(tmp_path: Path) -> None:
    with private_redis(str(tmp_path)) as server:
        redis = Redis.from_url(server.url)
        stream = "tw-test:usage"
        relay = EventRelay(redis, stream, interval=0.01)
        await relay.start()
        relay.emit(_event(1))
        await _until(lambda: relay.shipped == 1)
        server.stop()
        relay.emit(_event(2))
        await _until(lambda: relay.dropped == 1)
        relay.emit(_event(3))  # emitting during the outage never blocks nor raises
        server.start()
        await _until(lambda: relay.shipped == 2)
        assert await redis.xlen(stream) == 1  # a fresh server: only what came after
        await relay.stop()
        await redis.aclose()
