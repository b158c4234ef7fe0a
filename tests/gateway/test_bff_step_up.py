"""Step-up in browser mode over real HTTP: a real authorization server, a gateway with an
`auth: bff` route whose Cedar policy needs `urn:tokenward:acr:mfa`. A page load is led to sign
in again (password + TOTP) and comes back to a 200; a fetch gets 401 JSON naming the login URL;
a sign-in that cannot reach the level ends in 403, not a redirect loop; an upstream's own
RFC 9470 challenge is answered the same way."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pyotp
import pytest

from tests.conftest import FrozenClock
from tests.e2e.live import free_port
from tests.gateway.conftest import GatewayFactory, Running, serve
from tests.server.flows import hidden_interaction
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import Services, build_services, memory_stores
from tokenward.gateway.config import parse_config
from tokenward.gateway.trust import build_bff, remote_trust
from tokenward.tokens.sealing import generate_master_key

PASSWORD = "correct horse battery"
MFA = "urn:tokenward:acr:mfa"
PHR = "urn:tokenward:acr:phr"
POLICY = f"""
@id("signed-in")
permit (principal, action, resource);

@id("needs-mfa")
@step_up("acr={MFA};max_age=300")
forbid (principal, action, resource)
unless {{ context.acr == "{MFA}" && context.auth_age <= 300 }};
"""
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
  - name: secure
    prefix: /secure
    upstreams: [{upstream}]
    auth: bff
    scopes: [read]
    policies: {{files: [POLICY]}}
  - {{name: api, prefix: /api, upstreams: [CHALLENGER], auth: bff, scopes: [read]}}
"""
NAVIGATE = {"sec-fetch-mode": "navigate", "accept": "text/html"}
FETCH = {"sec-fetch-mode": "cors", "accept": "application/json"}


async def challenger(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An API that asks every caller for a passkey sign-in (RFC 9470 §3), with a body."""
    if scope["type"] != "http":
        return
    challenge = (
        b'Bearer error="insufficient_user_authentication", '
        b'error_description="passkey needed", acr_values="' + PHR.encode() + b'", max_age=60'
    )
    headers = [(b"www-authenticate", challenge), (b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": b"upstream says no"})


@dataclass
class Setup:
    issuer: str
    gateway: Running
    services: Services
    user_id: str
    clock: FrozenClock


@pytest.fixture
def setup(
    gateway: GatewayFactory,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
    upstream_url: str,
    tmp_path: Path,
) -> Iterator[Setup]:
    as_port, gw_port = free_port(), free_port()
    # Two host names: the server's own session cookie is also `tw_session`, and cookies do not
    # tell ports apart (in production the issuer and the app are different sites).
    issuer, base = f"http://localhost:{as_port}", f"http://127.0.0.1:{gw_port}"

    async def prepare() -> tuple[Services, str, str]:
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
    policy = tmp_path / "secure.cedar"
    policy.write_text(POLICY)
    with serve(challenger) as challenger_url, serve(server_app(services), as_port):
        text = (
            CONFIG.replace("AS", issuer)
            .replace("GW", base)
            .replace("POLICY", str(policy))
            .replace("CHALLENGER", challenger_url)
        )
        config = parse_config(text.format(upstream=upstream_url))
        trust = asyncio.run(remote_trust(config.trust, config, clock))
        bff = asyncio.run(build_bff(config, clock))
        running = gateway(text, validator=trust.validator, bff=bff, server={"port": gw_port})
        yield Setup(issuer, running, services, user_id, clock)


def _enrol_totp(setup: Setup) -> str:
    """The user turns on an authenticator app (what /account does, tested elsewhere)."""
    secret = pyotp.random_base32()
    code = pyotp.TOTP(secret).at(setup.clock())
    assert asyncio.run(setup.services.second_factors.totp.confirm(setup.user_id, secret, code))
    return secret


def _sign_in(setup: Setup, browser: httpx.Client, login: str, totp: str | None) -> httpx.Response:
    """Follow a gateway login URL through the authorization server's pages (password, then a
    TOTP code when asked) back to the gateway's callback; the callback's answer."""
    start = browser.get(login)
    assert start.status_code == 302, start.text
    page = browser.get(start.headers["location"])
    for _ in range(3):
        if page.status_code == 302:
            break
        assert page.status_code == 200, page.text[:300]
        form = hidden_interaction(page.text)
        if 'action="/login/totp"' in page.text:
            assert totp is not None, "the server asked for a code"
            setup.clock.advance(30)  # the next step: the enrolment used the current code up
            data = {"interaction": form, "code": pyotp.TOTP(totp).at(setup.clock())}
            page = browser.post(f"{setup.issuer}/login/totp", data=data)
        else:
            data = {"interaction": form, "username": "alice", "password": PASSWORD}
            page = browser.post(f"{setup.issuer}/login", data=data)
    assert page.status_code == 302, page.text[:300]
    callback = page.headers["location"]
    assert callback.startswith(f"{setup.gateway.base}/bff/callback?"), callback
    return browser.get(callback)


def _query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def test_navigation_steps_up_and_comes_back(setup: Setup) -> None:
    base = setup.gateway.base
    with httpx.Client() as browser:
        first = _sign_in(setup, browser, f"{base}/bff/login?return_to=/app/home", None)
        assert first.headers["location"] == "/app/home"
        assert browser.get(f"{base}/app/home").status_code == 200
        old_session = browser.cookies.get("tw_session", domain="127.0.0.1")
        secret = _enrol_totp(setup)

        page = browser.get(f"{base}/secure/report?year=2026", headers=NAVIGATE)
        assert page.status_code == 302
        login = page.headers["location"]
        assert urlsplit(login).path == "/bff/login"
        assert _query(login) == {
            "return_to": "/secure/report?year=2026", "acr_values": MFA, "max_age": "300",
        }  # fmt: skip
        assert setup.gateway.last_audit()["reason"] == "insufficient_user_authentication"
        # The issuer is asked for what the policy wants.
        authorize = browser.get(f"{base}{login}")
        assert _query(authorize.headers["location"])["acr_values"] == MFA
        assert _query(authorize.headers["location"])["max_age"] == "300"

        done = _sign_in(setup, browser, f"{base}{login}", secret)
        assert done.status_code == 302
        assert done.headers["location"] == "/secure/report?year=2026"
        assert (
            browser.cookies.get("tw_session", domain="127.0.0.1") != old_session
        )  # the stronger session replaces it
        again = browser.get(f"{base}/secure/report?year=2026", headers=NAVIGATE)
        assert again.status_code == 200, again.text
        assert again.json()["query"] == "year=2026"
        assert "tw_stepup" not in " ".join(again.json()["headers"].get("cookie", []))
        # The old session is gone: its cookie signs nobody in.
        stale = httpx.get(f"{base}/app/home", headers={"cookie": f"tw_session={old_session}"})
        assert stale.status_code == 401, stale.text
        # The CSRF token is the new session's.
        post = browser.post(
            f"{base}/secure/report",
            headers={
                "origin": base,
                "x-csrf-token": str(browser.cookies.get("tw_csrf", domain="127.0.0.1")),
            },
        )
        assert post.status_code == 200, post.text


def test_fetch_gets_json_naming_the_login(setup: Setup) -> None:
    base = setup.gateway.base
    with httpx.Client() as browser:
        _sign_in(setup, browser, f"{base}/bff/login?return_to=/app/home", None)
        answer = browser.get(f"{base}/secure/data", headers=FETCH)
        assert answer.status_code == 401
        body = answer.json()
        assert body["error"] == "insufficient_user_authentication"
        assert (body["acr_values"], body["max_age"]) == (MFA, "300")
        assert _query(body["login"]) == {
            "return_to": "/secure/data", "acr_values": MFA, "max_age": "300",
        }  # fmt: skip
        unsafe = browser.post(
            f"{base}/secure/data",
            headers={
                "origin": base,
                "x-csrf-token": str(browser.cookies.get("tw_csrf", domain="127.0.0.1")),
                **NAVIGATE,
            },
        )
        assert unsafe.status_code == 401  # a POST is never redirected


def test_a_sign_in_that_falls_short_ends_in_403_not_a_loop(setup: Setup) -> None:
    base = setup.gateway.base
    with httpx.Client() as browser:
        _sign_in(setup, browser, f"{base}/bff/login?return_to=/app/home", None)
        page = browser.get(f"{base}/secure/report", headers=NAVIGATE)
        assert page.status_code == 302
        # No second factor to offer: the issuer signs the user in with the password again.
        done = _sign_in(setup, browser, f"{base}{page.headers['location']}", None)
        assert done.headers["location"] == "/secure/report"
        refused = browser.get(f"{base}/secure/report", headers=NAVIGATE)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "insufficient_user_authentication"
        assert setup.gateway.last_audit()["reason"] == "step_up_failed"
        fetched = browser.get(f"{base}/secure/report", headers=FETCH)
        assert fetched.status_code == 403
        # After the window, the user may try again.
        setup.clock.advance(61)
        browser.cookies.delete("tw_stepup", domain="127.0.0.1")  # what the browser does at Max-Age
        assert browser.get(f"{base}/secure/report", headers=NAVIGATE).status_code == 302


def test_an_upstream_challenge_is_answered_for_the_browser(setup: Setup) -> None:
    base = setup.gateway.base
    with httpx.Client() as browser:
        _sign_in(setup, browser, f"{base}/bff/login?return_to=/app/home", None)
        page = browser.get(f"{base}/api/payments", headers=NAVIGATE)
        assert page.status_code == 302
        assert _query(page.headers["location"]) == {
            "return_to": "/api/payments", "acr_values": PHR, "max_age": "60",
        }  # fmt: skip
        assert "upstream says no" not in page.text
        fetched = browser.get(f"{base}/api/payments", headers=FETCH)
        assert fetched.status_code == 401
        assert fetched.json()["acr_values"] == PHR


@pytest.mark.parametrize(
    "query",
    [
        "acr_values=" + "a" * 129,
        "acr_values=" + "+".join(["a"] * 9),
        'acr_values=a"b',
        "max_age=-1",
        "max_age=99999999999",
        "max_age=12s",
    ],
)
def test_login_refuses_bad_step_up_parameters(setup: Setup, query: str) -> None:
    answer = setup.gateway.http.get(f"/bff/login?return_to=/app&{query}")
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"
