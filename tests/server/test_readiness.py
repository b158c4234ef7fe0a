"""/readyz: per-check status, 503 naming the failed check, bounded waits, no connection strings."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.conftest import FrozenClock
from tests.server.conftest import ISSUER, Server
from tests.store.conftest import PG_URL, postgres_schema
from tests.store.redis_server import need_shared_redis
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import StoreSet, build_services, open_stores
from tokenward.server.routes.ops import readiness_for
from tokenward.store.redis_client import connect
from tokenward.store.sql import create_engine
from tokenward.store.sql import engine as sql_engine
from tokenward.tokens.sealing import generate_master_key

pytestmark = pytest.mark.anyio
PASSWORD = "readyz-secret-pw"  # must never appear in an answer


async def test_liveness_and_readiness_on_memory_stores(server: Server) -> None:
    assert (await server.http.get("/healthz")).json() == {"status": "ok"}
    response = await server.http.get("/readyz")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "status": "ok",
        "checks": {"signing_key": "ok", "revocations": "ok"},
    }


async def test_stale_revocation_mirror_is_not_ready(server: Server, clock: FrozenClock) -> None:
    server.services.validator.revocations.fresh_until = clock.now - 1
    response = await server.http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["revocations"] == "stale"
    assert response.json()["status"] == "unavailable"


async def test_missing_signing_key_is_not_ready(server: Server) -> None:
    keyring = server.services.keys.keyring
    keyring.retire()  # `keys migrate` away from it: no active key any more
    response = await server.http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["signing_key"] == "no_active_key"


@pytest.fixture
async def real_stores() -> AsyncIterator[tuple[Settings, StoreSet]]:
    redis_url = need_shared_redis()
    async with postgres_schema() as schema:
        settings = Settings(
            issuer=ISSUER,
            master_key=generate_master_key(),
            database_url=PG_URL,
            database_schema=schema,
            redis_url=redis_url,
        )
        stores = await open_stores(settings)
        try:
            yield settings, stores
        finally:
            await stores.aclose()


async def ready(settings: Settings, stores: StoreSet) -> httpx.Response:
    services = await build_services(settings, stores)
    transport = httpx.ASGITransport(app=server_app(services))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        return await http.get("/readyz")


@pytest.mark.postgres
@pytest.mark.redis
async def test_postgres_and_redis_answer(real_stores: tuple[Settings, StoreSet]) -> None:
    response = await ready(*real_stores)
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {
        "database": "ok",
        "redis": "ok",
        "signing_key": "ok",
        "revocations": "ok",
    }


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a stalled server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.postgres
@pytest.mark.redis
async def test_unreachable_database_and_redis_fail_without_leaking(
    real_stores: tuple[Settings, StoreSet],
) -> None:
    settings, stores = real_stores
    port = closed_port()
    healthy_engine, healthy_redis = stores.engine, stores.redis
    stores.engine = create_engine(f"postgresql+asyncpg://tw:{PASSWORD}@127.0.0.1:{port}/test")
    stores.redis = connect(f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
    try:
        response = await ready(settings, stores)
    finally:
        await stores.engine.dispose()
        await stores.redis.aclose()
        stores.engine, stores.redis = healthy_engine, healthy_redis
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "unreachable"
    assert response.json()["checks"]["redis"] == "unreachable"
    assert PASSWORD not in response.text
    assert str(port) not in response.text


@pytest.mark.postgres
@pytest.mark.redis
async def test_stalled_database_times_out_quickly(
    real_stores: tuple[Settings, StoreSet], silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, stores = real_stores
    healthy_engine = stores.engine
    # The driver would wait 30 s for the silent port: an answer well before that is the check's
    # own bound (CHECK_TIMEOUT, 1 s), with room for a loaded machine (a 1.9 s bound against the
    # driver's 2 s once failed under the full suite at 2.03 s).
    monkeypatch.setattr(sql_engine, "PG_CONNECT_TIMEOUT", 30.0)
    stores.engine = create_engine(f"postgresql+asyncpg://tw@127.0.0.1:{silent_port}/test")
    started = time.monotonic()
    try:
        response = await ready(settings, stores)
    finally:
        await stores.engine.dispose()
        stores.engine = healthy_engine
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "timeout"
    assert time.monotonic() - started < 10  # the check's own bound, not the driver's 30 s


async def test_concurrent_probes_share_one_run(server: Server) -> None:
    readiness = readiness_for(server.services)
    calls = 0

    async def counted() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return "ok"

    readiness.checks = {"counted": counted}
    results = await asyncio.gather(*(readiness.run() for _ in range(10)))
    assert calls == 1
    assert all(ready for ready, _ in results)
