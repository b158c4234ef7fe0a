"""Risk scores and their reasons per subject in the console, in Debian's Chromium.

The server runs with the learned risk detector on; gateway usage events (as the servers'
consumer of the gateways' stream hands them to the monitor) show alice's token moving to
another network and device and one address sending forged tokens. The Alerts page lists both
with their score, action and reasons (saved as test-artifacts/risk.png).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.admin.test_browser import ARGS, ARTIFACTS, CHROMIUM, PASSWORD, sync_playwright
from tests.e2e.live import free_port, serve_in_thread
from tokenward.config import Settings
from tokenward.core.events import ALLOW, DENY, UsageEvent
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import Services, build_services, memory_stores
from tokenward.monitor.config import MonitorSettings, RiskSettings
from tokenward.tokens.sealing import generate_master_key


async def _prepare(issuer: str) -> Services:
    monitor = MonitorSettings(audit_log="off", risk=RiskSettings(enabled=True))
    services = await build_services(
        Settings(issuer=issuer, master_key=generate_master_key()),
        memory_stores(),
        monitor_settings=monitor,
    )
    await services.user_admin.create_user("root", PASSWORD)
    await services.user_admin.set_admin("root", True)
    return services


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[str, Services]]:
    port = free_port()
    services = asyncio.run(_prepare(f"http://127.0.0.1:{port}"))
    with serve_in_thread(server_app(services), port) as base:
        yield base, services


def gateway_traffic(services: Services) -> None:
    now = time.time()
    usual = dict(
        jti="tok-1", sub="alice", client_id="web", route="orders", status=200, decision=ALLOW,
        reason="ok", sid="s1", source="gateway",
    )  # fmt: skip
    emit = services.monitor.emit
    for n in range(3):
        emit(UsageEvent(now - 60 + n, ip="198.51.100.10", user_agent="Firefox/133",
                        path=f"/api/orders/{n}", **usual))  # type: ignore[arg-type]  # fmt: skip
    emit(UsageEvent(now, ip="203.0.113.9", user_agent="curl/8.10", path="/api/orders/1",
                    **usual))  # type: ignore[arg-type]  # fmt: skip
    for n in range(30):
        emit(UsageEvent(now - 30 + n, jti=None, sub=None, client_id=None, route="orders",
                        ip="192.0.2.66", user_agent="curl/8.10", status=401, decision=DENY,
                        reason="invalid_token", source="gateway", path="/api/orders"))  # fmt: skip
    deadline = time.monotonic() + 10
    while services.monitor.processed < 34:
        assert time.monotonic() < deadline, "the monitor's task never drained the events"
        time.sleep(0.02)


def test_risk_scores_and_reasons_per_subject_in_the_browser(
    live: tuple[str, Services],
) -> None:
    start = sync_playwright()
    base, services = live
    gateway_traffic(services)
    ARTIFACTS.mkdir(exist_ok=True)
    with start() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(base + "/admin")
            page.fill("#username", "root")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            page.click("nav >> text=Alerts")
            alice = page.locator('tr[data-risk="sub:alice"]')
            assert alice.count() == 1
            text = alice.inner_text()
            assert "step_up" in text
            assert "token tok-1 moved to network 203.0.113.0/24" in text
            risk = int(alice.locator("strong").inner_text())
            assert 90 <= risk <= 100
            address = page.locator('tr[data-risk="ip:192.0.2.66"]')
            assert "failed validations keep coming from 192.0.2.0/24" in address.inner_text()
            assert "block_ip" in address.inner_text()
            # The alert itself says what was done and why.
            assert page.locator("tr[data-alert]", has_text="Risk 0.9").count() >= 1
            page.screenshot(path=str(ARTIFACTS / "risk.png"), full_page=True)
            assert [e for e in errors if not e.startswith("Failed to load resource")] == []
        finally:
            browser.close()
