"""The Redis rate-limit backend: two gateways over loopback sharing the machine's Redis hold a
limit exactly across both (limit L, 3L requests spread over both, exactly L pass)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from redis.asyncio import Redis

from tests.gateway.conftest import GatewayFactory, Running
from tests.store.redis_server import need_shared_redis, private_redis
from tokenward.core.ratelimits import RatePolicy
from tokenward.gateway.config import parse_config
from tokenward.store.redis_ratelimit import RedisRateLimiter

LIMIT = 7
CONFIG = f"""
rate_limits:
  redis_url: REDIS
  redis_prefix: "PREFIX"
routes:
  - name: open
    prefix: /open
    upstreams: [{{upstream}}]
    auth: none
    rate_limit: {{{{requests: {LIMIT}, per: 3600, key: ip}}}}
"""


def _config(prefix: str) -> str:
    return CONFIG.replace("REDIS", need_shared_redis()).replace("PREFIX", prefix)


def _node(gateway: GatewayFactory, text: str) -> Running:
    config = parse_config(text.format(upstream="http://x"))
    assert config.rate_limit_redis_url is not None
    assert config.rate_limit_redis_prefix is not None
    # Each gateway its own client, as separate processes would have (it connects on first use,
    # in the gateway's own event loop), stopped with the gateway's lifespan.
    limiter = RedisRateLimiter(
        Redis.from_url(config.rate_limit_redis_url),
        config.rate_limit_redis_prefix,
        owns_client=True,
    )
    return gateway(text, limiter=limiter, background=[limiter])


def test_limit_is_exact_across_two_gateways(gateway: GatewayFactory) -> None:
    text = _config(f"tw-test:{secrets.token_hex(6)}:")
    nodes = [_node(gateway, text), _node(gateway, text)]

    def hit(index: int) -> httpx.Response:
        return nodes[index % 2].http.get("/open/x")

    with ThreadPoolExecutor(6) as pool:  # concurrent, interleaved over both gateways
        responses = list(pool.map(hit, range(3 * LIMIT)))
    passed = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(passed) == LIMIT
    assert len(refused) == 2 * LIMIT
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert {r.headers["ratelimit-policy"] for r in responses} == {
        f'"routes[0].rate_limit";q={LIMIT};w=3600'
    }
    remaining = sorted(int(r.headers["ratelimit"].split("r=")[1].split(";")[0]) for r in passed)
    assert remaining == list(range(LIMIT))  # every admitted request saw its own place


def test_decisions_and_expiry_of_state() -> None:
    url = need_shared_redis()
    prefix = f"tw-test:{secrets.token_hex(6)}:"
    policy = RatePolicy("p", 2, 0.2, "ip")

    async def run() -> None:
        redis = Redis.from_url(url)
        limiter = RedisRateLimiter(redis, prefix, owns_client=True)
        first = await limiter.acquire("k", policy, 0.0)
        second = await limiter.acquire("k", policy, 0.0)
        third = await limiter.acquire("k", policy, 0.0)
        assert (first.allowed, first.remaining) == (True, 1)
        assert (second.allowed, second.remaining) == (True, 0)
        assert not third.allowed
        assert 0 < third.retry_after <= 0.1 + 1e-3
        assert await redis.pttl(prefix + "k") <= 201  # state expires once the debt is paid
        await asyncio.sleep(0.25)  # Redis's clock: let the window pass for real
        assert await redis.exists(prefix + "k") == 0
        assert (await limiter.acquire("k", policy, 0.0)).allowed
        await limiter.stop()

    asyncio.run(run())


def test_unreachable_redis_fails_closed_with_503(gateway: GatewayFactory, tmp_path: Path) -> None:
    with private_redis(str(tmp_path)) as server:
        text = CONFIG.replace("REDIS", server.url).replace("PREFIX", "tw-test:")
        node = _node(gateway, text)
        assert node.http.get("/open/x").status_code == 200
        server.stop()
        down = node.http.get("/open/x")
        assert (down.status_code, down.json()["error"]) == (503, "temporarily_unavailable")
        assert down.headers["retry-after"] == "1"
        server.start()
        assert node.http.get("/open/x").status_code == 200  # recovers by itself


def test_implicit_default_limit_keeps_serving_without_redis(
    gateway: GatewayFactory, tmp_path: Path, mint: Callable[..., str]
) -> None:
    """Nobody asked for the default 1,000/h per token: losing Redis counts it per node instead
    of refusing every bearer route; an explicit limit still fails closed."""
    with private_redis(str(tmp_path)) as server:
        text = (
            "trust: {{issuer: {issuer}, audience: {audience}}}\n"
            + CONFIG.replace("REDIS", server.url).replace("PREFIX", "tw-test:")
            + "  - {{name: items, prefix: /items, upstreams: [{upstream}], auth: bearer}}\n"
        )
        config = parse_config(
            text.format(upstream="http://x", issuer="https://i", audience="https://a")
        )
        assert config.rate_limit_redis_url is not None
        limiter = RedisRateLimiter(
            Redis.from_url(config.rate_limit_redis_url), "tw-test:", owns_client=True
        )
        node = gateway(text, limiter=limiter, background=[limiter])
        bearer = {"authorization": f"Bearer {mint()}"}
        assert node.http.get("/items", headers=bearer).headers["ratelimit"] == '"default";r=999;t=4'
        server.stop()
        degraded = node.http.get("/items", headers=bearer)
        assert degraded.status_code == 200
        assert degraded.headers["ratelimit"].startswith('"default";r=999;')  # this node's count
        assert node.http.get("/open/x").status_code == 503
        server.start()
        back = node.http.get("/items", headers=bearer)
        # The shared count again (this Redis keeps nothing across a restart: it starts afresh).
        assert back.headers["ratelimit"].startswith('"default";r=999;')


BUSY = RatePolicy("busy", 1000, 86400.0, "token")  # K_max = 10: leases of up to 10 requests


def test_leases_hold_the_limit_within_the_bound_with_few_round_trips(tmp_path: Path) -> None:
    """Two processes' limiters (own clients) flooding one key: admitted within
    P x (K_max - 1) = 18 of the limit, while most requests never reach Redis."""
    with private_redis(str(tmp_path)) as server:

        async def run() -> tuple[int, int]:
            # A still clock: lease sizes follow the key's rate, which a loaded machine would
            # otherwise move; the bound holds whatever the sizes are.
            limiters = [
                RedisRateLimiter(
                    Redis.from_url(server.url), "tw-test:", owns_client=True, clock=lambda: 0.0
                )
                for _ in range(2)
            ]
            decisions = await asyncio.gather(
                *(limiters[i % 2].acquire("k", BUSY, 0.0) for i in range(3000))
            )
            admin = Redis.from_url(server.url)
            stats = await admin.info("commandstats")
            await admin.aclose()
            for limiter in limiters:
                await limiter.stop()
            trips = sum(
                stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval")
            )
            return sum(decision.allowed for decision in decisions), trips

        admitted, trips = asyncio.run(run())
    assert 1000 - 18 <= admitted <= 1000 + 18 + 1  # + 1: GCRA's refill over the test (T = 86 s)
    assert trips < 3000 // 10


def test_an_expired_lease_goes_back_to_the_shared_bucket() -> None:
    url = need_shared_redis()
    prefix = f"tw-test:{secrets.token_hex(6)}:"
    clock = [0.0]

    async def run() -> tuple[int, int]:
        holder = RedisRateLimiter(
            Redis.from_url(url), prefix, owns_client=True, clock=lambda: clock[0]
        )
        other = RedisRateLimiter(Redis.from_url(url), prefix, owns_client=True)
        for _ in range(8):  # leases of 1, 2, 4, 8: 15 granted, 8 spent, 7 held
            assert (await holder.acquire("k", BUSY, 0.0)).allowed
        held = (await other.acquire("k", BUSY, 0.0)).remaining
        clock[0] += 2.0  # past the lease's TTL: the 7 go back with the next lease
        await holder.acquire("k", BUSY, 0.0)
        back = (await other.acquire("k", BUSY, 0.0)).remaining
        await holder.stop()
        await other.stop()
        return held, back

    held, back = asyncio.run(run())
    assert held == 1000 - 15 - 1
    # the holder's new lease (halved: 4, one spent) and `other`'s own request come off again
    assert back == held + 7 - 4 - 1


def test_requests_waiting_for_one_lease_survive_the_asker_going_away(tmp_path: Path) -> None:
    """Concurrent requests for a key share the one round trip in flight; the request that
    started it being cancelled (its client left) does not cancel the others' answer."""
    with private_redis(str(tmp_path)) as server:

        async def run() -> tuple[bool, int]:
            admin = Redis.from_url(server.url)
            limiter = RedisRateLimiter(Redis.from_url(server.url), "tw-test:", owns_client=True)
            await limiter.acquire("warm", BUSY, 0.0)  # the script is loaded, the client is up
            await admin.execute_command("CLIENT", "PAUSE", "300", "ALL")  # type: ignore[no-untyped-call]
            first = asyncio.ensure_future(limiter.acquire("k", BUSY, 0.0))
            second = asyncio.ensure_future(limiter.acquire("k", BUSY, 0.0))
            await asyncio.sleep(0)  # one pass of the loop: both have started, one lease asked
            assert list(limiter._asking) == ["k"]
            first.cancel()
            decision = await second
            stats = await admin.info("commandstats")
            await limiter.stop()
            await admin.aclose()
            evalsha = stats["cmdstat_evalsha"]
            return decision.allowed, evalsha["calls"] - evalsha.get("failed_calls", 0)

        allowed, calls = asyncio.run(run())
    assert allowed
    assert calls == 2  # "warm", then one lease for both requests (NOSCRIPT retries aside)
