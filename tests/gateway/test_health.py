"""/healthz and /readyz on the gateway's metrics listener: answered from a thread, decided on
the event loop (a loop that stopped running is not alive), ready only while serving with a
fresh revocation mirror; an unreachable Redis is reported, as degraded, not as not ready."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tests.store.redis_server import need_shared_redis
from tokenward.gateway.health import AdminListener, Health, admin_app
from tokenward.gateway.startup import bind, url
from tokenward.guard import RevocationMirror
from tokenward.store.redis_client import connect


@contextmanager
def listening(
    health_factory: Callable[[asyncio.AbstractEventLoop], Health],
) -> Iterator[tuple[str, asyncio.AbstractEventLoop]]:
    """An event loop in a thread (the gateway's), the admin listener beside it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sock = bind("127.0.0.1", 0, "metrics")
    health = health_factory(loop)
    admin = AdminListener(sock, admin_app(CollectorRegistry(), health))
    admin.start()
    try:
        yield url("http", sock), loop
    finally:
        admin.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_live_and_ready_while_serving_with_a_fresh_mirror() -> None:
    mirror = RevocationMirror()
    mirror.fresh_until = time.time() + 30
    with listening(lambda loop: Health(loop, lambda: True, mirrors=[mirror])) as (base, _):
        assert httpx.get(base + "/healthz").json() == {"status": "ok"}
        ready = httpx.get(base + "/readyz")
        assert ready.status_code == 200
        assert ready.headers["cache-control"] == "no-store"
        assert ready.json() == {"status": "ready", "checks": {"serving": "ok", "revocations": "ok"}}
        assert httpx.get(base + "/metrics").status_code == 200


def test_not_ready_while_starting_or_with_a_stale_mirror() -> None:
    mirror = RevocationMirror()
    mirror.fresh_until = float("-inf")  # as before the feed's first sync
    serving = [False]
    with listening(lambda loop: Health(loop, lambda: serving[0], mirrors=[mirror])) as (base, _):
        starting = httpx.get(base + "/readyz")
        assert starting.status_code == 503
        assert starting.json()["status"] == "not_ready"
        serving[0] = True
        stale = httpx.get(base + "/readyz")
        assert stale.status_code == 503
        assert stale.json()["checks"]["revocations"].startswith("stale")
        assert httpx.get(base + "/healthz").status_code == 200  # alive all the same


def test_a_stuck_event_loop_is_not_alive() -> None:
    with listening(lambda loop: Health(loop, lambda: True)) as (base, loop):
        release = threading.Event()
        loop.call_soon_threadsafe(lambda: release.wait(10))  # blocks the loop, as a bug would
        try:
            started = time.monotonic()
            answer = httpx.get(base + "/healthz", timeout=10)
            assert answer.status_code == 503
            assert answer.json() == {"status": "unresponsive"}
            assert time.monotonic() - started < 5
        finally:
            release.set()
        deadline = time.monotonic() + 5
        while httpx.get(base + "/healthz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)  # bounded wait for the loop to run again


@pytest.mark.parametrize("reachable", [True, False])
def test_redis_is_reported_but_never_makes_the_gateway_unready(reachable: bool) -> None:
    client = connect(need_shared_redis() if reachable else "redis://127.0.0.1:9/0")
    with listening(lambda loop: Health(loop, lambda: True, redis=[client, client])) as (base, loop):
        ready = httpx.get(base + "/readyz", timeout=10)
        asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(5)
    assert ready.status_code == 200
    expected = "ok" if reachable else "unreachable"
    assert ready.json() == {
        "status": "ready" if reachable else "degraded",
        "checks": {"serving": "ok", "redis": expected},
    }
