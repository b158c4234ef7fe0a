"""The developer portal in a real browser: Debian's Chromium, headless, driven by Playwright,
against a server on loopback HTTP with SQLite storage (the 0017_portal columns).

A developer signs in at /portal, browses the catalogue and the Orders API's docs, and registers
an app; an admin approves it in the console (another browser context); the developer reveals
the secret once, gets a client_credentials token from /token with it, rotates it, and the old
secret is refused. Screenshots go to test-artifacts/portal-*.png.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.admin.test_browser import ARGS, ARTIFACTS, CHROMIUM, sync_playwright
from tests.e2e.live import free_port, serve_in_thread
from tests.server.portal_setup import write_gateway
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import Services, build_services, open_stores
from tokenward.tokens.sealing import generate_master_key

PASSWORD = "correct horse battery"


@dataclass
class Server:
    base: str
    services: Services


async def _prepare(issuer: str, data_dir: Path) -> Services:
    settings = Settings(
        issuer=issuer,
        master_key=generate_master_key(),
        data_dir=data_dir,
        portal_gateway_configs=str(write_gateway(data_dir, issuer)),
    )
    stores = await open_stores(settings)
    services = await build_services(settings, stores)
    await services.user_admin.create_user("dev", PASSWORD)
    await services.user_admin.create_user("root", PASSWORD)
    await services.user_admin.set_admin("root", True)
    await stores.aclose()  # pooled SQL connections belong to this loop; the server opens its own
    return services


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    services = asyncio.run(_prepare(base, tmp_path_factory.mktemp("tokenward")))
    try:
        with serve_in_thread(server_app(services), port):
            yield Server(base, services)
    finally:
        asyncio.run(services.stores.aclose())


def _token(server: Server, client_id: str, secret: str) -> httpx.Response:
    return httpx.post(
        f"{server.base}/token",
        data={"grant_type": "client_credentials", "scope": "orders:read"},
        auth=(client_id, secret),
    )


def test_developer_registers_admin_approves_developer_reveals_and_rotates(server: Server) -> None:
    start = sync_playwright()
    ARTIFACTS.mkdir(exist_ok=True)
    with start() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            developer = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
            errors: list[str] = []
            developer.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            failed: list[str] = []
            developer.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)

            # Sign in with the account, at the portal.
            developer.goto(server.base + "/portal")
            developer.fill("#username", "dev")
            developer.fill("#password", PASSWORD)
            developer.click("form[action='/login'] button[type=submit]")
            developer.wait_for_selector("tr[data-api=orders]")
            assert developer.url.endswith("/portal")
            assert "orders:read orders:write" in developer.inner_text("tr[data-api=orders]")

            # The Orders API's docs, rendered from its OpenAPI document.
            developer.click("tr[data-api=orders] a")
            developer.wait_for_selector("section[data-operation='POST /api/orders/orders']")
            body = developer.inner_text("section[data-operation='POST /api/orders/orders']")
            assert "Place an order <script>alert(1)</script>" in body  # shown as text
            assert '"qty"' in body
            assert developer.locator("section.operation").count() == 3
            developer.screenshot(path=str(ARTIFACTS / "portal-api.png"), full_page=True)

            # Register an app: pending.
            developer.click("nav >> text=Your apps")
            developer.fill("#name", "Shop service")
            developer.check("input[name=api][value=orders]")
            developer.click("form[action='/portal/apps'] button[type=submit]")
            developer.wait_for_selector("#client-id")
            client_id = developer.inner_text("#client-id").strip()
            assert developer.inner_text("#status").strip() == "pending"
            assert _token(server, client_id, "anything").json()["error"] == "invalid_client"

            # The admin approves it in the console, in a browser of their own.
            admin = browser.new_context().new_page()
            admin.goto(server.base + "/admin/login")
            admin.fill("#username", "root")
            admin.fill("#password", PASSWORD)
            admin.click("button[type=submit]")
            admin.wait_for_url("**/admin/dashboard")
            admin.goto(server.base + "/admin/clients")
            row = admin.locator(f'tr[data-pending="{client_id}"]')
            assert "Shop service" in row.inner_text()
            row.locator("button", has_text="Approve").click()
            admin.wait_for_selector("text=App approved")
            assert admin.locator(f'tr[data-pending="{client_id}"]').count() == 0

            # The developer reveals the secret, once, and uses it.
            developer.reload()
            assert developer.inner_text("#status").strip() == "approved"
            developer.click("button:has-text('Reveal the secret')")
            developer.wait_for_selector("#new-secret")
            secret = developer.inner_text("#new-secret").strip()
            developer.screenshot(path=str(ARTIFACTS / "portal-secret.png"), full_page=True)
            token = _token(server, client_id, secret)
            assert token.status_code == 200, token.text
            assert token.json()["token_type"] in ("Bearer", "DPoP")
            developer.goto(f"{server.base}/portal/apps/{client_id}")
            assert developer.locator("#new-secret").count() == 0
            assert secret not in developer.content()

            # Rotation: a new secret shown once; the old one stops working.
            developer.click("button:has-text('Rotate the secret')")
            developer.wait_for_selector("#new-secret")
            rotated = developer.inner_text("#new-secret").strip()
            assert rotated != secret
            refused = _token(server, client_id, secret)
            assert refused.status_code == 401
            assert refused.json()["error"] == "invalid_client"
            assert _token(server, client_id, rotated).status_code == 200
            developer.screenshot(path=str(ARTIFACTS / "portal-app.png"), full_page=True)
            # No CSP violation, no script error; the browser's own favicon probe may 404.
            assert [u for u in failed if not u.endswith("/favicon.ico")] == []
            assert [e for e in errors if not e.startswith("Failed to load resource")] == []
        finally:
            browser.close()
