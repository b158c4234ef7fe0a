"""100 concurrent requests on an expired token cause exactly one refresh request at the server,
under asyncio (one asyncio.Lock) and under threads (one threading.Lock) alike."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.client.conftest import AuthServer, DeviceUser, Recorder
from tokenward.client import DeviceCodeLogin, Http, MemoryStore, TokenAuth, TokenSet

CONCURRENCY = 100
ACCESS_LIFETIME = 900.0
LIMITS = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)


def signed_in(server: AuthServer, http: Http) -> tuple[DeviceCodeLogin, TokenSet]:
    user = DeviceUser(server)
    source = DeviceCodeLogin(
        server.issuer, "cli", scope="read", prompt=user.prompt, http=http, clock=server.clock
    )
    login = DeviceCodeLogin(
        server.issuer,
        "cli",
        scope="read",
        prompt=user.prompt,
        http=Http(sleep=user.sleep),
        clock=server.clock,
    )
    with login:
        tokens = login.login()
    return source, tokens


@pytest.mark.anyio
async def test_async_single_flight(auth_server: AuthServer, recorder: Recorder) -> None:
    async with recorder.async_client() as as_client:
        source, tokens = signed_in(auth_server, Http(async_client=as_client))
        store = MemoryStore()
        auth = TokenAuth(source, store=store, tokens=tokens)
        auth_server.clock.advance(ACCESS_LIFETIME)  # every request below starts expired
        async with httpx.AsyncClient(
            auth=auth, base_url=auth_server.base, limits=LIMITS, timeout=30
        ) as api:
            responses = await asyncio.gather(*(api.get("/api/hello") for _ in range(CONCURRENCY)))
    assert [r.status_code for r in responses] == [200] * CONCURRENCY
    assert recorder.count("/token", "refresh_token") == 1
    assert recorder.exchanges[-1].status == 200
    newest = store.load(source.store_key)
    assert newest is not None
    assert newest.refresh_token != tokens.refresh_token


def test_threaded_single_flight(auth_server: AuthServer, recorder: Recorder) -> None:
    with recorder.client() as as_client:
        source, tokens = signed_in(auth_server, Http(as_client))
        auth = TokenAuth(source, tokens=tokens)
        auth_server.clock.advance(ACCESS_LIFETIME)
        start = threading.Barrier(CONCURRENCY, timeout=30)  # all threads ask at once

        def one_call(api: httpx.Client) -> int:
            start.wait()
            return api.get("/api/hello").status_code

        with (
            httpx.Client(auth=auth, base_url=auth_server.base, limits=LIMITS, timeout=30) as api,
            ThreadPoolExecutor(CONCURRENCY) as pool,
        ):
            statuses = list(pool.map(lambda _: one_call(api), range(CONCURRENCY)))
    assert statuses == [200] * CONCURRENCY
    assert recorder.count("/token", "refresh_token") == 1


@pytest.mark.anyio
async def test_concurrent_rejections_refresh_once(
    auth_server: AuthServer, recorder: Recorder
) -> None:
    """Many requests refused with 401 invalid_token at once: the first refreshes, the others
    find the new token and retry with it."""
    async with recorder.async_client() as as_client:
        source, tokens = signed_in(auth_server, Http(async_client=as_client))
        auth_server.revoke(tokens.access_token)
        auth = TokenAuth(source, tokens=tokens)
        async with httpx.AsyncClient(auth=auth, base_url=auth_server.base, timeout=30) as api:
            responses = await asyncio.gather(*(api.get("/api/hello") for _ in range(20)))
    assert {r.status_code for r in responses} == {200}
    assert recorder.count("/token", "refresh_token") == 1
