"""P6: revocation at one node → first rejection at another, two nodes sharing PostgreSQL and
Redis as separate processes; and cached validation with a Redis-fed mirror ÷ the embedded one.

Propagation: each token is first validated (and cached) at node B; it is revoked at node A, and
from the moment A answers the revocation we call B back to back until it refuses the token.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from redis.asyncio import Redis

from bench import fixtures
from bench.harness import Figure
from tests.e2e.cluster import cluster
from tests.store.redis_server import SHARED_URL
from tokenward.guard import RevocationMirror
from tokenward.store.memory import MemoryRevocationStore
from tokenward.store.revocation_feed import RevocationFeed

REVOCATIONS = 1000
HIT_CALLS = 200_000


def _propagation() -> list[float]:
    with tempfile.TemporaryDirectory() as tmp, cluster(Path(tmp)) as group:
        a, b = group.nodes
        secret = json.loads(
            group.cli(
                "client",
                "create",
                "--client-id",
                "bench",
                "--grant-type",
                "client_credentials",
                "--scope",
                "read",
            )
        )["client_secret"]
        latencies = []
        with httpx.Client() as http:
            tokens = [
                http.post(
                    f"{a}/token", data={"grant_type": "client_credentials"}, auth=("bench", secret)
                ).json()["access_token"]
                for _ in range(REVOCATIONS)
            ]
            for token in tokens:
                headers = {"authorization": f"Bearer {token}"}
                warm = http.get(f"{b}/api/hello", headers=headers)
                assert warm.status_code == 200, warm.text
                http.post(f"{a}/revoke", data={"token": token}, auth=("bench", secret))
                accepted = time.perf_counter()
                while http.get(f"{b}/api/hello", headers=headers).status_code == 200:
                    if time.perf_counter() - accepted > 5:
                        raise RuntimeError("a revocation did not reach node B within 5 s")
                latencies.append(time.perf_counter() - accepted)
        return latencies


async def _fed_mirror() -> tuple[RevocationMirror, RevocationFeed, Redis]:
    redis = Redis.from_url(SHARED_URL)
    mirror = RevocationMirror()
    feed = RevocationFeed(
        MemoryRevocationStore(), [mirror], redis=redis, channel="bench:p6", resync_interval=3600
    )
    await feed.start()
    return mirror, feed, redis


def _hit_rate(mirror: RevocationMirror) -> float:
    ring = fixtures.keyring("ES256")
    tokens = fixtures.mint_many(ring, 1000)
    validator = fixtures.validator(ring, mirror)
    for token in tokens:
        validator.authenticate_sync("Bearer " + token, fixtures.SCOPES)
    headers = ["".join(("Bearer ", tokens[i % 1000])) for i in range(HIT_CALLS)]
    start = time.perf_counter()
    for header in headers:
        validator.authenticate_sync(header, fixtures.SCOPES)
    return HIT_CALLS / (time.perf_counter() - start)


def run() -> list[Figure]:
    latencies = sorted(_propagation())
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000

    async def throughput() -> tuple[float, float]:
        mirror, feed, redis = await _fed_mirror()
        try:
            fed = max(_hit_rate(mirror) for _ in range(3))
        finally:
            await feed.stop()
            await redis.aclose()
        embedded = max(_hit_rate(RevocationMirror()) for _ in range(3))
        return fed, embedded

    fed, embedded = asyncio.run(throughput())
    print(
        f"  P6: propagation over {len(latencies)} revocations: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"max {latencies[-1] * 1000:.2f} ms; cached validation {fed:,.0f}/s Redis-fed "
        f"vs {embedded:,.0f}/s"
    )
    return [
        Figure(
            "P6",
            p99,
            "ms p99 revocation at node A → first rejection at node B",
            [
                f"p50 {p50:.2f} ms over {len(latencies)} revocations",
                f"Redis-fed mirror validation {fed / embedded:.2f}× the in-process one",
            ],
        )
    ]
