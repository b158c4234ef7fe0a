"""Passkeys in a real browser: Debian's Chromium driven by Playwright, with Chromium's virtual
authenticator (CDP WebAuthn.addVirtualAuthenticator: CTAP2, resident keys, user verification)
standing in for a phone or a security key.

A user registers a passkey at /account; a client then asks for step-up (acr_values = the
phishing-resistant level, as a resource server's insufficient_user_authentication challenge
tells it to), the sign-in asks for the passkey, and the token that comes back carries that acr.
Then, in a browser with no session, the passkey alone signs the user in (usernameless).

An admin whose only factor is a passkey approves a device code (RFC 8628) for a client that
requires the phishing-resistant level, from the device sign-in page, and the device's tokens
carry that level; then signs in to the admin console with the passkey alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest

from tests.admin.test_browser import ARGS, CHROMIUM, sync_playwright
from tests.e2e.live import free_port, serve_in_thread
from tests.server.flows import Pkce, query_of
from tokenward.config import Settings
from tokenward.core.assurance import PHR, satisfies
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import Services, build_services, memory_stores, open_stores
from tokenward.guard.authz.stepup import parse_step_up
from tokenward.tokens.sealing import generate_master_key

CALLBACK = "http://127.0.0.1:9/callback"  # answered by the test's route, never contacted
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PASSWORD = "correct horse battery"
AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}


@dataclass
class Server:
    base: str
    services: Services
    secret: str
    kim: str  # her user id


async def _prepare(issuer: str, backend: str, data_dir: Path) -> tuple[Services, str, str]:
    settings = Settings(issuer=issuer, master_key=generate_master_key(), data_dir=data_dir)
    stores = memory_stores() if backend == "memory" else await open_stores(settings)
    services = await build_services(settings, stores)
    web = await services.client_admin.create_client(
        "web",
        grant_types=["authorization_code"],
        scope="openid read",
        redirect_uris=[CALLBACK],
        skip_consent=True,
    )
    await services.client_admin.create_client(
        "tv",
        grant_types=[DEVICE_GRANT],
        scope="openid read",
        redirect_uris=[],
        public=True,
        min_acr=PHR,  # a passkey, nothing less
    )
    await services.user_admin.create_user("kim", PASSWORD)
    await services.user_admin.create_user("ada", PASSWORD)
    await services.user_admin.set_admin("ada", True)
    kim = await services.stores.users.by_username("kim")
    assert kim is not None
    await stores.aclose()  # pooled SQL connections belong to this loop; the server opens its own
    return services, web["client_secret"], kim.user_id


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    port = free_port()
    data_dir = tmp_path_factory.mktemp("tokenward")
    # WebAuthn wants a domain for the relying party, never an IP address: localhost.
    services, secret, kim = asyncio.run(
        _prepare(f"http://localhost:{port}", request.param, data_dir)
    )
    try:
        with serve_in_thread(server_app(services), port):
            yield Server(f"http://localhost:{port}", services, secret, kim)
    finally:
        asyncio.run(services.stores.aclose())


def _authorize_url(server: Server, pkce: Pkce, **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": "web",
        "redirect_uri": CALLBACK,
        "scope": "openid read",
        "state": "s",
        "nonce": "n",
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return f"{server.base}/authorize?{urlencode(params)}"


def _exchange(server: Server, callback: str, pkce: Pkce) -> dict[str, Any]:
    code = query_of(callback)["code"]
    response = httpx.post(
        f"{server.base}/token",
        auth=("web", server.secret),
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": pkce.verifier,
        },
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_passkey_registration_step_up_and_usernameless_sign_in(server: Server) -> None:
    start = sync_playwright()
    callbacks: list[str] = []
    with start() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            context = browser.new_context()
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

            def answer(route: Any) -> None:
                callbacks.append(route.request.url)
                route.fulfill(status=200, content_type="text/html", body="<p id=done>done</p>")

            page.route("http://127.0.0.1:9/**", answer)
            cdp = context.new_cdp_session(page)
            cdp.send("WebAuthn.enable")
            authenticator = cdp.send(
                "WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR}
            )["authenticatorId"]

            # Register a passkey at /account (a password sign-in: kim has no factor yet).
            page.goto(f"{server.base}/account")
            page.fill("#username", "kim")
            page.fill("#password", PASSWORD)
            page.click("form[action='/login'] button[type=submit]")
            page.wait_for_selector("#passkey-form")
            page.fill("#passkey-name", "virtual key")
            page.click("#passkey-button")
            page.wait_for_selector("text=Passkey virtual key added.")
            stored = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
            assert [c["isResidentCredential"] for c in stored["credentials"]] == [True]

            # A resource server's step-up challenge names the phishing-resistant level; the
            # client sends it as acr_values, and the sign-in asks for the passkey.
            step_up = parse_step_up(f"acr={PHR}")
            pkce = Pkce.new()
            page.goto(_authorize_url(server, pkce, acr_values=step_up.acr_values or ""))
            page.wait_for_selector("text=This needs a passkey.")
            assert page.locator("form[action='/login/totp']").count() == 0
            page.click("#passkey-button")
            page.wait_for_selector("#done")
            tokens = _exchange(server, callbacks[-1], pkce)
            access = jwt.decode(tokens["access_token"], options={"verify_signature": False})
            id_token = jwt.decode(tokens["id_token"], options={"verify_signature": False})
            assert satisfies(access["acr"], PHR)
            assert (id_token["acr"], id_token["amr"]) == (PHR, ["hwk", "user"])

            # A browser with no session: the passkey alone, no username typed.
            context.clear_cookies()
            pkce = Pkce.new()
            page.goto(_authorize_url(server, pkce))
            page.wait_for_selector("form[action='/login/passkey-signin']")
            page.click("form[action='/login/passkey-signin'] button")
            page.wait_for_selector("#done")
            tokens = _exchange(server, callbacks[-1], pkce)
            access = jwt.decode(tokens["access_token"], options={"verify_signature": False})
            assert (access["sub"], access["acr"]) == (server.kim, PHR)
            # The authenticator's counter grew with each use, and the server kept up.
            stored = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
            assert stored["credentials"][0]["signCount"] >= 2
            assert not errors, errors
        finally:
            browser.close()


def _register_passkey(page: Any, server: Server, username: str) -> None:
    """At /account, signed in by password (no factor yet): add a passkey."""
    page.goto(f"{server.base}/account")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_selector("#passkey-form")
    page.fill("#passkey-name", "virtual key")
    page.click("#passkey-button")
    page.wait_for_selector("text=Passkey virtual key added.")


def test_a_passkey_approves_a_device_and_signs_in_to_the_console(server: Server) -> None:
    start = sync_playwright()
    with start() as playwright, httpx.Client(base_url=server.base) as device:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            context = browser.new_context()
            page = context.new_page()
            failed: list[str] = []  # responses >= 400, but the refusal below
            page.on(
                "response",
                lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )
            cdp = context.new_cdp_session(page)
            cdp.send("WebAuthn.enable")
            cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
            _register_passkey(page, server, "ada")

            # The device asks; ada opens its link in a browser with no session and uses the
            # passkey on the sign-in page: no password, and the level the client requires.
            started = device.post(
                "/device_authorization", data={"client_id": "tv", "scope": "openid read"}
            ).json()
            context.clear_cookies()
            page.goto(started["verification_uri_complete"])
            page.wait_for_selector("form[action='/login/passkey-signin']")
            page.click("form[action='/login/passkey-signin'] button")
            page.wait_for_selector("form[action='/device']")
            page.click("form[action='/device'] button[type=submit]")
            page.wait_for_selector("form[action='/device/decision']")
            page.click("form[action='/device/decision'] button:has-text('Allow')")
            page.wait_for_selector("text=Device connected")
            tokens = device.post(
                "/token",
                data={
                    "grant_type": DEVICE_GRANT,
                    "device_code": started["device_code"],
                    "client_id": "tv",
                },
            )
            assert tokens.status_code == 200, tokens.text
            for token in (tokens.json()["id_token"], tokens.json()["access_token"]):
                claims = jwt.decode(token, options={"verify_signature": False})
                assert (claims["acr"], claims["amr"]) == (PHR, ["hwk", "user"])
                assert isinstance(claims["auth_time"], int)

            # The console: the password alone is refused for a passkey account; the passkey
            # alone signs the admin in.
            context.clear_cookies()
            page.goto(f"{server.base}/admin/login")
            page.fill("#username", "ada")
            page.fill("#password", PASSWORD)
            page.click("form[action='/admin/login'] button[type=submit]")
            page.wait_for_selector("text=This account signs in with a passkey")
            page.click("form[action='/admin/login/passkey'] button")
            page.wait_for_url(f"{server.base}/admin/dashboard")
            assert page.locator("form[action='/admin/logout']").count() == 1
            assert failed == [f"401 {server.base}/admin/login"], failed
        finally:
            browser.close()
