"""Browser mode end to end over HTTP: sign-in through the real authorization server, tokens kept
by the gateway, refresh by the gateway, CSRF on unsafe methods, logout; no token reaches the
browser."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote

import httpx
import pytest

from tests.conftest import FrozenClock
from tests.e2e.live import free_port
from tests.gateway.conftest import GatewayFactory, Running, serve
from tests.server.flows import hidden_interaction
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import build_services, memory_stores
from tokenward.gateway.bff import LOGIN_RATE, Bff, Endpoints
from tokenward.gateway.bff_seal import Sealed, SessionRecord
from tokenward.gateway.config import parse_config
from tokenward.gateway.trust import build_bff, remote_trust
from tokenward.store.redis_bff_sessions import RedisSessionStore
from tokenward.store.redis_client import connect
from tokenward.tokens.sealing import generate_master_key

PASSWORD = "correct horse battery"
CONFIG = """
trust: {{issuer: AS, audience: AS/api}}
bff:
  client_id: web
  client_secret_env: TW_BFF_TEST_SECRET
  redirect_uri: GW/bff/callback
  scopes: [openid, read]
  allowed_origins: [GW]
  secure_cookies: false
routes:
  - {{name: app, prefix: /app, upstreams: [{upstream}], auth: bff, scopes: [read]}}
"""


@dataclass
class Setup:
    issuer: str
    gateway: Running
    user_id: str


@pytest.fixture
def setup(
    gateway: GatewayFactory, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch, upstream_url: str
) -> Iterator[Setup]:
    as_port, gw_port = free_port(), free_port()
    issuer, base = f"http://127.0.0.1:{as_port}", f"http://127.0.0.1:{gw_port}"

    async def prepare() -> tuple[object, str, str]:
        settings = Settings(issuer=issuer, master_key=generate_master_key())
        services = await build_services(settings, memory_stores(clock), clock)
        web = await services.client_admin.create_client(
            "web",
            grant_types=["authorization_code", "refresh_token"],
            scope="openid read",
            redirect_uris=[f"{base}/bff/callback"],
            skip_consent=True,
        )
        user = await services.user_admin.create_user("alice", PASSWORD)
        return services, web["client_secret"], user["user_id"]

    services, secret, user_id = asyncio.run(prepare())
    monkeypatch.setenv("TW_BFF_TEST_SECRET", secret)
    text = CONFIG.replace("AS", issuer).replace("GW", base)
    with serve(server_app(services), as_port):  # type: ignore[arg-type]
        config = parse_config(text.format(upstream=upstream_url))
        trust = asyncio.run(remote_trust(config.trust, config, clock))
        bff = asyncio.run(build_bff(config, clock))
        running = gateway(text, validator=trust.validator, bff=bff, server={"port": gw_port})
        yield Setup(issuer, running, user_id)


def _record(bff: Bff, cookie: str) -> SessionRecord:
    """The session as the store keeps it, opened with the browser's cookie."""
    sealed = Sealed(cookie)
    record = sealed.session(asyncio.run(bff.store.load(sealed.key, None)))
    assert record is not None
    return record


def _sign_in(setup: Setup, browser: httpx.Client) -> httpx.Response:
    base = setup.gateway.base
    start = browser.get(f"{base}/bff/login", params={"return_to": "/app/home"})
    assert start.status_code == 302
    page = browser.get(start.headers["location"])
    assert page.status_code == 200, page.text[:300]
    login = browser.post(
        f"{setup.issuer}/login",
        data={
            "interaction": hidden_interaction(page.text),
            "username": "alice",
            "password": PASSWORD,
        },
    )
    assert login.status_code == 302, login.text[:300]
    assert login.headers["location"].startswith(f"{base}/bff/callback?")
    return browser.get(login.headers["location"])


def test_browser_session_refresh_csrf_and_logout(setup: Setup, clock: FrozenClock) -> None:
    base = setup.gateway.base
    seen: list[httpx.Response] = []
    with httpx.Client(event_hooks={"response": [seen.append]}) as browser:
        done = _sign_in(setup, browser)
        assert done.status_code == 302
        assert done.headers["location"] == "/app/home"
        cookies = done.headers.get_list("set-cookie")
        session_cookie = next(c for c in cookies if c.startswith("tw_session="))
        assert "HttpOnly" in session_cookie
        assert "SameSite=Lax" in session_cookie
        csrf = browser.cookies["tw_csrf"]

        api = browser.get(f"{base}/app/echo")
        assert api.status_code == 200, api.text
        upstream = api.json()["headers"]
        assert upstream["x-auth-subject"] == [setup.user_id]
        assert "authorization" not in upstream
        assert "tw_session" not in " ".join(upstream.get("cookie", []))
        assert "tw_csrf" not in " ".join(upstream.get("cookie", []))

        # Unsafe methods: Origin from the allowed list and the double-submitted token.
        refused = browser.post(f"{base}/app/echo", content=b"x")
        assert (refused.status_code, refused.json()["error"]) == (403, "csrf")
        assert setup.gateway.last_audit()["reason"] == "csrf"
        wrong_origin = browser.post(
            f"{base}/app/echo", headers={"origin": "https://evil.example", "x-csrf-token": csrf}
        )
        assert wrong_origin.status_code == 403
        wrong_token = browser.post(
            f"{base}/app/echo", headers={"origin": base, "x-csrf-token": "forged"}
        )
        assert wrong_token.status_code == 403
        ok = browser.post(
            f"{base}/app/echo", content=b"x", headers={"origin": base, "x-csrf-token": csrf}
        )
        assert ok.status_code == 200

        # Past the access token's lifetime the gateway refreshes it itself.
        bff = setup.gateway.gateway.bff
        assert bff is not None
        first = _record(bff, browser.cookies["tw_session"])
        clock.advance(901)
        again = browser.get(f"{base}/app/echo")
        assert again.status_code == 200, again.text
        session = _record(bff, browser.cookies["tw_session"])
        assert session.access_token != first.access_token
        assert session.refresh_token != first.refresh_token

        tokens = [first.access_token, session.access_token, session.refresh_token or "-"]
        out = browser.post(f"{base}/bff/logout", headers={"origin": base, "x-csrf-token": csrf})
        assert out.status_code == 204
        after = browser.get(f"{base}/app/echo")
        assert (after.status_code, after.json()["error"]) == (401, "no_session")
    # JavaScript never sees a token: none went to the browser in any header or body.
    for response in seen:
        if not str(response.url).startswith(base):
            continue
        text = response.content.decode("latin-1") + str(response.headers)
        for token in tokens:
            assert token not in text


def test_callback_must_match_the_browser_that_started(setup: Setup) -> None:
    base = setup.gateway.base
    with httpx.Client() as attacker, httpx.Client() as victim:
        start = attacker.get(f"{base}/bff/login")
        state = re.search(r"state=([^&]+)", start.headers["location"])
        assert state is not None
        # The victim is lured to the attacker's callback: no login cookie of that flow.
        forged = victim.get(f"{base}/bff/callback", params={"state": state.group(1), "code": "x"})
        assert (forged.status_code, forged.json()["error"]) == (400, "bff_state")


def test_login_redirect_only_to_local_paths(setup: Setup) -> None:
    base = setup.gateway.base
    with httpx.Client() as browser:
        start = browser.get(f"{base}/bff/login", params={"return_to": "https://evil.example/"})
        state = re.search(r"state=([^&]+)", start.headers["location"])
        assert state is not None
        bff = setup.gateway.gateway.bff
        assert bff is not None
        sealed = Sealed(unquote(state.group(1)))
        pending = sealed.pending(asyncio.run(bff.store.take_login(sealed.key)))
        assert pending is not None
        assert pending.return_to == "/"
        assert browser.get(f"{base}/app/echo").status_code == 401


def test_an_unreachable_session_store_answers_503(
    gateway: GatewayFactory, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TW_BFF_TEST_SECRET", "s")
    text = CONFIG.replace("AS", "http://127.0.0.1:9").replace("GW", "http://gw.example")
    config = parse_config(text.format(upstream="http://127.0.0.1:9"))
    assert config.bff is not None
    dead = RedisSessionStore(connect(f"redis://127.0.0.1:{free_port()}"))
    bff = Bff(config.bff, Endpoints("http://as/authorize", "http://as/token", None), "s", clock,
              store=dead)  # fmt: skip
    running = gateway(text, bff=bff)
    with httpx.Client(cookies={"tw_session": "x" * 43}) as browser:
        for path in ("/bff/login", "/app/echo"):
            answer = browser.get(f"{running.base}{path}")
            assert answer.status_code == 503, (path, answer.text)
            assert answer.json()["error"] == "temporarily_unavailable"
            assert answer.headers["retry-after"] == "1"


def test_sign_ins_started_from_one_address_are_limited(setup: Setup, clock: FrozenClock) -> None:
    """/login is unauthenticated and stores a pending sign-in each time: 30 a minute per address."""
    base = setup.gateway.base
    with httpx.Client() as browser:
        for _ in range(LOGIN_RATE.requests):
            assert browser.get(f"{base}/bff/login").status_code == 302
        refused = browser.get(f"{base}/bff/login")
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        # The callback and the API are not counted against the sign-in budget.
        assert browser.get(f"{base}/app/echo").status_code == 401
        clock.advance(LOGIN_RATE.per)
        assert browser.get(f"{base}/bff/login").status_code == 302
