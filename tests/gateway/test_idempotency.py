"""Idempotency keys: replay within the TTL, 409 while in flight, 422 on a different body."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
from redis.asyncio import Redis

from tests.conftest import FrozenClock
from tests.gateway.conftest import GatewayFactory
from tests.gateway.upstream_app import Upstream
from tests.store.redis_server import need_shared_redis, private_redis
from tokenward.store.redis_idempotency import RedisIdempotencyStore

CONFIG = """
trust: {{issuer: {issuer}, audience: {audience}}}
routes:
  - {{name: pay, prefix: /pay, upstreams: [{upstream}], auth: bearer, idempotency: {{ttl: 60}},
      rate_limit: off}}
"""


def _auth(token: str, key: str | None = "k-1") -> dict[str, str]:
    headers = {"authorization": f"Bearer {token}"}
    if key is not None:
        headers["idempotency-key"] = key
    return headers


def test_replay_mismatch_scope_and_expiry(
    gateway: GatewayFactory, mint: Callable[..., str], clock: FrozenClock, upstream: Upstream
) -> None:
    running = gateway(CONFIG)
    alice = mint(subject="alice")
    first = running.http.post("/pay/echo", content=b"amount=5", headers=_auth(alice))
    assert first.status_code == 200
    before = upstream.requests
    again = running.http.post("/pay/echo", content=b"amount=5", headers=_auth(alice))
    assert upstream.requests == before
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert running.last_audit()["reason"] == "idempotent_replay"
    other = running.http.post("/pay/echo", content=b"amount=6", headers=_auth(alice))
    assert (other.status_code, other.json()["error"]) == (422, "idempotency_mismatch")
    # Another subject's identical key is its own operation, never alice's stored answer.
    bob = running.http.post("/pay/echo", content=b"amount=5", headers=_auth(mint(subject="bob")))
    assert bob.status_code == 200
    assert "idempotent-replayed" not in bob.headers
    assert bob.json()["headers"]["x-auth-subject"] == ["bob"]
    clock.advance(61)
    fresh = running.http.post("/pay/echo", content=b"amount=6", headers=_auth(alice))
    assert fresh.status_code == 200
    assert "idempotent-replayed" not in fresh.headers
    # Without a key, or on a safe method, nothing is remembered.
    assert running.http.post("/pay/echo", headers=_auth(alice, None)).status_code == 200
    assert "idempotent-replayed" not in running.http.get("/pay/echo", headers=_auth(alice)).headers


def test_concurrent_duplicate_is_409(
    gateway: GatewayFactory, mint: Callable[..., str], upstream: Upstream
) -> None:
    running = gateway(CONFIG)
    token = mint()
    gate = upstream.gate("idem")
    results: list[httpx.Response] = []

    def first() -> None:
        with httpx.Client(base_url=running.base, timeout=15) as client:
            results.append(client.post("/pay/gate/idem", content=b"x", headers=_auth(token)))

    thread = threading.Thread(target=first)
    before = upstream.requests
    thread.start()
    try:
        while upstream.requests == before:  # bounded by the thread's own 15 s timeout
            thread.join(0.01)
            assert thread.is_alive()
        duplicate = running.http.post("/pay/gate/idem", content=b"x", headers=_auth(token))
        assert duplicate.status_code == 409
        assert duplicate.json()["error"] == "idempotency_conflict"
    finally:
        gate.set()
        thread.join(15)
    assert results[0].status_code == 200
    assert results[0].content == b"firstsecond"
    replay = running.http.post("/pay/gate/idem", content=b"x", headers=_auth(token))
    assert replay.content == b"firstsecond"
    assert replay.headers["idempotent-replayed"] == "true"


def test_bad_keys_and_big_bodies(gateway: GatewayFactory, mint: Callable[..., str]) -> None:
    running = gateway(CONFIG)
    token = mint()
    assert running.http.post("/pay/echo", headers=_auth(token, "x" * 256)).status_code == 400
    two = [*_auth(token).items(), ("idempotency-key", "k-2")]
    assert running.http.post("/pay/echo", headers=two).status_code == 400
    big = running.http.post("/pay/echo", content=b"z" * (1024 * 1024 + 1), headers=_auth(token))
    assert (big.status_code, big.json()["error"]) == (413, "body_too_large")


def _shared_store(url: str, prefix: str) -> RedisIdempotencyStore:
    # Each gateway its own client, as separate processes would have; closed with its lifespan.
    return RedisIdempotencyStore(Redis.from_url(url), prefix, owns_client=True)


def test_a_retry_at_another_gateway_meets_the_first_answer(
    gateway: GatewayFactory, mint: Callable[..., str], upstream: Upstream
) -> None:
    url, prefix = need_shared_redis(), f"tw-test:{secrets.token_hex(6)}:"
    nodes = []
    for _ in "ab":
        store = _shared_store(url, prefix)
        nodes.append(gateway(CONFIG, idempotency=store, background=[store]))
    alice = mint(subject="alice")
    first = nodes[0].http.post("/pay/echo", content=b"amount=5", headers=_auth(alice))
    assert first.status_code == 200
    before = upstream.requests
    retry = nodes[1].http.post("/pay/echo", content=b"amount=5", headers=_auth(alice))
    assert upstream.requests == before  # the upstream saw the operation once
    assert (retry.status_code, retry.headers["idempotent-replayed"]) == (200, "true")
    assert retry.json() == first.json()
    other = nodes[1].http.post("/pay/echo", content=b"amount=6", headers=_auth(alice))
    assert other.status_code == 422


def test_unreachable_redis_fails_closed_with_503(
    gateway: GatewayFactory, mint: Callable[..., str], upstream: Upstream, tmp_path: Path
) -> None:
    with private_redis(str(tmp_path)) as server:
        store = _shared_store(server.url, "tw-test:")
        running = gateway(CONFIG, idempotency=store, background=[store])
        token = mint()
        assert running.http.post("/pay/echo", headers=_auth(token, "a")).status_code == 200
        server.stop()
        before = upstream.requests
        down = running.http.post("/pay/echo", headers=_auth(token, "b"))
        assert (down.status_code, down.json()["error"]) == (503, "temporarily_unavailable")
        assert down.headers["retry-after"] == "1"
        assert upstream.requests == before  # not forwarded: at-most-once could not be promised
        assert running.last_audit()["reason"] == "shared_state_unavailable"
        # Without a key nothing needs Redis: the route keeps working.
        assert running.http.post("/pay/echo", headers=_auth(token, None)).status_code == 200
        server.start()
        again = running.http.post("/pay/echo", headers=_auth(token, "a"))
        assert again.status_code == 200  # Redis came back empty: a new operation, not a 5xx
