"""/docs works offline: Swagger UI's assets come from this server, under a same-origin CSP."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.admin.test_browser import ARGS, CHROMIUM, sync_playwright
from tests.e2e.live import free_port, serve_in_thread
from tests.server.conftest import Server
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import build_services, memory_stores
from tokenward.tokens.sealing import generate_master_key


@pytest.mark.anyio
async def test_docs_reference_only_same_origin_assets_that_are_served(server: Server) -> None:
    page = await server.http.get("/docs")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "'unsafe-eval'" not in csp
    references = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(references) >= 3
    for reference in references:
        assert reference.startswith("/"), reference
        assert not reference.startswith("//"), reference
        asset = await server.http.get(reference)
        assert asset.status_code == 200, reference
        assert asset.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in page.text  # no inline script: the CSP would refuse it
    assert (await server.http.get("/docs/assets/..%2F..%2Fconfig.py")).status_code == 404
    assert (await server.http.get("/redoc")).status_code == 404  # it would load from a CDN


@pytest.fixture(scope="module")
def live_base() -> Iterator[str]:
    port = free_port()
    settings = Settings(issuer=f"http://127.0.0.1:{port}", master_key=generate_master_key())
    services = asyncio.run(build_services(settings, memory_stores()))
    with serve_in_thread(server_app(services), port) as base:
        yield base


def test_docs_render_in_a_browser_with_no_request_elsewhere(live_base: str) -> None:
    start = sync_playwright()
    requested: list[str] = []
    problems: list[str] = []
    with start() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.on(
                "console",
                lambda message: problems.append(message.text) if message.type == "error" else None,
            )
            page.goto(f"{live_base}/docs")
            page.wait_for_selector(".swagger-ui .info .title", timeout=15_000)
            title = page.inner_text(".swagger-ui .info .title")
            page.wait_for_selector(".opblock-summary-path", timeout=15_000)
        finally:
            browser.close()
    assert title.startswith("tokenward")
    origin = urlsplit(live_base).netloc
    assert {urlsplit(url).netloc for url in requested if not url.startswith("data:")} == {origin}
    assert problems == []  # no CSP violation, no failed load
