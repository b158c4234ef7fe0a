"""Over https, in a real browser (Chromium, as in test_browser.py): the `__Host-` cookies are
kept and sent, so sign-in, consent and the console work, and every response carries HSTS.
(Over http, the loopback development issuer, test_browser.py covers the bare cookie names.)"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.admin.test_browser import ARGS, CHROMIUM, PASSWORD, _prepare, sync_playwright
from tests.e2e.live import free_port
from tests.server.flows import REDIRECT_URI, Pkce, authorize_params
from tokenward.deploy.deployment import server_app


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture(scope="module")
def https_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    issuer = f"https://127.0.0.1:{port}"
    services, _service_secret, _web_secret = asyncio.run(_prepare(issuer))
    cert, key = _self_signed(tmp_path_factory.mktemp("tls"))
    config = uvicorn.Config(
        server_app(services),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield issuer
    finally:
        server.should_exit = True
        thread.join(10)


def test_host_prefixed_cookies_work_in_chromium(https_base: str) -> None:
    start = sync_playwright()
    with start() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            context = browser.new_context(ignore_https_errors=True)
            page = context.new_page()
            hsts: list[str | None] = []

            def seen(response: Any) -> None:
                if response.url.startswith(https_base):  # not the stubbed callback
                    hsts.append(response.headers.get("strict-transport-security"))

            page.on("response", seen)
            # The console: sign in, see the dashboard.
            page.goto(https_base + "/admin")
            page.fill("#username", "root")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            assert page.url.endswith("/admin/dashboard"), page.content()[:2000]
            # Sign-in and consent for the web client: the redirect carries a code.
            params = authorize_params(Pkce.new(), scope="openid read")
            query = urlencode(params)
            page.route(re.compile(r"^https://app\.example/"), lambda r: r.fulfill(body="back"))
            page.goto(f"{https_base}/authorize?{query}")
            page.fill("#username", "alice")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            page.click("button:has-text('Allow')")
            page.wait_for_url(re.compile(r"^https://app\.example/"))
            back = parse_qs(urlsplit(page.url).query)
            assert page.url.startswith(REDIRECT_URI)
            assert back["state"] == ["st-123"]
            assert back["code"][0]
            names = {cookie["name"]: cookie for cookie in context.cookies()}
        finally:
            browser.close()
    assert set(names) == {
        "__Host-tw_admin",
        "__Host-tw_admin_csrf",
        "__Host-tw_csrf",
        "__Host-tw_session",
    }
    assert all(c["secure"] and c["path"] == "/" and c["httpOnly"] for c in names.values())
    assert len(hsts) >= 6
    assert set(hsts) == {"max-age=63072000; includeSubDomains"}
