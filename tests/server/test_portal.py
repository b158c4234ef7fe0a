"""The developer portal over HTTP (ASGI): sign-in, the catalogue and an API's docs, an app
registered pending approval, approval by an admin, the secret shown once, rotation, usage, and
every refusal: a pending app gets no token, another developer neither sees nor rotates my
app, a form without CSRF or from another origin is refused."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyotp
import pytest

from tests.admin.conftest import Console
from tests.conftest import FrozenClock
from tests.docs.blocks import documented
from tests.server.portal_setup import ORDERS_YAML, write_gateway
from tokenward.config import Settings
from tokenward.core.events import UsageEvent
from tokenward.deploy.deployment import server_app
from tokenward.deploy.portal import PortalConfigError, load_catalogue
from tokenward.deploy.wiring import Services, build_services, memory_stores
from tokenward.monitor.alerts import SecurityAudit
from tokenward.monitor.config import MonitorSettings
from tokenward.tokens.sealing import generate_master_key

pytestmark = pytest.mark.anyio
ISSUER = "https://as.example"
PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_INTERACTION = re.compile(r'name="interaction" value="([^"]+)"')


@dataclass
class Portal:
    services: Services
    app: object
    audit: io.StringIO

    def browser(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=("192.0.2.30", 40000))  # type: ignore[arg-type]
        return httpx.AsyncClient(transport=transport, base_url=ISSUER)


@pytest.fixture
async def portal(tmp_path: Path, clock: FrozenClock) -> Portal:
    config = write_gateway(tmp_path)
    settings = Settings(
        issuer=ISSUER,
        master_key=generate_master_key(),
        portal_gateway_configs=str(config),
        portal_max_apps=2,
    )
    services = await build_services(
        settings, memory_stores(clock), clock, MonitorSettings(audit_log="off")
    )
    for name in ("dev", "other", "root"):
        await services.user_admin.create_user(name, PASSWORD)
    await services.user_admin.set_admin("root", True)
    audit = io.StringIO()
    services.monitor.audit = SecurityAudit(audit)
    return Portal(services, server_app(services), audit)


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match is not None, html[:500]
    return match.group(1)


async def signed_in(portal: Portal, username: str = "dev") -> httpx.AsyncClient:
    """A browser whose user signed in at the portal's sign-in page and landed on /portal."""
    http = portal.browser()
    page = await http.get("/portal")
    assert page.status_code == 200
    assert 'action="/login"' in page.text
    interaction = _INTERACTION.search(page.text)
    assert interaction is not None
    response = await http.post(
        "/login",
        data={
            "interaction": interaction.group(1),
            "username": username,
            "password": PASSWORD,
        },
    )
    assert response.status_code == 302, response.text[:400]
    assert response.headers["location"] == "/portal"
    return http


async def post_form(
    http: httpx.AsyncClient, page: str, action: str, **fields: str | list[str]
) -> httpx.Response:
    html = (await http.get(page)).text
    data = {"csrf": csrf_of(html), **fields}
    return await http.post(action, data=data, headers={"origin": ISSUER})


async def register(http: httpx.AsyncClient, name: str = "Shop app") -> str:
    response = await post_form(
        http, "/portal/apps", "/portal/apps", name=name, kind="service", api=["orders"]
    )
    assert response.status_code == 303, response.text[:600]
    location = response.headers["location"]
    assert location.startswith("/portal/apps/")
    return location.rsplit("/", 1)[1]


async def client_credentials(portal: Portal, client_id: str, secret: str) -> httpx.Response:
    async with portal.browser() as http:
        return await http.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": "orders:read"},
            auth=(client_id, secret),
        )


async def approve(portal: Portal, client_id: str) -> None:
    await portal.services.admin_actions.perform(
        "user:root", "test", "client.approve", {"client_id": client_id}
    )


async def secret_of(http: httpx.AsyncClient, client_id: str, op: str) -> httpx.Response:
    # The apps page always has a form (the browser's one CSRF token serves every page).
    return await post_form(http, "/portal/apps", f"/portal/apps/{client_id}/secret", op=op)


def shown_secret(html: str) -> str:
    match = re.search(r'<code id="new-secret">([^<]+)</code>', html)
    assert match is not None, html[:1500]
    return match.group(1)


async def test_signed_out_gets_the_sign_in_page(portal: Portal) -> None:
    async with portal.browser() as http:
        for path in ("/portal", "/portal/apis/orders", "/portal/apps"):
            page = await http.get(path)
            assert page.status_code == 200
            assert 'name="password"' in page.text
            assert "Shop app" not in page.text


async def test_catalogue_and_api_docs_render_escaped(portal: Portal) -> None:
    http = await signed_in(portal)
    page = await http.get("/portal")
    assert page.headers["cache-control"] == "no-store"
    assert "style-src 'self'" in page.headers["content-security-policy"]
    assert 'data-api="orders"' in page.text
    assert 'data-api="status"' in page.text
    assert "/api/orders" in page.text
    assert "orders:read orders:write" in page.text
    assert "https://api.example/orders" in page.text
    docs = await http.get("/portal/apis/orders")
    assert docs.status_code == 200
    html = docs.text
    for operation in (
        "GET /api/orders/orders",
        "POST /api/orders/orders",
        "GET /api/orders/orders/{id}",
    ):
        assert f'data-operation="{operation}"' in html
    assert 'data-parameter="limit"' in html
    assert 'data-parameter="id"' in html
    assert "&#34;qty&#34;" in html or "&quot;qty&quot;" in html  # the $ref'd body schema
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html
    assert "<b>shop</b>" not in html
    assert "http://" not in html.replace(ISSUER, "").split("<body>", 1)[0]  # no CDN asset
    missing = await http.get("/portal/apis/nothing")
    assert missing.status_code == 404
    await http.aclose()


async def test_register_approve_reveal_once_rotate(portal: Portal) -> None:
    http = await signed_in(portal)
    client_id = await register(http)
    stored = await portal.services.stores.clients.get(client_id)
    assert stored is not None
    assert (stored.owner, stored.approval, stored.secret_digest) == (
        (await portal.services.stores.users.by_username("dev")).user_id,  # type: ignore[union-attr]
        "pending",
        None,
    )
    assert stored.scopes == {"orders:read", "orders:write"}
    assert stored.audience == ("https://api.example/orders",)
    page = await http.get(f"/portal/apps/{client_id}")
    assert "Waiting for an operator" in page.text
    # Pending: no secret to reveal, and any secret at all is refused with invalid_client.
    refused = await secret_of(http, client_id, "reveal")
    assert refused.status_code == 400
    assert (await client_credentials(portal, client_id, "guess")).json()[
        "error"
    ] == "invalid_client"

    await approve(portal, client_id)
    revealed = await secret_of(http, client_id, "reveal")
    assert revealed.status_code == 200
    assert revealed.headers["cache-control"] == "no-store"
    secret = shown_secret(revealed.text)
    token = await client_credentials(portal, client_id, secret)
    assert token.status_code == 200, token.text
    assert token.json()["scope"] == "orders:read"
    # Shown once: the page no longer shows it, a second reveal is refused.
    again = await http.get(f"/portal/apps/{client_id}")
    assert secret not in again.text
    assert "Rotate the secret" in again.text
    second = await secret_of(http, client_id, "reveal")
    assert second.status_code == 400
    assert secret not in second.text

    rotated = await secret_of(http, client_id, "rotate")
    assert rotated.status_code == 200
    new_secret = shown_secret(rotated.text)
    assert new_secret != secret
    assert (await client_credentials(portal, client_id, secret)).json()["error"] == "invalid_client"
    assert (await client_credentials(portal, client_id, new_secret)).status_code == 200
    audit = portal.audit.getvalue()
    actions = [line["action"] for line in map(json.loads, audit.splitlines())]
    assert actions == [
        "portal.register",
        "client.approve",
        "portal.reveal_secret",
        "portal.rotate_secret",
    ]
    assert secret not in audit
    assert new_secret not in audit
    await http.aclose()


async def test_rejected_app_gets_no_token(portal: Portal) -> None:
    http = await signed_in(portal)
    client_id = await register(http)
    await portal.services.admin_actions.perform(
        "user:root", "test", "client.reject", {"client_id": client_id}
    )
    assert (await secret_of(http, client_id, "reveal")).status_code == 400
    assert "rejected" in (await http.get(f"/portal/apps/{client_id}")).text
    await http.aclose()


async def test_another_developer_cannot_see_or_rotate_my_app(portal: Portal) -> None:
    mine = await signed_in(portal, "dev")
    client_id = await register(mine)
    await approve(portal, client_id)
    theirs = await signed_in(portal, "other")
    assert client_id not in (await theirs.get("/portal/apps")).text
    page = await theirs.get(f"/portal/apps/{client_id}")
    assert page.status_code == 404
    assert client_id not in page.text
    csrf = csrf_of((await theirs.get("/portal/apps")).text)
    for op in ("reveal", "rotate"):
        response = await theirs.post(
            f"/portal/apps/{client_id}/secret",
            data={"csrf": csrf, "op": op},
            headers={"origin": ISSUER},
        )
        assert response.status_code == 404
        assert 'id="new-secret"' not in response.text
    stored = await portal.services.stores.clients.get(client_id)
    assert stored is not None
    assert stored.secret_digest is None
    await mine.aclose()
    await theirs.aclose()


async def test_forms_without_csrf_or_from_elsewhere_are_refused(portal: Portal) -> None:
    http = await signed_in(portal)
    fields = {"name": "x", "kind": "service", "api": "orders"}
    assert (
        await http.post("/portal/apps", data=fields, headers={"origin": ISSUER})
    ).status_code == 403
    wrong = {**fields, "csrf": "forged"}
    assert (
        await http.post("/portal/apps", data=wrong, headers={"origin": ISSUER})
    ).status_code == 403
    csrf = csrf_of((await http.get("/portal/apps")).text)
    cross = await http.post(
        "/portal/apps", data={**fields, "csrf": csrf}, headers={"origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    assert await portal.services.portal.of("dev") == []  # type: ignore[union-attr]
    assert [c for c in await portal.services.stores.clients.list_all() if c.owner] == []
    await http.aclose()


async def test_registration_is_bounded_and_validated(portal: Portal) -> None:
    http = await signed_in(portal)
    cases = [
        ({"name": "", "kind": "service", "api": "orders"}, "name"),
        ({"name": "x" * 101, "kind": "service", "api": "orders"}, "name"),
        ({"name": "a", "kind": "robot", "api": "orders"}, "kind of app"),
        ({"name": "a", "kind": "service", "api": "nothing"}, "APIs of the catalogue"),
        ({"name": "a", "kind": "web", "api": "orders"}, "redirect_uris"),
        (
            {
                "name": "a",
                "kind": "web",
                "api": "orders",
                "redirect_uris": "http://evil.example/cb",
            },
            "redirect",
        ),
        (
            {
                "name": "a",
                "kind": "service",
                "api": "orders",
                "redirect_uris": "https://a.example/cb",
            },
            "leave the redirect URIs empty",
        ),
    ]
    for fields, said in cases:
        response = await post_form(http, "/portal/apps", "/portal/apps", **fields)
        assert response.status_code == 400, (fields, response.text[:300])
        assert said in response.text, (fields, response.text[:2000])
    web = await post_form(
        http,
        "/portal/apps",
        "/portal/apps",
        name="Web",
        kind="web",
        api="orders",
        redirect_uris="https://app.example/cb",
    )
    assert web.status_code == 303
    await register(http, "Second")
    over = await post_form(
        http, "/portal/apps", "/portal/apps", name="Third", kind="service", api="orders"
    )
    assert over.status_code == 400
    assert "the most allowed" in over.text
    await http.aclose()


async def test_usage_chart_shows_the_apps_requests(portal: Portal, clock: FrozenClock) -> None:
    http = await signed_in(portal)
    client_id = await register(http)
    stats = portal.services.monitor.stats
    for decision in ("allow", "allow", "allow", "deny"):
        stats.record(
            UsageEvent(
                time=clock(),
                jti="j",
                sub=client_id,
                client_id=client_id,
                route="/api/orders",
                ip="192.0.2.1",
                user_agent=None,
                status=200 if decision == "allow" else 403,
                decision=decision,
                reason="" if decision == "allow" else "insufficient_scope",
            )
        )
    stats.record(
        UsageEvent(clock(), "k", "x", "someone-else", "/api", "192.0.2.2", None, 200, "allow", "")
    )
    page = await http.get(f"/portal/apps/{client_id}")
    assert '<span id="usage-allowed">3</span>' in page.text
    assert '<span id="usage-denied">1</span>' in page.text
    assert page.text.count('data-series="allow"') == 1
    assert page.text.count('data-series="deny"') == 1
    await http.aclose()


async def test_admin_approves_in_the_console_and_rejects_in_the_api(portal: Portal) -> None:
    http = await signed_in(portal)
    client_id = await register(http)
    console = Console(portal.browser())
    assert (await console.sign_in("root", PASSWORD)).status_code == 303
    page = await console.get("/admin/clients")
    assert f'data-pending="{client_id}"' in page.text
    assert "Shop app" in page.text
    assert "<td>dev <span" in page.text  # the developer's username beside the owner id
    approved = await console.post("/admin/clients", op="approve", client_id=client_id)
    assert approved.status_code == 200
    assert "App approved" in approved.text
    assert f'data-pending="{client_id}"' not in approved.text
    stored = await portal.services.stores.clients.get(client_id)
    assert stored is not None
    assert stored.approval == "approved"

    ops = await portal.services.client_admin.create_client(
        "ops", grant_types=["client_credentials"], scope="tokenward:admin", redirect_uris=[]
    )
    async with portal.browser() as api:
        token = await api.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": "tokenward:admin"},
            auth=("ops", ops["client_secret"]),
        )
        bearer = {"authorization": f"Bearer {token.json()['access_token']}"}
        listed = await api.get("/admin/api/clients", headers=bearer)
        mine = next(c for c in listed.json() if c["client_id"] == client_id)
        assert mine["owner"] == stored.owner
        assert mine["approval"] == "approved"
        assert mine["owner_name"] == "dev"
        rejected = await api.post(f"/admin/api/clients/{client_id}/reject", headers=bearer)
        assert rejected.status_code == 200, rejected.text
        assert rejected.json()["approval"] == "rejected"
        missing = await api.post("/admin/api/clients/nothing/approve", headers=bearer)
        assert missing.status_code == 400
    assert (await secret_of(http, client_id, "reveal")).status_code == 400
    await console.http.aclose()
    await http.aclose()


async def test_pending_app_is_refused_by_the_token_endpoint_whatever_it_presents(
    portal: Portal,
) -> None:
    """Even with a digest stored (an operator rotated it by hand), pending fails closed."""
    http = await signed_in(portal)
    client_id = await register(http)
    result = await portal.services.admin_actions.perform(
        "user:root", "test", "client.rotate_secret", {"client_id": client_id}
    )
    response = await client_credentials(portal, client_id, result["client_secret"])
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    await approve(portal, client_id)
    assert (await client_credentials(portal, client_id, result["client_secret"])).status_code == 200
    await http.aclose()


def test_portal_is_off_without_configs() -> None:
    assert Settings().portal_config_paths == ()


def test_a_bad_gateway_config_is_refused_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "gateway.yaml"
    bad.write_text("routes: 3\n", encoding="utf-8")
    with pytest.raises(PortalConfigError, match="TOKENWARD_PORTAL_GATEWAY_CONFIGS"):
        load_catalogue([bad])
    with pytest.raises(PortalConfigError):
        load_catalogue([tmp_path / "missing.yaml"])


def test_documented_config_builds_the_catalogue(tmp_path: Path) -> None:
    """docs/portal.md's gateway config, with an OpenAPI document beside it."""
    block = documented("docs/portal.md", "yaml", "trust:")
    (tmp_path / "orders.yaml").write_text(ORDERS_YAML, encoding="utf-8")
    config = tmp_path / "gateway.yaml"
    config.write_text(block.text, encoding="utf-8")
    catalogue = load_catalogue([config])
    orders = catalogue.named("orders")
    assert orders is not None
    assert orders.prefix == "/api/orders"
    assert orders.scopes == ("orders:read", "orders:write")
    assert orders.audience == "https://api.example/orders"
    assert (orders.title, orders.version) == ("Orders", "1.2")
    assert [(op.method, op.path) for op in orders.operations] == [
        ("GET", "/api/orders/orders"),
        ("POST", "/api/orders/orders"),
        ("GET", "/api/orders/orders/{id}"),
    ]
    post = orders.operations[1]
    assert post.body_required
    assert post.bodies[0].media_type == "application/json"
    assert '"qty"' in post.bodies[0].schema  # the $ref followed
    by_id = orders.operations[2]
    assert [(p.name, p.location, p.required) for p in by_id.parameters] == [("id", "path", True)]


async def test_a_developer_with_a_second_factor_gives_it_at_the_portal(
    portal: Portal, clock: FrozenClock
) -> None:
    user = await portal.services.stores.users.by_username("dev")
    assert user is not None
    totp = portal.services.second_factors.totp
    enrolment = totp.start("dev")
    assert await totp.confirm(
        user.user_id, enrolment.secret, pyotp.TOTP(enrolment.secret).at(clock())
    )
    http = portal.browser()
    page = await http.get("/portal")
    interaction = _INTERACTION.search(page.text)
    assert interaction is not None
    signed = await http.post(
        "/login",
        data={"interaction": interaction.group(1), "username": "dev", "password": PASSWORD},
    )
    # The password alone gets the factor page, not the portal.
    assert signed.status_code == 200
    assert 'action="/login/totp"' in signed.text
    assert (await http.get("/portal/apps")).text.count('action="/login/totp"') == 1
    factor = _INTERACTION.search(signed.text)
    assert factor is not None
    clock.now += 30  # the next time step: the enrolment's code is spent
    done = await http.post(
        "/login/totp",
        data={"interaction": factor.group(1), "code": pyotp.TOTP(enrolment.secret).at(clock())},
    )
    assert done.status_code == 302, done.text[:500]
    assert done.headers["location"] == "/portal"
    assert 'data-api="orders"' in (await http.get("/portal")).text
    await http.aclose()


async def test_without_a_catalogue_the_portal_is_not_served(clock: FrozenClock) -> None:
    settings = Settings(issuer=ISSUER, master_key=generate_master_key())
    services = await build_services(settings, memory_stores(clock), clock)
    assert services.portal is None
    transport = httpx.ASGITransport(app=server_app(services))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        for path in ("/portal", "/portal/apps"):
            assert (await http.get(path)).status_code == 404
