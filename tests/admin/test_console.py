"""The admin console: admin-only sign-in, CSRF and Origin checks, actions that work and are
audited, and a revoked session's token refused on the next API call."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from tests.admin.conftest import Console
from tests.admin.test_api import admin_token
from tests.conftest import FrozenClock
from tests.monitor.serving import PASSWORD, Monitored
from tests.monitor.test_server import sign_in as oauth_sign_in
from tokenward.core.events import REFRESH_REUSE, AuthEvent

pytestmark = pytest.mark.anyio


def actions(server: Monitored) -> list[dict[str, object]]:
    return [line for line in server.audit_lines() if line["event"] == "admin_action"]


async def test_non_admins_and_wrong_passwords_are_refused(server: Monitored) -> None:
    console = Console(server.at("192.0.2.1"))
    refused = await console.sign_in("alice")
    assert refused.status_code == 403
    assert "may not use the admin console" in refused.text
    assert "tw_admin=" not in refused.headers.get("set-cookie", "").replace("tw_admin_csrf", "")
    wrong = await console.sign_in("root", "not the password")
    assert wrong.status_code == 401
    assert (await console.get("/admin/dashboard")).headers["location"] == "/admin/login"
    assert [a["error"] for a in actions(server)] == ["no role", "failed"]


async def test_the_login_form_needs_csrf_and_origin(server: Monitored) -> None:
    console = Console(server.at("192.0.2.1"))
    await console.get("/admin/login")
    cross = await console.post(
        "/admin/login", origin="https://evil.example", username="root", password=PASSWORD
    )
    assert cross.status_code == 403
    assert "Origin" in cross.text
    console.csrf = "forged-but-long-enough-value-1234567890"
    forged = await console.post("/admin/login", username="root", password=PASSWORD)
    assert forged.status_code == 403
    assert "expired" in forged.text


async def test_pages_render_for_the_admin(console: Console) -> None:
    for page, marker in [
        ("/admin/dashboard", 'id="chart-requests"'),
        ("/admin/clients", 'data-client="service"'),
        ("/admin/users", 'data-user="alice"'),
        ("/admin/sessions", "Active sessions"),
        ("/admin/keys", "state-active"),
        ("/admin/alerts", "Blocked addresses"),
    ]:
        response = await console.get(page)
        assert response.status_code == 200, page
        assert marker in response.text, page
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["x-frame-options"] == "DENY"
    cookie = (await console.http.get("/admin/login")).headers["set-cookie"]
    assert "httponly" in cookie.lower()
    assert "samesite=strict" in cookie.lower()
    assert cookie.startswith("__Host-tw_admin_csrf=")  # https: Secure, Path=/, no Domain
    assert "; path=/;" in cookie.lower()
    assert "domain" not in cookie.lower()
    assert "secure" in cookie.lower()


async def test_static_assets_are_served_locally(console: Console) -> None:
    chart = await console.http.get("/admin/static/chart.js")
    assert chart.status_code == 200
    assert "TinyChart" in chart.text
    assert chart.headers["content-type"].startswith("text/javascript")
    assert (await console.http.get("/admin/static/../app.py")).status_code == 404
    page = (await console.get("/admin/dashboard")).text
    assert "http://" not in page.replace("http://www.w3.org", "")
    assert "cdn" not in page.lower()


async def test_state_changes_need_csrf_and_origin(server: Monitored, console: Console) -> None:
    cross = await console.post(
        "/admin/clients", origin="https://evil.example", op="disable", client_id="service"
    )
    assert cross.status_code == 403
    good_csrf, console.csrf = console.csrf, "x" * 43
    forged = await console.post("/admin/clients", op="disable", client_id="service")
    assert forged.status_code == 403
    console.csrf = good_csrf
    no_origin = await console.http.post(
        "/admin/clients", data={"csrf": good_csrf, "op": "disable", "client_id": "service"}
    )
    assert no_origin.status_code == 403
    client = await server.services.stores.clients.get("service")
    assert client is not None
    assert not client.disabled
    referer = await console.http.post(
        "/admin/clients",
        data={"csrf": good_csrf, "op": "disable", "client_id": "service"},
        headers={"referer": "https://as.example/admin/clients"},
    )
    assert referer.status_code == 200  # Referer stands in for a missing Origin


async def test_clients_create_disable_rotate(
    server: Monitored, console: Console, clock: FrozenClock
) -> None:
    await console.get("/admin/clients")
    created = await console.http.post(
        "/admin/clients",
        data={
            "csrf": console.csrf,
            "op": "create",
            "client_id": "reports",
            "grant_types": ["client_credentials"],
            "scope": "read",
        },
        headers={"origin": "https://as.example"},
    )
    assert created.status_code == 200, created.text[:500]
    secret = re.search(r'id="new-secret">([^<]+)<', created.text)
    assert secret is not None
    token = await server.at("192.0.2.9").post(
        "/token", data={"grant_type": "client_credentials"}, auth=("reports", secret.group(1))
    )
    assert token.status_code == 200
    rotated = await console.post("/admin/clients", op="rotate", client_id="reports")
    assert "Secret rotated" in rotated.text
    clock.advance(1)
    disabled = await console.post("/admin/clients", op="disable", client_id="reports")
    assert "Client disabled" in disabled.text
    assert (await server.hello(token.json()["access_token"])).status_code == 401
    bad = await console.post("/admin/clients", op="create", client_id="reports")
    assert bad.status_code == 400
    assert "exists already" in bad.text
    unsafe = await console.post(
        "/admin/clients",
        op="create",
        client_id="spa",
        grant_types="authorization_code",
        public="1",
        redirect_uris="javascript:alert(1)",
    )
    assert unsafe.status_code == 400
    assert "a private-use scheme named after a domain you control" in unsafe.text
    assert "<script>alert" not in unsafe.text
    logged = actions(server)
    assert [a["action"] for a in logged[-5:]] == [
        "client.create",
        "client.rotate_secret",
        "client.disable",
        "client.create",
        "client.create",
    ]
    assert all(a["actor"] == "user:root" and a["via"] == "console" for a in logged[-5:])
    assert secret.group(1) not in server.audit.getvalue()  # secrets never reach the audit log


async def test_revoking_a_session_refuses_its_token_next(
    server: Monitored, console: Console, clock: FrozenClock
) -> None:
    tokens = await oauth_sign_in(server, "198.51.100.10")
    assert (await server.hello(tokens["access_token"])).status_code == 200
    clock.advance(1)
    page = await console.get("/admin/sessions")
    alice_sid = re.findall(r'data-session="([^"]+)">\s*<td>alice</td>', page.text)
    assert len(alice_sid) == 1
    assert len(re.findall("data-session=", page.text)) == 2
    done = await console.post("/admin/sessions", op="revoke", session_id=alice_sid[0])
    assert "Session ended" in done.text
    refused = await server.hello(tokens["access_token"])
    assert refused.status_code == 401
    assert "session ended" in refused.headers["www-authenticate"]
    assert actions(server)[-1]["action"] == "session.revoke"


async def test_users_force_logout_and_disable(
    server: Monitored, console: Console, clock: FrozenClock
) -> None:
    tokens = await oauth_sign_in(server, "198.51.100.10")
    alice = await server.services.stores.users.by_username("alice")
    assert alice is not None
    clock.advance(1)
    out = await console.post("/admin/users", op="logout", user_id=alice.user_id)
    assert "signed out everywhere" in out.text
    assert (await server.hello(tokens["access_token"])).status_code == 401
    disabled = await console.post("/admin/users", op="disable", user_id=alice.user_id)
    assert "User disabled" in disabled.text
    user = await server.services.stores.users.get(alice.user_id)
    assert user is not None
    assert user.disabled


async def test_grants_are_listed_and_revoked(
    server: Monitored, console: Console, clock: FrozenClock
) -> None:
    tokens = await oauth_sign_in(server, "198.51.100.10")
    alice = await server.services.stores.users.by_username("alice")
    assert alice is not None
    page = await console.get("/admin/sessions")
    assert "openid profile read" in page.text
    clock.advance(1)
    done = await console.post(
        "/admin/sessions", op="revoke_grant", user_id=alice.user_id, client_id="web"
    )
    assert "Consent withdrawn" in done.text
    assert await server.services.stores.consents.granted(alice.user_id, "web") == frozenset()
    assert (await server.hello(tokens["access_token"])).status_code == 401


HOSTILE_NAME = '<img src=x onerror="alert(1)"> Web & Co'
ESCAPED_NAME = "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; Web &amp; Co"


async def test_client_names_identify_clients_escaped_else_their_ids(
    server: Monitored, console: Console
) -> None:
    web = await server.services.stores.clients.get("web")
    assert web is not None
    await server.services.stores.clients.put(replace(web, name=HOSTILE_NAME))
    await oauth_sign_in(server, "198.51.100.11")  # alice consents to web

    clients = (await console.get("/admin/clients")).text
    grants = (await console.get("/admin/sessions")).text

    for page in (clients, grants):
        assert ESCAPED_NAME in page
        assert "<img src=x" not in page
    web_row = clients.split('data-client="web"', 1)[1].split("</tr>", 1)[0]
    assert f'{ESCAPED_NAME}<br><span class="mono note">web</span>' in web_row
    assert f"Disable {ESCAPED_NAME} (web) and revoke its tokens?" in web_row
    service_row = clients.split('data-client="service"', 1)[1].split("</tr>", 1)[0]
    assert '<td class="client-name"><span class="mono">service</span></td>' in service_row
    grant_row = grants.split('data-grant="web"', 1)[1].split("</tr>", 1)[0]
    assert f'{ESCAPED_NAME}<br><span class="mono note">web</span>' in grant_row
    listed = await console.http.get("/admin/api/grants", headers=await admin_token(server))
    assert listed.status_code == 200, listed.text
    assert {g["client_name"] for g in listed.json() if g["client_id"] == "web"} == {HOSTILE_NAME}


async def test_keys_show_states_and_rotate(server: Monitored, console: Console) -> None:
    before = {key.kid for key in server.services.keys.managed_keys()}
    done = await console.post("/admin/keys", op="rotate")
    assert done.status_code in (200, 400)
    if done.status_code == 200:
        assert {key.kid for key in server.services.keys.managed_keys()} != before
    assert actions(server)[-1]["action"] == "key.rotate"


async def test_alerts_one_click_response(
    server: Monitored, console: Console, clock: FrozenClock
) -> None:
    token = await server.token()
    assert (await server.hello(token, ip="203.0.113.7")).status_code == 200
    await server.services.monitor.drain()
    jti = server.services.monitor.stats.snapshot(server.services.clock())["top_tokens"][0]["key"]
    server.services.monitor.emit(
        AuthEvent(
            server.services.clock(),
            REFRESH_REUSE,
            "203.0.113.7",
            sub="service",
            client_id="service",
            family_id="fam-1",
        )
    )
    await server.services.monitor.drain()
    page = await console.get("/admin/alerts")
    assert "Refresh token reused" in page.text
    assert "Revoke subject" in page.text
    [alert] = server.services.monitor.alerts.recent()
    blocked = await console.post(
        "/admin/alerts", op="respond", alert_id=alert.id, action="block_ip"
    )
    assert "Response carried out" in blocked.text
    assert server.services.monitor.is_blocked("203.0.113.7")
    assert (await server.hello(token, ip="203.0.113.7")).status_code == 403
    clock.advance(1)
    await console.post("/admin/alerts", op="respond", alert_id=alert.id, action="revoke_subject")
    assert (await server.hello(token, ip="192.0.2.1")).status_code == 401
    assert jti
    unblocked = await console.post("/admin/alerts", op="unblock", ip="203.0.113.7")
    assert "Address unblocked" in unblocked.text
    resolved = await console.post(
        "/admin/alerts", op="respond", alert_id=alert.id, action="resolve"
    )
    assert "resolved" in resolved.text
    wrong = await console.post(
        "/admin/alerts", op="respond", alert_id=alert.id, action="revoke_token"
    )
    assert wrong.status_code == 400  # no jti on a refresh-reuse alert
    responses = [x for x in server.audit_lines() if x["event"] == "security_response"]
    assert [r["action"] for r in responses] == ["block_ip", "revoke_subject", "resolve"]


async def test_usage_json_needs_the_console_session(server: Monitored, console: Console) -> None:
    assert (await console.http.get("/admin/usage.json")).json()["usage"]["bucket"] == 60
    assert (await server.at("192.0.2.99").get("/admin/usage.json")).status_code == 401


async def test_sign_out(server: Monitored, console: Console) -> None:
    out = await console.post("/admin/logout")
    assert out.status_code == 303
    assert (await console.http.get("/admin/clients")).status_code == 303


async def test_a_client_with_keys_and_par_from_the_console(
    server: Monitored, console: Console
) -> None:
    form = await console.get("/admin/clients")
    assert 'name="jwks"' in form.text
    assert 'name="require_pushed_authorization_requests"' in form.text
    jwks = (
        '{"keys": [{"kty": "EC", "crv": "P-256", "kid": "console-1", "alg": "ES256", '
        '"x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", '
        '"y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}'
    )
    created = await console.post(
        "/admin/clients",
        op="create",
        client_id="fapi-web",
        grant_types="authorization_code",
        redirect_uris="https://app.example/cb",
        auth_method="client_secret_basic",
        jwks=jwks,
        jwks_uri="",
        require_pushed_authorization_requests="1",
        require_signed_request_object="1",
    )
    assert created.status_code == 200, created.text[:500]
    stored = await server.services.stores.clients.get("fapi-web")
    assert stored is not None
    assert (stored.auth_method, stored.require_pushed_authorization_requests) == (
        "client_secret_basic",
        True,
    )
    assert stored.require_signed_request_object
    assert "console-1" in created.text  # the key column lists the kids
    held = await console.post(
        "/admin/clients",
        op="create",
        client_id="fapi2-web",
        grant_types="authorization_code",
        redirect_uris="https://app.example/cb",
        jwks=jwks.replace("console-1", "console-2"),
        jwks_uri="",
        profile="fapi2",
    )
    assert held.status_code == 200, held.text[:500]
    assert "FAPI 2.0</span>" in held.text
    fapi2 = await server.services.stores.clients.get("fapi2-web")
    assert fapi2 is not None
    assert (fapi2.profile, fapi2.auth_method) == ("fapi2", "private_key_jwt")
    moved = await console.post(
        "/admin/clients",
        op="keys",
        client_id="fapi-web",
        jwks_uri="https://app.example/k.json",
        jwks="",
    )
    assert "Client keys replaced" in moved.text
    stored = await server.services.stores.clients.get("fapi-web")
    assert stored is not None
    assert (stored.jwks, stored.jwks_uri) == (None, "https://app.example/k.json")
    # and back to registered keys, a JWKS document from the row's form (a rotation)
    back = await console.post(
        "/admin/clients",
        op="keys",
        client_id="fapi-web",
        jwks_uri="",
        jwks=jwks.replace("console-1", "console-3"),
    )
    assert "Client keys replaced" in back.text
    stored = await server.services.stores.clients.get("fapi-web")
    assert stored is not None
    assert stored.jwks_uri is None
    assert stored.jwks is not None
    assert "console-3" in stored.jwks
    both = await console.post(
        "/admin/clients",
        op="keys",
        client_id="fapi-web",
        jwks_uri="https://app.example/k.json",
        jwks=jwks,
    )
    assert both.status_code == 400


async def test_mtls_clients_from_the_console(server: Monitored, console: Console) -> None:
    """The RFC 8705 fields on the console's form (docs/mtls.md), through the same checks as
    the CLI and the API, and shown in the client table; keys by jwks_uri at creation too."""
    form = await console.get("/admin/clients")
    for field in (
        'value="tls_client_auth"',
        'value="self_signed_tls_client_auth"',
        'name="tls_client_auth_san_dns"',
        'name="tls_client_auth_subject_dn"',
        'name="tls_client_certificate_bound_access_tokens"',
    ):
        assert field in form.text, field
    blank = {
        "tls_client_auth_subject_dn": "",
        "tls_client_auth_san_uri": "",
        "tls_client_auth_san_ip": "",
        "tls_client_auth_san_email": "",
        "jwks": "",
        "jwks_uri": "",
    }
    created = await console.post(
        "/admin/clients",
        op="create",
        client_id="inventory",
        grant_types="client_credentials",
        scope="read",
        auth_method="tls_client_auth",
        tls_client_auth_san_dns="Inventory.Example.com",
        tls_client_certificate_bound_access_tokens="",
        **blank,
    )
    assert created.status_code == 200, created.text[:500]
    stored = await server.services.stores.clients.get("inventory")
    assert stored is not None
    assert (stored.auth_method, stored.tls_client_auth_san_dns) == (
        "tls_client_auth",
        "Inventory.Example.com",
    )
    assert stored.tls_client_certificate_bound_access_tokens
    row = re.search(r'<tr data-client="inventory">.*?</tr>', created.text, re.S)
    assert row is not None
    assert "Inventory.Example.com" in row.group(0)
    assert "certificate-bound</span>" in row.group(0)

    self_signed = await console.post(
        "/admin/clients",
        op="create",
        client_id="edge-app",
        grant_types="client_credentials",
        scope="read",
        auth_method="self_signed_tls_client_auth",
        tls_client_auth_san_dns="",
        tls_client_certificate_bound_access_tokens="false",
        **{**blank, "jwks_uri": "https://edge.example/jwks.json"},
    )
    assert self_signed.status_code == 200, self_signed.text[:500]
    stored = await server.services.stores.clients.get("edge-app")
    assert stored is not None
    assert (stored.auth_method, stored.jwks_uri) == (
        "self_signed_tls_client_auth",
        "https://edge.example/jwks.json",
    )
    assert not stored.tls_client_certificate_bound_access_tokens

    two = await console.post(
        "/admin/clients",
        op="create",
        client_id="two-subjects",
        grant_types="client_credentials",
        scope="read",
        auth_method="tls_client_auth",
        tls_client_auth_san_dns="a.example",
        tls_client_certificate_bound_access_tokens="",
        **{**blank, "tls_client_auth_san_email": "a@example.com"},
    )
    assert two.status_code == 400
    assert "exactly one" in two.text
    assert await server.services.stores.clients.get("two-subjects") is None
    odd = await console.post(
        "/admin/clients",
        op="create",
        client_id="odd",
        grant_types="client_credentials",
        scope="read",
        tls_client_certificate_bound_access_tokens="maybe",
    )
    assert odd.status_code == 400
    assert await server.services.stores.clients.get("odd") is None
