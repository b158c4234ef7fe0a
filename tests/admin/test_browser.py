"""The console in a real browser: Debian's Chromium, headless, driven by Playwright.

Signs in as an admin, looks at the live dashboard (saved as test-artifacts/dashboard.png),
revokes a user's session, and sees the next API call with that session's token refused.
Needs `apt-get install -y chromium` and `.venv/bin/pip install playwright` (no downloaded
browser: `playwright install` is never needed). Missing either fails under CI=true and skips
elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import IN_CI
from tests.e2e.live import free_port, serve_in_thread
from tests.server.flows import REDIRECT_URI, Pkce, sign_in_and_consent
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import Services, build_services, memory_stores
from tokenward.monitor.config import MonitorSettings
from tokenward.tokens.sealing import generate_master_key

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "correct horse battery"
HOW = "install with `apt-get install -y chromium` and `.venv/bin/pip install playwright`"


def sync_playwright() -> Any:
    start: Callable[[], Any] | None
    try:
        from playwright.sync_api import sync_playwright as playwright_start
    except ImportError:
        start = None
    else:
        start = playwright_start
    problem = None
    if start is None:
        problem = "the playwright package is missing"
    elif not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        problem = f"{CHROMIUM} is missing"
    if problem is not None:
        message = f"browser test: {problem}; {HOW}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return start


@dataclass
class Live:
    base: str
    services: Services
    service_secret: str
    web_secret: str


async def _prepare(issuer: str) -> tuple[Services, str, str]:
    monitor = MonitorSettings(audit_log="off", failures={"exempt_networks": ["127.0.0.0/8"]})
    services = await build_services(
        Settings(issuer=issuer, master_key=generate_master_key(), refresh_reuse_grace=0),
        memory_stores(),
        monitor_settings=monitor,
    )
    service = await services.client_admin.create_client(
        "service", grant_types=["client_credentials"], scope="read", redirect_uris=[]
    )
    web = await services.client_admin.create_client(
        "web",
        grant_types=["authorization_code", "refresh_token"],
        scope="openid read",
        redirect_uris=[REDIRECT_URI],
    )
    await services.user_admin.create_user("alice", PASSWORD)
    await services.user_admin.create_user("root", PASSWORD)
    await services.user_admin.set_admin("root", True)
    return services, service["client_secret"], web["client_secret"]


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    services, service_secret, web_secret = asyncio.run(_prepare(issuer))
    with serve_in_thread(server_app(services), port) as base:
        yield Live(base, services, service_secret, web_secret)


async def signed_in(live: Live) -> dict[str, str]:
    """Alice signs in (a new browser session) and the web client gets her tokens."""
    async with httpx.AsyncClient(base_url=live.base) as http:
        pkce = Pkce.new()
        code = (await sign_in_and_consent(http, pkce, scope="openid read"))["code"]
        response = await http.post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": pkce.verifier,
            },
            auth=("web", live.web_secret),
        )
        tokens: dict[str, str] = response.json()
        return tokens


async def alice_tokens(live: Live) -> dict[str, str]:
    tokens = await signed_in(live)
    async with httpx.AsyncClient(base_url=live.base) as http:
        # Some traffic for the charts: good calls, and a few refused ones.
        for _ in range(12):
            await http.get(
                "/api/hello", headers={"authorization": f"Bearer {tokens['access_token']}"}
            )
        service = await http.post(
            "/token",
            data={"grant_type": "client_credentials"},
            auth=("service", live.service_secret),
        )
        for _ in range(20):
            await http.get(
                "/api/hello", headers={"authorization": f"Bearer {service.json()['access_token']}"}
            )
        for i in range(4):
            await http.get("/api/hello", headers={"authorization": f"Bearer bad{i}.x.y"})
        await http.get("/api/hello")
        # A stolen refresh token replayed after the client used it: an alert on the dashboard.
        other = await signed_in(live)
        replay = {"grant_type": "refresh_token", "refresh_token": other["refresh_token"]}
        for _ in range(2):
            await http.post("/token", data=replay, auth=("web", live.web_secret))
        return tokens


def session_of(token: str) -> str:
    payload = token.split(".")[1]
    sid: str = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sid"]
    return sid


def hello(live: Live, token: str) -> httpx.Response:
    return httpx.get(live.base + "/api/hello", headers={"authorization": f"Bearer {token}"})


def test_admin_revokes_a_session_in_the_browser(live: Live) -> None:
    start = sync_playwright()
    tokens = asyncio.run(alice_tokens(live))
    assert hello(live, tokens["access_token"]).status_code == 200
    ARTIFACTS.mkdir(exist_ok=True)
    with start() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            failed: list[str] = []
            page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
            page.goto(live.base + "/admin")
            assert page.url.endswith("/admin/login")
            page.fill("#username", "root")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            assert page.url.endswith("/admin/dashboard"), page.content()[:2000]
            page.wait_for_selector("body[data-charts=drawn]")
            page.wait_for_selector("#chart-requests svg path[data-series=allow]")
            assert page.locator("text=Refresh token reused").count() >= 1
            assert page.locator("#chart-reasons svg rect").count() >= 1
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            page.click("nav >> text=Sessions & grants")
            sid = session_of(tokens["access_token"])
            assert page.locator("tr[data-session]").count() == 3  # alice twice, root
            page.locator(f'tr[data-session="{sid}"] button', has_text="Revoke session").click()
            page.wait_for_selector("text=Session ended; its tokens are revoked.")
            assert page.locator(f'tr[data-session="{sid}"]').count() == 0
            assert page.locator("tr[data-session]").count() == 2

            page.click("nav >> text=Alerts")
            alert = page.locator("tr[data-alert]").first
            assert "Refresh token reused" in alert.inner_text()
            alert.locator("button", has_text="Resolve").click()
            page.wait_for_selector("text=Response carried out.")
            assert "resolve by user:root" in page.locator("tr[data-alert]").first.inner_text()
            page.screenshot(path=str(ARTIFACTS / "alerts.png"), full_page=True)
            # No CSP violation, no script error; the browser's own favicon probe may 404.
            assert [u for u in failed if not u.endswith("/favicon.ico")] == []
            assert [e for e in errors if not e.startswith("Failed to load resource")] == []
        finally:
            browser.close()
    refused = hello(live, tokens["access_token"])
    assert refused.status_code == 401
    assert "session ended" in refused.headers["www-authenticate"]
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
