"""CSRF cookies carry only values this server issued, under `__Host-` names over https: a value
the browser brings that we did not issue is never adopted, on the sign-in, consent, device and
logout pages or in the admin console."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.admin.conftest import Console
from tests.conftest import FrozenClock
from tests.monitor.serving import PASSWORD, Monitored, monitored_server
from tests.server.conftest import Server
from tests.server.flows import Pkce, authorize_params, hidden_interaction
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import build_services, memory_stores
from tokenward.oauth.csrf import CSRF_LIFETIME, CsrfTokens
from tokenward.tokens.sealing import generate_master_key

pytestmark = pytest.mark.anyio
PLANTED = "attacker-chosen-csrf-value-0123456789"


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """name -> the whole Set-Cookie line."""
    lines = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    return {line.split("=", 1)[0]: line for line in lines}


def plant(http: httpx.AsyncClient, value: str, *names: str) -> None:
    for name in names:
        http.cookies.set(name, value, domain="as.example", path="/")


# --- the tokens ---------------------------------------------------------------------------
def test_tokens_are_ours_for_one_purpose_and_expire(clock: FrozenClock) -> None:
    tokens = CsrfTokens(b"k" * 32, clock)
    token = tokens.issue(None, "browser")
    assert tokens.valid(token, "browser")
    assert not tokens.valid(token, "admin")
    assert not CsrfTokens(b"x" * 32, clock).valid(token, "browser")
    assert tokens.issue(token, "browser") == token  # reused while young: several tabs
    assert tokens.issue(PLANTED, "browser") != PLANTED
    nonce, issued, mac = token.split(".")
    for forged in (
        f"{nonce}.{int(issued) + 1}.{mac}",
        f"{nonce[:-1]}{'B' if nonce[-1] == 'A' else 'A'}.{issued}.{mac}",  # another last char
        f"{nonce}.{issued}.{mac[:-1]}{'B' if mac[-1] == 'A' else 'A'}",
        f"{nonce}.{issued}",
        token + "x",
        "",
    ):
        assert not tokens.valid(forged, "browser"), forged
    clock.advance(CSRF_LIFETIME / 2)
    renewed = tokens.issue(token, "browser")
    assert renewed != token  # half-way through: a fresh one (the old still checks)
    assert tokens.valid(token, "browser")
    clock.advance(CSRF_LIFETIME / 2)
    assert not tokens.valid(token, "browser")
    assert tokens.matches(renewed, renewed, "browser")
    assert not tokens.matches(PLANTED, PLANTED, "browser")
    assert not tokens.matches(None, None, "browser")


# --- the pages ----------------------------------------------------------------------------
async def test_a_planted_cookie_is_never_adopted(server: Server) -> None:
    plant(server.http, PLANTED, "tw_csrf", "__Host-tw_csrf")
    page = await server.http.get("/authorize", params=authorize_params(Pkce.new()))
    cookie = set_cookies(page)["__Host-tw_csrf"]
    assert PLANTED not in cookie
    issued = cookie.split(";")[0].split("=", 1)[1]
    assert server.services.csrf.valid(issued, "browser")
    # The sign-in form is bound to the issued value; the planted one opens nothing.
    interaction = hidden_interaction(page.text)
    server.http.cookies.clear()
    plant(server.http, PLANTED, "tw_csrf", "__Host-tw_csrf")
    refused = await server.http.post(
        "/login",
        data={"interaction": interaction, "username": "alice", "password": PASSWORD},
    )
    assert refused.status_code == 400
    assert not any("tw_session" in name for name in set_cookies(refused))


async def test_https_cookies_are_host_prefixed(server: Server) -> None:
    page = await server.http.get("/authorize", params=authorize_params(Pkce.new()))
    signed_in = await server.http.post(
        "/login",
        data={
            "interaction": hidden_interaction(page.text),
            "username": "alice",
            "password": PASSWORD,
        },
    )
    cookies = set_cookies(page) | set_cookies(signed_in)
    assert {"__Host-tw_csrf", "__Host-tw_session"} <= set(cookies)
    assert not {"tw_csrf", "tw_session"} & set(cookies)
    for name in ("__Host-tw_csrf", "__Host-tw_session"):
        attributes = [part.strip().lower() for part in cookies[name].split(";")[1:]]
        assert "secure" in attributes
        assert "path=/" in attributes
        assert not any(a.startswith("domain") for a in attributes)
        assert "httponly" in attributes


async def test_http_development_issuer_uses_bare_names(clock: FrozenClock) -> None:
    issuer = "http://127.0.0.1:8000"
    settings = Settings(issuer=issuer, master_key=generate_master_key())
    services = await build_services(settings, memory_stores(clock), clock)
    transport = httpx.ASGITransport(app=server_app(services))
    async with httpx.AsyncClient(transport=transport, base_url=issuer) as http:
        page = await http.get("/device")
    cookie = set_cookies(page)["tw_csrf"]
    assert "secure" not in cookie.lower()
    assert "__Host-" not in cookie


async def test_logout_confirmation_needs_an_issued_token(server: Server) -> None:
    page = await server.http.get("/authorize", params=authorize_params(Pkce.new()))
    await server.http.post(
        "/login",
        data={
            "interaction": hidden_interaction(page.text),
            "username": "alice",
            "password": PASSWORD,
        },
    )
    alice = await server.services.stores.users.by_username("alice")
    assert alice is not None
    [session] = await server.services.stores.sessions.for_user(alice.user_id)

    async def ended() -> bool:
        record = await server.services.stores.sessions.get(session.session_id)
        return record is None or record.ended_at is not None

    # A cross-site GET carries the Lax session cookie but not the Strict CSRF cookie.
    del server.http.cookies["__Host-tw_csrf"]
    asked = await server.http.get("/logout", params={"confirm": "yes"})
    assert "Do you want to sign out?" in asked.text
    assert not await ended()
    # Cookie and field both chosen by an attacker (planted): still only a question.
    plant(server.http, PLANTED, "__Host-tw_csrf", "tw_csrf")
    asked = await server.http.get("/logout", params={"confirm": "yes", "csrf": PLANTED})
    assert "Do you want to sign out?" in asked.text
    assert PLANTED not in asked.text
    assert not await ended()
    # The confirmation page's own form (its issued token) signs out.
    issued = set_cookies(asked)["__Host-tw_csrf"].split(";")[0].split("=", 1)[1]
    assert f'value="{issued}"' in asked.text
    del server.http.cookies["tw_csrf"]
    server.http.cookies.set("__Host-tw_csrf", issued, domain="as.example", path="/")
    done = await server.http.post("/logout", data={"confirm": "yes", "csrf": issued})
    assert "You have been signed out" in done.text
    assert await ended()


async def test_console_refuses_a_planted_double_submit(server_monitored: Monitored) -> None:
    console = Console(server_monitored.at("192.0.2.9"))
    for name in ("tw_admin_csrf", "__Host-tw_admin_csrf"):
        console.http.cookies.set(name, PLANTED, domain="as.example", path="/")
        console.http.cookies.set(name, PLANTED, domain="as.example", path="/admin")
    console.csrf = PLANTED
    refused = await console.post("/admin/login", username="root", password=PASSWORD)
    assert refused.status_code == 403
    assert "The form expired" in refused.text
    # A token of the sign-in pages is none for the console.
    browser_token = server_monitored.services.csrf.issue(None, "browser")
    console.http.cookies.clear()
    console.http.cookies.set("__Host-tw_admin_csrf", browser_token, domain="as.example", path="/")
    console.csrf = browser_token
    refused = await console.post("/admin/login", username="root", password=PASSWORD)
    assert refused.status_code == 403
    # The console's own page issues one that works.
    console.http.cookies.clear()
    assert (await console.sign_in()).status_code == 303


@pytest.fixture
async def server_monitored(clock: FrozenClock) -> AsyncIterator[Monitored]:
    async with monitored_server(clock) as monitored:
        yield monitored
