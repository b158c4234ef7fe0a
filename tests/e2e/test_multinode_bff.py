"""Browser mode across two real `tokenward gateway` processes sharing Redis, in front of a real
authorization server: a browser signed in at gateway A is served by gateway B (no sticky
sessions), B refreshes an expired access token and A goes on with the rotated tokens, logout
at B ends the session at A, and Redis never holds a cookie value or a token."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import cast

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.e2e.cluster import Cluster, cluster
from tests.e2e.live import free_port
from tests.gateway.processes import gateway_process
from tests.server.flows import hidden_interaction
from tests.store.conftest import PG_URL
from tokenward.deploy.namespace import Namespace
from tokenward.gateway.bff_seal import Sealed, SessionRecord

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
PASSWORD = "correct horse battery staple"
ACCESS_LIFETIME = 4  # seconds: the gateway refreshes once half of it is left


@dataclass
class Deployment:
    nodes: Cluster
    a: str
    b: str
    workers: str  # a third gateway, `workers: 2` on one port
    prefix: str  # the gateways' BFF keys in Redis


def _config(group: Cluster, port: int, app: str) -> str:
    upstream = group.nodes[-1]  # the server's /healthz stands in for the app's API
    return f"""
listen: {{host: 127.0.0.1, port: {port}}}
trust: {{issuer: "{group.issuer}", audience: "{group.issuer}/api"}}
rate_limits: {{redis_url: "{group.redis_url}"}}
audit: {{enabled: false}}
bff:
  client_id: web
  client_secret_env: GW_BFF_SECRET
  redirect_uri: {app}/bff/callback
  scopes: [openid, read]
  allowed_origins: ["{app}"]
  secure_cookies: false
routes:
  - {{name: app, prefix: /healthz, upstreams: ["{upstream}"], auth: bff, scopes: [read]}}
"""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("bff")
    with cluster(tmp, nodes=1) as group:
        ports = [free_port(), free_port()]
        app = f"http://127.0.0.1:{ports[0]}"  # where a balancer would be: A stands in for it
        created = json.loads(
            group.cli(
                *("client", "create", "--client-id", "web"),
                *("--grant-type", "authorization_code", "--grant-type", "refresh_token"),
                *("--scope", "openid read", "--redirect-uri", f"{app}/bff/callback"),
                "--skip-consent",
            )
        )
        asyncio.run(_short_lived(group))
        group.cli("user", "create", "--username", "alice", "--password-stdin", stdin=PASSWORD)
        env = {**group.env, "GW_BFF_SECRET": created["client_secret"]}
        with ExitStack() as stack:
            bases = []
            for index, port in enumerate([*ports, free_port()]):
                path = tmp / f"gateway{index}.yaml"
                extra = "workers: 2\n" if index == 2 else ""
                path.write_text(extra + _config(group, port, app))
                bases.append(stack.enter_context(gateway_process(path, env)).base)
            prefix = Namespace.derived(group.issuer, None).bff_sessions
            yield Deployment(group, bases[0], bases[1], bases[2], prefix)


async def _short_lived(group: Cluster) -> None:
    """The client's access tokens live `ACCESS_LIFETIME` seconds (no CLI option sets it; the
    server reads the client after this, at the first sign-in)."""
    engine = create_async_engine(PG_URL)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                # The schema name is the test's own random one (cluster()), not input.
                text(f'UPDATE "{group.schema}".clients SET access_token_lifetime = :s'),  # noqa: S608
                {"s": ACCESS_LIFETIME},
            )
    finally:
        await engine.dispose()


def _sign_in(deployment: Deployment, browser: httpx.Client) -> httpx.Response:
    start = browser.get(f"{deployment.a}/bff/login", params={"return_to": "/healthz"})
    assert start.status_code == 302, start.text
    page = browser.get(start.headers["location"])
    assert page.status_code == 200, page.text[:300]
    login = browser.post(
        f"{deployment.nodes.issuer}/login",
        data={"interaction": hidden_interaction(page.text), "username": "alice",
              "password": PASSWORD},
    )  # fmt: skip
    assert login.status_code == 302, login.text[:300]
    assert login.headers["location"].startswith(f"{deployment.a}/bff/callback?")
    return browser.get(login.headers["location"])


async def _values(redis: Redis, name: bytes) -> list[bytes]:
    kind = cast(bytes, await redis.type(name)).decode()
    readers: dict[str, Callable[[], Awaitable[Iterable[bytes]]]] = {
        "none": _nothing,  # expired since the scan listed it
        "string": lambda: _one(redis, name),
        "hash": lambda: _flat(cast(Awaitable[dict[bytes, bytes]], redis.hgetall(name))),
        "list": lambda: cast(Awaitable[list[bytes]], redis.lrange(name, 0, -1)),
        "set": lambda: cast(Awaitable[set[bytes]], redis.smembers(name)),
        "zset": lambda: cast(Awaitable[list[bytes]], redis.zrange(name, 0, -1)),
        "stream": lambda: _stream(redis, name),
    }
    if kind not in readers:
        raise AssertionError(f"a Redis type this scan does not read: {kind}")
    return list(await readers[kind]())


async def _nothing() -> list[bytes]:
    return []


async def _one(redis: Redis, name: bytes) -> list[bytes]:
    return [cast(bytes | None, await redis.get(name)) or b""]


async def _flat(pairs: Awaitable[dict[bytes, bytes]]) -> list[bytes]:
    return [part for pair in (await pairs).items() for part in pair]


async def _stream(redis: Redis, name: bytes) -> list[bytes]:
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(name))
    return [part for _, entry in entries for pair in entry.items() for part in pair]


async def _redis_dump(url: str) -> bytes:
    """Every key of the shared Redis and every value, whatever its type."""
    redis = Redis.from_url(url)
    parts: list[bytes] = []
    try:
        async for name in redis.scan_iter(count=1000):
            parts += [name, *await _values(redis, name)]
    finally:
        await redis.aclose()
    return b"\n".join(parts)


def _record(deployment: Deployment, cookie: str) -> SessionRecord | None:
    async def read() -> bytes | None:
        redis = Redis.from_url(deployment.nodes.redis_url)
        try:
            blob = cast(
                bytes | None, await redis.get(deployment.prefix + "s:" + Sealed(cookie).key)
            )
            return blob
        finally:
            await redis.aclose()

    return Sealed(cookie).session(asyncio.run(read()))


def _until_expired(record: SessionRecord) -> None:
    """Wait (bounded) until the access token is due for a refresh by the gateways' clock."""
    deadline = time.monotonic() + ACCESS_LIFETIME + 5
    while time.time() < record.access_expires_at - record.refresh_ahead:
        assert time.monotonic() < deadline
        time.sleep(0.05)  # bounded poll of the wall clock the gateways read


def test_a_session_from_gateway_a_is_served_refreshed_and_ended_at_gateway_b(
    deployment: Deployment,
) -> None:
    a, b = deployment.a, deployment.b
    with httpx.Client() as browser:
        done = _sign_in(deployment, browser)
        assert (done.status_code, done.headers["location"]) == (302, "/healthz")
        cookie, csrf = browser.cookies["tw_session"], browser.cookies["tw_csrf"]
    assert len(cookie) == 43
    first = _record(deployment, cookie)
    assert first is not None
    jar = {"tw_session": cookie, "tw_csrf": csrf}
    with httpx.Client(cookies=jar) as at_a, httpx.Client(cookies=jar) as at_b:
        # B never saw this browser before: the session comes from Redis.
        assert at_b.get(f"{b}/healthz").status_code == 200
        assert at_a.get(f"{a}/healthz").status_code == 200
        seen = [first.access_token, first.refresh_token or "-"]

        # The access token expires: B refreshes it (spending the rotating refresh token) ...
        _until_expired(first)
        assert at_b.get(f"{b}/healthz").status_code == 200
        second = _record(deployment, cookie)
        assert second is not None
        assert second.access_token != first.access_token
        assert second.refresh_token not in (None, first.refresh_token)
        seen += [second.access_token, second.refresh_token or "-"]
        # ... and A goes on with B's tokens: its next refresh spends B's refresh token. Had A
        # kept the first one, the server would refuse it, or (within its reuse grace) hand
        # back B's successor again, so a new refresh token shows A used B's.
        assert at_a.get(f"{a}/healthz").status_code == 200
        _until_expired(second)
        assert at_a.get(f"{a}/healthz").status_code == 200
        third = _record(deployment, cookie)
        assert third is not None
        assert third.refresh_token not in (None, second.refresh_token)
        seen += [third.access_token, third.refresh_token or "-"]

        dump = asyncio.run(_redis_dump(deployment.nodes.redis_url))
        assert Sealed(cookie).key.encode() in dump  # the scan did reach the session
        for secret in [cookie, csrf, *seen]:
            assert secret.encode() not in dump

        # Logout at B (the app's origin, CSRF token) ends the session at A too.
        origin = {"origin": a, "x-csrf-token": csrf}
        assert at_b.post(f"{b}/bff/logout", headers=origin).status_code == 204
        after = at_a.get(f"{a}/healthz")
        assert (after.status_code, after.json()["error"]) == (401, "no_session")
        assert _record(deployment, cookie) is None
    # The logout revoked the refresh token at the server.
    spent = httpx.post(
        f"{deployment.nodes.issuer}/token",
        data={"grant_type": "refresh_token", "refresh_token": third.refresh_token},
        auth=("web", "-"),
    )
    assert spent.status_code in (400, 401)


def test_a_callback_finished_at_one_gateway_cannot_be_replayed_at_the_other(
    deployment: Deployment,
) -> None:
    with httpx.Client() as browser:
        start = browser.get(f"{deployment.a}/bff/login")
        page = browser.get(start.headers["location"])
        login = browser.post(
            f"{deployment.nodes.issuer}/login",
            data={"interaction": hidden_interaction(page.text), "username": "alice",
                  "password": PASSWORD},
        )  # fmt: skip
        callback = login.headers["location"]
        assert browser.get(callback).status_code == 302
        replayed = browser.get(callback.replace(deployment.a, deployment.b))
        assert (replayed.status_code, replayed.json()["error"]) == (400, "bff_state")


def test_workers_of_one_gateway_serve_one_session(deployment: Deployment) -> None:
    with httpx.Client() as browser:
        assert _sign_in(deployment, browser).status_code == 302
        cookie = browser.cookies["tw_session"]
    # A new connection each time: the kernel spreads them over both workers (SO_REUSEPORT);
    # with sessions per process about half would find none.
    for _ in range(12):
        with httpx.Client(cookies={"tw_session": cookie}) as fresh:
            assert fresh.get(f"{deployment.workers}/healthz").status_code == 200
