"""The gateway's `monitor:` section: usage events shipped over Redis to the servers' monitors,
and the deployment's blocklist refused here (403 ip_blocked) (issue 8 across nodes)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import cast

import orjson
import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from tests.conftest import FrozenClock
from tests.gateway.conftest import BASE_CONFIG, GatewayFactory
from tests.store.redis_server import need_shared_redis
from tokenward.core.events import DENY, IP_BLOCKED, UsageEvent
from tokenward.deploy.namespace import Namespace
from tokenward.gateway.config import ConfigError, parse_config
from tokenward.store.memory_blocklist import MemoryBlocklist
from tokenward.store.redis_blocklist import RedisBlocklist
from tokenward.store.redis_event_relay import EventRelay, decode_batch

ROUTES = """
trust: {issuer: https://as.example, audience: https://api.example}
routes:
  - {name: items, prefix: /items, upstreams: [http://10.0.0.1:80], auth: bearer}
"""
TRUSTING_LOOPBACK = BASE_CONFIG.replace("routes:", "trusted_proxies: [127.0.0.1/32]\nroutes:", 1)
CLIENT = {"x-forwarded-for": "198.51.100.23"}
REVOCATIONS = """
revocations:
  database_url: postgresql+asyncpg://db/tokenward
  redis_url: redis://cache:6379/0
"""


def test_monitor_section_uses_the_revocations_redis_or_its_own() -> None:
    config = parse_config(ROUTES + REVOCATIONS + "monitor: {}\n", "gw.yaml")
    assert config.monitor is not None
    assert (config.monitor.redis_url, config.monitor.buffer, config.monitor.blocklist) == (
        None,
        10_000,
        True,
    )
    own = parse_config(
        ROUTES + "monitor: {redis_url: 'redis://events:6379/1', interval: 0.5, blocklist: no,"
        " namespace: 'tokenward:abc'}\n",
        "gw.yaml",
    )
    assert own.monitor is not None
    assert (own.monitor.redis_url, own.monitor.interval, own.monitor.blocklist) == (
        "redis://events:6379/1",
        0.5,
        False,
    )
    assert own.monitor.namespace == "tokenward:abc"
    assert parse_config(ROUTES, "gw.yaml").monitor is None


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("monitor: {}\n", "needs redis_url"),
        ("monitor: {redis_url: 'http://cache'}\n", "must be redis://"),
        ("monitor: {redis_url: 'redis://c', buffer: 0}\n", "at least"),
        ("monitor: {redis_url: 'redis://c', streams: x}\n", "unknown field"),
    ],
)
def test_bad_monitor_section_is_refused(section: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(ROUTES + section, "gw.yaml")


def test_blocked_address_is_refused_before_the_token_is_read(
    gateway: GatewayFactory, mint: Callable[..., str], clock: FrozenClock
) -> None:
    blocklist = MemoryBlocklist(clock)
    events: list[object] = []

    class Sink:
        def emit(self, event: object) -> None:
            events.append(event)

    # Loopback cannot be blocked: the client is the address our loopback proxy forwards for.
    running = gateway(TRUSTING_LOOPBACK, blocklist=blocklist, usage=Sink())
    headers = {"authorization": f"Bearer {mint()}", **CLIENT}
    assert running.http.get("/items", headers=headers).status_code == 200
    blocklist.block(CLIENT["x-forwarded-for"], 60, "ip_spread", "monitor")
    refused = running.http.get("/items", headers=headers)
    assert refused.status_code == 403
    assert refused.json()["error"] == IP_BLOCKED
    assert running.last_audit()["reason"] == IP_BLOCKED
    # Unauthenticated requests from there are refused the same way (no token oracle).
    assert running.http.get("/items", headers=CLIENT).status_code == 403
    clock.advance(61)  # the block ends by itself
    assert running.http.get("/items", headers=headers).status_code == 200
    deadline = time.monotonic() + 5
    while len(events) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    blocked = events[1]
    assert (blocked.decision, blocked.reason, blocked.status) == (DENY, IP_BLOCKED, 403)  # type: ignore[attr-defined]


def test_events_reach_the_stream_and_a_shared_block_is_enforced(
    gateway: GatewayFactory, mint: Callable[..., str]
) -> None:
    url = need_shared_redis()
    namespace = "tw-test-" + secrets.token_hex(4)
    stream = Namespace(namespace).usage
    # The gateway's client lives on the gateway server's loop (created there on first use).
    redis = Redis.from_url(url)
    relay = EventRelay(redis, stream, interval=0.02, owns_client=True)  # stopped last
    shared = RedisBlocklist(redis, namespace + ":", refresh_interval=0.05)
    running = gateway(TRUSTING_LOOPBACK, usage=relay, blocklist=shared, background=[relay, shared])
    reader = SyncRedis.from_url(url)
    try:
        token = mint(subject="carol")
        for _ in range(3):
            assert (
                running.http.get(
                    "/items", headers={"authorization": f"Bearer {token}", **CLIENT}
                ).status_code
                == 200
            )
        deadline = time.monotonic() + 5
        events: list[UsageEvent] = []
        while len(events) < 3 and time.monotonic() < deadline:
            entries = cast(list[tuple[bytes, dict[bytes, bytes]]], reader.xrange(stream))
            events = [event for _id, fields in entries for event in decode_batch(fields[b"e"])]
            time.sleep(0.02)
        assert [(event.sub, event.source, event.status) for event in events] == [
            ("carol", "gateway", 200)
        ] * 3
        assert all(orjson.dumps(event.jti) and token not in repr(event) for event in events)

        # Another node (an authorization server's monitor) blocks the address.
        async def block_elsewhere() -> None:
            other = Redis.from_url(url)
            try:
                elsewhere = RedisBlocklist(other, namespace + ":")
                elsewhere.block(CLIENT["x-forwarded-for"], 30, "ip_spread", "monitor")
                await elsewhere.flush()
            finally:
                await other.aclose()

        asyncio.run(block_elsewhere())
        started = time.monotonic()
        while running.http.get("/items", headers=CLIENT).status_code != 403:
            assert time.monotonic() - started < 2, "the shared block never reached the gateway"
            time.sleep(0.02)
    finally:
        reader.delete(stream, namespace + ":blocked")
        reader.close()
