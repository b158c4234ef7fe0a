"""Two browser-mode gateways sharing one session store: one refresh per session across both
(the rotating refresh token is spent once), the other waits and reuses it, and gives up with
503 `bff_refresh_busy` when the lock holder never finishes."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from redis.asyncio import Redis

from tests.conftest import FrozenClock
from tests.store.redis_server import need_shared_redis
from tokenward.gateway.bff import Bff, Endpoints
from tokenward.gateway.bff_seal import Sealed
from tokenward.gateway.bff_store import MemorySessionStore, SessionStore
from tokenward.gateway.model import BffSettings
from tokenward.gateway.policy import Denied
from tokenward.store.redis_bff_sessions import RedisSessionStore

pytestmark = pytest.mark.anyio
SETTINGS = BffSettings(
    client_id="web",
    redirect_uri="http://gw/bff/callback",
    allowed_origins=("http://gw",),
    secure_cookies=False,
)
ENDPOINTS = Endpoints("http://as/authorize", "http://as/token", None)
REVOCABLE = Endpoints("http://as/authorize", "http://as/token", "http://as/revoke")


class Issuer:
    """A token endpoint that rotates refresh tokens and refuses a spent or revoked one, and a
    revocation endpoint (RFC 7009), as tokenward's. A held refresh (`release` cleared) has
    been granted at the issuer; only its answer is on the way."""

    def __init__(self) -> None:
        self.refreshes = 0
        self.live = "r0"
        self.revoked: set[str] = set()
        self.release = asyncio.Event()
        self.release.set()
        self.granted = asyncio.Event()  # set once a refresh has been granted

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        form = parse_qs(request.content.decode())
        if request.url.path == "/revoke":
            self.revoked.add(form["token"][0])
            return httpx.Response(200)
        if form["grant_type"] == ["refresh_token"]:
            token = form["refresh_token"][0]
            if token != self.live or token in self.revoked:
                return httpx.Response(400, json={"error": "invalid_grant"})
            self.refreshes += 1
            self.granted.set()
        self.live = f"r{self.refreshes}"
        answer = {"access_token": f"a{self.refreshes}", "refresh_token": self.live,
                  "expires_in": 300}  # fmt: skip
        await self.release.wait()
        return httpx.Response(200, json=answer)

    def active(self, token: str) -> bool:
        """What the issuer's introspection would say of a token it issued."""
        return token not in self.revoked


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest, clock: FrozenClock) -> AsyncIterator[SessionStore]:
    if request.param == "memory":
        yield MemorySessionStore(clock)
        return
    redis = Redis.from_url(need_shared_redis())
    prefix = f"tw-test:{secrets.token_hex(6)}:bff:"
    yield RedisSessionStore(redis, prefix)
    async for name in redis.scan_iter(match=prefix + "*"):
        await redis.delete(name)
    await redis.aclose()


def _gateway(
    store: SessionStore,
    clock: FrozenClock,
    issuer: Issuer,
    wait: float = 5.0,
    endpoints: Endpoints = ENDPOINTS,
) -> Bff:
    transport = httpx.MockTransport(issuer)
    return Bff(SETTINGS, endpoints, "secret", clock, transport, store=store, refresh_wait=wait)


def _scope(path: str, query: str = "") -> dict[str, object]:
    return {"path": path, "method": "GET", "query_string": query.encode(), "headers": []}


async def _sign_in(bff: Bff) -> str:
    return (await _browser_cookies(bff))["tw_session"]


async def _browser_cookies(bff: Bff) -> dict[str, str]:
    """The cookies a browser holds after signing in: session and CSRF."""
    _, headers = await bff.endpoint(_scope("/bff/login"), {})
    location = dict(headers)[b"location"].decode()
    state = parse_qs(urlsplit(location).query)["state"][0]
    _, done = await bff.endpoint(
        _scope("/bff/callback", f"state={state}&code=c"), {"tw_login": state}
    )
    pairs = (v.split(b";")[0].decode().split("=", 1) for n, v in done if n == b"set-cookie")
    return {name: value for name, value in pairs if value}


async def test_one_refresh_across_gateways_and_both_use_its_tokens(
    store: SessionStore, clock: FrozenClock
) -> None:
    issuer = Issuer()
    a, b = _gateway(store, clock, issuer), _gateway(store, clock, issuer)
    cookie = await _sign_in(a)
    jar = {"tw_session": cookie}
    assert await b.authorization(_scope("/app"), jar) == "Bearer a0"
    clock.advance(300)
    issuer.release.clear()  # the first refresh is held at the issuer while the others arrive
    requests = [asyncio.create_task(g.authorization(_scope("/app"), jar)) for g in (a, b) * 4]
    await asyncio.sleep(0.2)
    issuer.release.set()
    answers = await asyncio.gather(*requests)
    assert answers == ["Bearer a1"] * 8
    assert issuer.refreshes == 1
    sealed = Sealed(cookie)
    record = sealed.session(await store.load(sealed.key, None))
    assert record is not None
    assert (record.access_token, record.refresh_token) == ("a1", "r1")


async def test_a_waiter_gives_up_with_503_when_the_lock_holder_never_finishes(
    store: SessionStore, clock: FrozenClock
) -> None:
    issuer = Issuer()
    bff = _gateway(store, clock, issuer, wait=0.2)
    cookie = await _sign_in(bff)
    clock.advance(300)
    await store.lock(Sealed(cookie).key, "a gateway that died mid-refresh", 15)
    with pytest.raises(Denied) as refused:
        await bff.authorization(_scope("/app"), {"tw_session": cookie})
    assert (refused.value.status, refused.value.reason) == (503, "bff_refresh_busy")
    assert issuer.refreshes == 0


async def test_a_replayed_callback_finds_no_sign_in(
    store: SessionStore, clock: FrozenClock
) -> None:
    issuer = Issuer()
    a, b = _gateway(store, clock, issuer), _gateway(store, clock, issuer)
    _, headers = await a.endpoint(_scope("/bff/login"), {})
    state = parse_qs(urlsplit(dict(headers)[b"location"].decode()).query)["state"][0]
    query = f"state={state}&code=c"
    status, _ = await b.endpoint(_scope("/bff/callback", query), {"tw_login": state})
    assert status == 302  # finished at the other gateway
    with pytest.raises(Denied) as replayed:
        await a.endpoint(_scope("/bff/callback", query), {"tw_login": state})
    assert (replayed.value.status, replayed.value.reason) == (400, "bff_state")


async def test_idle_sessions_end_before_their_lifetime(clock: FrozenClock) -> None:
    settings = BffSettings(**{**SETTINGS.__dict__, "idle_timeout": 600.0})
    store = MemorySessionStore(clock)
    bff = Bff(settings, ENDPOINTS, "s", clock, httpx.MockTransport(Issuer()), store=store)
    cookie = await _sign_in(bff)
    jar = {"tw_session": cookie}
    for _ in range(3):  # in use: kept alive past the idle timeout in total
        clock.advance(250)
        assert (await bff.authorization(_scope("/app"), jar)).startswith("Bearer ")
    clock.advance(601)
    with pytest.raises(Denied) as idle:
        await bff.authorization(_scope("/app"), jar)
    assert (idle.value.status, idle.value.reason) == (401, "no_session")


async def test_a_refresh_finishing_after_a_logout_elsewhere_revokes_its_new_tokens(
    store: SessionStore, clock: FrozenClock
) -> None:
    issuer = Issuer()
    a = _gateway(store, clock, issuer, endpoints=REVOCABLE)
    b = _gateway(store, clock, issuer, endpoints=REVOCABLE)
    jar = await _browser_cookies(a)
    clock.advance(300)
    issuer.release.clear()  # the issuer granted the refresh; its answer is on the way
    refreshing = asyncio.create_task(a.authorization(_scope("/app"), jar))
    await asyncio.wait_for(issuer.granted.wait(), 5)  # the refresh has reached the issuer
    logout = {
        **_scope("/bff/logout"),
        "method": "POST",
        "headers": [(b"origin", b"http://gw"), (b"x-csrf-token", jar["tw_csrf"].encode())],
    }
    status, _ = await b.endpoint(logout, jar)
    assert status == 204
    assert issuer.revoked == {"r0"}  # the logout revoked the token the refresh just spent
    issuer.release.set()
    with pytest.raises(Denied) as late:
        await refreshing
    assert (late.value.status, late.value.reason) == (401, "no_session")
    # The tokens that refresh obtained belong to no session: revoked, not left live.
    assert not issuer.active("r1")
    assert not issuer.active("a1")
    spent = await httpx.AsyncClient(transport=httpx.MockTransport(issuer)).post(
        "http://as/token", data={"grant_type": "refresh_token", "refresh_token": "r1"}
    )
    assert (spent.status_code, spent.json()["error"]) == (400, "invalid_grant")
    with pytest.raises(Denied) as gone:
        await b.authorization(_scope("/app"), jar)
    assert gone.value.reason == "no_session"
