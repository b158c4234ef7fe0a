"""Scaled out: one alert per detector and target for the deployment, not one per server."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from redis.asyncio import Redis

from tests.conftest import FrozenClock
from tests.monitor.conftest import make_rig
from tests.store.redis_server import need_shared_redis
from tokenward.monitor.alerts import Finding, Target
from tokenward.store.redis_alert_claims import RedisAlertClaims
from tokenward.store.redis_client import connect

pytestmark = pytest.mark.anyio


def _finding(jti: str) -> Finding:
    return Finding("ip_spread", f"tok:{jti}", "spread", "seen from 4 networks", Target(jti=jti))


async def test_two_servers_raise_one_alert_and_respond_once(clock: FrozenClock) -> None:
    redis = Redis.from_url(need_shared_redis())
    prefix = f"tw-test:{secrets.token_hex(4)}:alerted:"
    a = make_rig(clock, claims=RedisAlertClaims(redis, prefix), cooldown=300)
    b = make_rig(clock, claims=RedisAlertClaims(redis, prefix), cooldown=300)
    try:
        assert await a.monitor.raise_alert(_finding("j1")) is not None
        assert await b.monitor.raise_alert(_finding("j1")) is None  # claimed at A
        assert await a.monitor.raise_alert(_finding("j1")) is None  # A's own repeat
        assert a.monitor.alerts.recent()[0].occurrences == 2
        assert (len(b.monitor.alerts.recent()), b.monitor.claimed_elsewhere) == (0, 1)
        alerts = [x for x in a.audit_lines() + b.audit_lines() if x["event"] == "security_alert"]
        assert len(alerts) == 1
        # Another target is its own alert, wherever it is found first.
        assert await b.monitor.raise_alert(_finding("j2")) is not None
        # The claim ends with the cooldown.
        c = make_rig(clock, claims=RedisAlertClaims(redis, prefix + "short:"), cooldown=0.001)
        assert await c.monitor.raise_alert(_finding("j3")) is not None
        clock.advance(1)
        await asyncio.sleep(0.02)  # Redis's own clock expires the claim
        assert await c.monitor.raise_alert(_finding("j3")) is not None
    finally:
        keys = [key async for key in redis.scan_iter(match=prefix + "*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


async def test_redis_unreachable_raises_the_alert_here(clock: FrozenClock) -> None:
    redis = connect("redis://127.0.0.1:1/0")  # nothing listens on port 1
    rig = make_rig(clock, claims=RedisAlertClaims(redis, "tw-test:"))
    try:
        assert await rig.monitor.raise_alert(_finding("j1")) is not None  # a duplicate beats a miss
    finally:
        await redis.aclose()
