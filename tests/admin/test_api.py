"""The admin JSON API: bearer tokens with scope tokenward:admin, the console's actions, audited,
and described in OpenAPI."""

from __future__ import annotations

import pytest

from tests.conftest import FrozenClock
from tests.monitor.serving import Monitored
from tests.monitor.test_server import sign_in as oauth_sign_in
from tokenward.core.events import REFRESH_REUSE, AuthEvent
from tokenward.tokens.grant import TokenGrant
from tokenward.tokens.jwt_access import JwtAccessTokenStrategy

pytestmark = pytest.mark.anyio


async def admin_token(server: Monitored) -> dict[str, str]:
    response = await server.at("192.0.2.50").post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "tokenward:admin"},
        auth=("ops", server.admin_secret),
    )
    assert response.status_code == 200, response.text
    return {"authorization": f"Bearer {response.json()['access_token']}"}


def user_token(server: Monitored, user_id: str, scope: str = "tokenward:admin") -> dict[str, str]:
    services = server.services
    strategy = JwtAccessTokenStrategy(
        services.keys.keyring, services.settings.issuer, clock=services.clock
    )
    grant = TokenGrant(user_id, "web", (services.settings.audience,), frozenset(scope.split()))
    return {"authorization": f"Bearer {strategy.mint_sync(grant).value}"}


async def test_who_may_call(server: Monitored) -> None:
    http = server.at("192.0.2.50")
    missing = await http.get("/admin/api/clients")
    assert missing.status_code == 401
    assert "Bearer" in missing.headers["www-authenticate"]
    plain = {"authorization": f"Bearer {await server.token(scope='read write')}"}
    no_scope = await http.get("/admin/api/clients", headers=plain)
    assert no_scope.status_code == 403
    assert no_scope.json()["error"] == "insufficient_scope"
    alice = await server.services.stores.users.by_username("alice")
    root = await server.services.stores.users.by_username("root")
    assert alice is not None
    assert root is not None
    # The scope alone is not enough: the subject must be an admin user (or an admin client).
    assert (
        await http.get("/admin/api/clients", headers=user_token(server, alice.user_id))
    ).status_code == 403
    assert (
        await http.get("/admin/api/clients", headers=user_token(server, root.user_id))
    ).status_code == 200
    listed = await http.get("/admin/api/clients", headers=await admin_token(server))
    assert {c["client_id"] for c in listed.json()} == {"service", "web", "ops"}
    # Cookies do not count here: a console session is no bearer token.
    assert (await http.get("/admin/api/users")).status_code == 401


async def test_client_lifecycle_over_the_api(server: Monitored, clock: FrozenClock) -> None:
    http, auth = server.at("192.0.2.50"), await admin_token(server)
    created = await http.post(
        "/admin/api/clients",
        json={"client_id": "batch", "grant_types": ["client_credentials"], "scope": "read"},
        headers=auth,
    )
    assert created.status_code == 201, created.text
    secret = created.json()["client_secret"]
    token = await http.post(
        "/token", data={"grant_type": "client_credentials"}, auth=("batch", secret)
    )
    rotated = await http.post("/admin/api/clients/batch/rotate-secret", headers=auth)
    assert rotated.json()["client_secret"] != secret
    clock.advance(1)
    disabled = await http.post("/admin/api/clients/batch/disable", headers=auth)
    assert disabled.json()["disabled"] is True
    assert (await server.hello(token.json()["access_token"])).status_code == 401
    duplicate = await http.post(
        "/admin/api/clients",
        json={"client_id": "batch", "grant_types": ["client_credentials"]},
        headers=auth,
    )
    assert duplicate.status_code == 400
    assert "exists" in duplicate.json()["error_description"]
    invalid = await http.post("/admin/api/clients", json={"client_id": "a b"}, headers=auth)
    assert invalid.status_code == 400
    audit = [x for x in server.audit_lines() if x["event"] == "admin_action"]
    assert [a["action"] for a in audit] == [
        "client.create",
        "client.rotate_secret",
        "client.disable",
        "client.create",
    ]
    assert {a["actor"] for a in audit} == {"client:ops"}
    assert {a["via"] for a in audit} == {"api"}
    assert secret not in server.audit.getvalue()


async def test_a_token_exchange_policy_over_the_api(server: Monitored) -> None:
    http, auth = server.at("192.0.2.51"), await admin_token(server)
    keyless = await http.post(
        "/admin/api/clients",
        json={
            "client_id": "orders",
            "grant_types": ["client_credentials"],
            "scope": "read",
            "access_token_alg": "ML-DSA-65",
        },
        headers=auth,
    )
    # Fail closed: no ML-DSA-65 key on this deployment, so no client pinned to it (issue 17).
    assert keyless.status_code == 400
    assert "no active ML-DSA-65 signing key" in keyless.json()["error_description"]
    created = await http.post(
        "/admin/api/clients",
        json={
            "client_id": "orders",
            "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"],
            "scope": "read",
            "exchange_audiences": ["https://inventory.example/api"],
            "exchange_impersonation": True,
            "access_token_alg": "RS256",
            "id_token_signed_response_alg": "ES256",
        },
        headers=auth,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["access_token_alg"] == "RS256"
    assert body["id_token_signed_response_alg"] == "ES256"
    assert body["exchange_audiences"] == ["https://inventory.example/api"]
    assert body["exchange_impersonation"] is True
    public = await http.post(
        "/admin/api/clients",
        json={
            "client_id": "spa",
            "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"],
            "public": True,
        },
        headers=auth,
    )
    assert public.status_code == 400
    assert "confidential" in public.json()["error_description"]


async def test_client_uris_are_checked_over_the_api(server: Monitored) -> None:
    http, auth = server.at("192.0.2.50"), await admin_token(server)
    spa = {"client_id": "spa", "grant_types": ["authorization_code"], "public": True}
    for field, uri, problem in [
        ("redirect_uris", "https://app.example/cb#x", "a fragment (#) is not allowed"),
        ("redirect_uris", "https://evil@app.example/cb", "user information"),
        ("post_logout_redirect_uris", "http://app.example/bye", "loopback only"),
    ]:
        refused = await http.post("/admin/api/clients", json={**spa, field: [uri]}, headers=auth)
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_request"
        assert problem in refused.json()["error_description"]
    created = await http.post(
        "/admin/api/clients",
        json={
            **spa,
            "redirect_uris": ["https://app.example/cb"],
            "post_logout_redirect_uris": ["https://app.example/bye"],
        },
        headers=auth,
    )
    assert created.status_code == 201, created.text
    assert created.json()["post_logout_redirect_uris"] == ["https://app.example/bye"]


async def test_client_keys_and_par_jar_flags_over_the_api(server: Monitored) -> None:
    """jwks (an object) or jwks_uri at registration, the PAR/JAR flags, and keys replaced."""
    http, auth = server.at("192.0.2.50"), await admin_token(server)
    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", **_POINT}]}
    body = {
        "client_id": "fapi",
        "grant_types": ["authorization_code"],
        "redirect_uris": ["https://app.example/cb"],
        "auth_method": "client_secret_basic",
        "jwks": jwks,
        "require_pushed_authorization_requests": True,
        "require_signed_request_object": True,
    }
    created = await http.post("/admin/api/clients", json=body, headers=auth)
    assert created.status_code == 201, created.text
    assert created.json()["client_secret"]
    assert created.json()["jwks_kids"] == ["k1"]
    assert created.json()["require_pushed_authorization_requests"] is True
    assert created.json()["require_signed_request_object"] is True
    stored = await server.services.stores.clients.get("fapi")
    assert stored is not None
    assert stored.require_signed_request_object

    private = {**jwks["keys"][0], "d": "x"}
    refused = await http.post(
        "/admin/api/clients",
        json={**body, "client_id": "leaky", "jwks": {"keys": [private]}},
        headers=auth,
    )
    assert refused.status_code == 400
    assert "private or secret key members" in refused.json()["error_description"]

    moved = await http.put(
        "/admin/api/clients/fapi/keys",
        json={"jwks_uri": "https://app.example/jwks.json"},
        headers=auth,
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["jwks_uri"], moved.json()["jwks_kids"]) == (
        "https://app.example/jwks.json",
        [],
    )
    plain_http = await http.put(
        "/admin/api/clients/fapi/keys", json={"jwks_uri": "http://app.example/k"}, headers=auth
    )
    assert plain_http.status_code == 400


async def test_a_fapi2_client_over_the_api(server: Monitored) -> None:
    """`profile: fapi2` (docs/fapi2.md): stored and shown; metadata that breaks it refused."""
    http, auth = server.at("192.0.2.51"), await admin_token(server)
    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", **_POINT}]}
    body = {
        "client_id": "bank",
        "grant_types": ["authorization_code"],
        "redirect_uris": ["https://bank.example/cb"],
        "jwks": jwks,
        "profile": "fapi2",
    }
    created = await http.post("/admin/api/clients", json=body, headers=auth)
    assert created.status_code == 201, created.text
    assert (created.json()["profile"], created.json()["id_token_signed_response_alg"]) == (
        "fapi2",
        "ES256",
    )
    stored = await server.services.stores.clients.get("bank")
    assert stored is not None
    assert stored.profile == "fapi2"

    changes: dict[str, dict[str, object]] = {
        "secret": {"auth_method": "client_secret_basic"},
        "http": {"redirect_uris": ["http://bank.example/cb"]},
        "rs256-id-token": {"id_token_signed_response_alg": "RS256"},
    }
    for name, change in changes.items():
        refused = await http.post(
            "/admin/api/clients", json={**body, "client_id": name, **change}, headers=auth
        )
        assert refused.status_code == 400, (name, refused.text)
        assert refused.json()["error"] == "invalid_request", name
    unknown = await http.post(
        "/admin/api/clients", json={**body, "client_id": "p3", "profile": "fapi3"}, headers=auth
    )
    assert unknown.status_code in (400, 422)


async def test_mtls_clients_over_the_api(server: Monitored) -> None:
    """RFC 8705 metadata (docs/mtls.md) through the same checks as the CLI: the subject field
    stored (a DN normalised), binding on by default for the mTLS methods, shown in the list;
    a second subject, one on a secret client, a bad IP or a self-signed client without keys
    refused."""
    http, auth = server.at("192.0.2.52"), await admin_token(server)
    body = {"grant_types": ["client_credentials"], "scope": "read"}
    created = await http.post(
        "/admin/api/clients",
        json={
            **body,
            "client_id": "reporting",
            "auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": "CN=reporting, O=Example",
        },
        headers=auth,
    )
    assert created.status_code == 201, created.text
    shown = created.json()
    assert shown["client_secret"] is None
    assert shown["tls_client_auth_subject_dn"] == "CN=reporting,O=Example"
    assert shown["tls_client_certificate_bound_access_tokens"] is True
    stored = await server.services.stores.clients.get("reporting")
    assert stored is not None
    assert (stored.auth_method, stored.tls_client_auth_subject_dn) == (
        "tls_client_auth",
        "CN=reporting,O=Example",
    )
    assert stored.tls_client_certificate_bound_access_tokens

    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "edge", "alg": "ES256", **_POINT}]}
    self_signed = await http.post(
        "/admin/api/clients",
        json={
            **body,
            "client_id": "edge-app",
            "auth_method": "self_signed_tls_client_auth",
            "jwks": jwks,
            "tls_client_certificate_bound_access_tokens": False,
        },
        headers=auth,
    )
    assert self_signed.status_code == 201, self_signed.text
    assert self_signed.json()["tls_client_certificate_bound_access_tokens"] is False
    bound_secret = await http.post(
        "/admin/api/clients",
        json={**body, "client_id": "bound", "tls_client_certificate_bound_access_tokens": True},
        headers=auth,
    )
    assert bound_secret.status_code == 201, bound_secret.text
    assert bound_secret.json()["client_secret"]
    stored = await server.services.stores.clients.get("bound")
    assert stored is not None
    assert stored.tls_client_certificate_bound_access_tokens

    listed = {
        c["client_id"]: c for c in (await http.get("/admin/api/clients", headers=auth)).json()
    }
    assert listed["reporting"]["tls_client_auth_subject_dn"] == "CN=reporting,O=Example"
    assert listed["edge-app"]["auth_method"] == "self_signed_tls_client_auth"

    tls = {**body, "auth_method": "tls_client_auth"}
    for name, change in {
        "two-subjects": {
            **tls,
            "tls_client_auth_san_dns": "a.example",
            "tls_client_auth_san_email": "a@example.com",
        },
        "no-subject": tls,
        "bad-ip": {**tls, "tls_client_auth_san_ip": "300.1.2.3"},
        "secret-with-subject": {**body, "tls_client_auth_san_dns": "a.example"},
        "self-signed-no-keys": {**body, "auth_method": "self_signed_tls_client_auth"},
    }.items():
        refused = await http.post(
            "/admin/api/clients", json={**change, "client_id": name}, headers=auth
        )
        assert refused.status_code == 400, (name, refused.text)
        assert refused.json()["error"] == "invalid_request", name
        assert await server.services.stores.clients.get(name) is None, name


# A P-256 public point (RFC 7515 Appendix A.3's key).
_POINT = {
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}


async def test_sessions_users_and_revocation(server: Monitored, clock: FrozenClock) -> None:
    http, auth = server.at("192.0.2.50"), await admin_token(server)
    tokens = await oauth_sign_in(server, "198.51.100.10")
    [session] = (await http.get("/admin/api/sessions", headers=auth)).json()
    assert session["username"] == "alice"
    clock.advance(1)
    revoked = await http.post(f"/admin/api/sessions/{session['session_id']}/revoke", headers=auth)
    assert revoked.status_code == 200
    assert revoked.json()["revoked"][0]["kind"] == "sid"
    assert (await server.hello(tokens["access_token"])).status_code == 401
    assert (await http.get("/admin/api/sessions", headers=auth)).json() == []
    users = {u["username"]: u for u in (await http.get("/admin/api/users", headers=auth)).json()}
    assert users["root"]["admin"]
    assert not users["alice"]["admin"]
    alice_id = users["alice"]["user_id"]
    out = await http.post(f"/admin/api/users/{alice_id}/logout", headers=auth)
    assert out.json()["revoked"][0]["kind"] == "sub"
    off = await http.post(f"/admin/api/users/{alice_id}/disable", headers=auth)
    assert off.json() == {"user_id": alice_id, "username": "alice", "disabled": True}
    token = await server.token()
    jti_response = await server.hello(token)
    assert jti_response.status_code == 200
    await server.services.monitor.drain()
    top = server.services.monitor.stats.snapshot(clock())["top_tokens"]
    [jti] = [row["key"] for row in top if row["sub"] == "service"]
    done = await http.post("/admin/api/revoke", json={"jti": jti}, headers=auth)
    assert done.json()["revoked"][0] == {"kind": "jti", "value": jti, "seq": 4}
    assert (await server.hello(token)).status_code == 401
    nothing = await http.post("/admin/api/revoke", json={}, headers=auth)
    assert nothing.status_code == 400


async def test_keys_usage_alerts_blocklist(server: Monitored) -> None:
    http, auth = server.at("192.0.2.50"), await admin_token(server)
    keys = (await http.get("/admin/api/keys", headers=auth)).json()
    assert {k["state"] for k in keys} >= {"active"}
    assert {k["alg"] for k in keys} >= {"ES256"}
    rotated = await http.post("/admin/api/keys/rotate", headers=auth)
    assert rotated.status_code in (200, 400)
    server.services.monitor.emit(
        AuthEvent(server.services.clock(), REFRESH_REUSE, "203.0.113.8", sub="x", family_id="f")
    )
    await server.services.monitor.drain()
    usage = (await http.get("/admin/api/usage", headers=auth)).json()
    assert usage["health"]["open_alerts"] == 1
    assert usage["usage"]["auth_events"] == [{"key": "refresh_reuse", "count": 1}]
    [alert] = (await http.get("/admin/api/alerts", headers=auth)).json()
    assert alert["actions"] == ["revoke_subject", "block_ip"]
    answered = await http.post(
        f"/admin/api/alerts/{alert['id']}/respond", json={"action": "block_ip"}, headers=auth
    )
    assert answered.json()["responses"][-1]["action"] == "block_ip"
    assert [b["ip"] for b in (await http.get("/admin/api/blocklist", headers=auth)).json()] == [
        "203.0.113.8"
    ]
    await http.post(
        "/admin/api/blocklist", json={"ip": "198.51.100.99", "seconds": 30}, headers=auth
    )
    assert server.services.monitor.is_blocked("198.51.100.99")
    assert (await http.delete("/admin/api/blocklist/198.51.100.99", headers=auth)).json()[
        "unblocked"
    ]
    missing = await http.post(
        "/admin/api/alerts/nope/respond", json={"action": "resolve"}, headers=auth
    )
    assert missing.status_code == 400


@pytest.mark.filterwarnings("ignore:Duplicate Operation ID")  # /userinfo GET+POST (not ours)
async def test_openapi_documents_the_admin_api(server: Monitored) -> None:
    schema = (await server.at("192.0.2.1").get("/openapi.json")).json()
    paths = {p: v for p, v in schema["paths"].items() if p.startswith("/admin")}
    assert all(p.startswith("/admin/api/") for p in paths)  # console pages are not in it
    assert {
        "/admin/api/clients",
        "/admin/api/sessions/{session_id}/revoke",
        "/admin/api/alerts/{alert_id}/respond",
        "/admin/api/keys/rotate",
        "/admin/api/usage",
        "/admin/api/blocklist",
    } <= set(paths)
    listed = paths["/admin/api/clients"]["get"]["responses"]["200"]["content"]
    assert listed["application/json"]["schema"]["items"]["$ref"].endswith("/Client")
    assert {"401", "403"} <= set(paths["/admin/api/users"]["get"]["responses"])
    assert "AlertOut" in schema["components"]["schemas"]


async def test_a_backchannel_logout_uri_over_the_api(server: Monitored) -> None:
    http, auth = server.at("192.0.2.52"), await admin_token(server)
    created = await http.post(
        "/admin/api/clients",
        json={
            "client_id": "portal",
            "grant_types": ["authorization_code"],
            "scope": "openid",
            "redirect_uris": ["https://portal.example/cb"],
            "backchannel_logout_uri": "https://portal.example/backchannel",
        },
        headers=auth,
    )
    plain_http = await http.post(
        "/admin/api/clients",
        json={
            "client_id": "portal-2",
            "grant_types": ["authorization_code"],
            "redirect_uris": ["https://portal.example/cb"],
            "backchannel_logout_uri": "http://portal.example/backchannel",
        },
        headers=auth,
    )

    assert created.status_code == 201, created.text
    assert created.json()["backchannel_logout_uri"] == "https://portal.example/backchannel"
    stored = await server.services.stores.clients.get("portal")
    assert stored is not None
    assert stored.backchannel_logout_session_required is True
    assert plain_http.status_code == 400
    assert "loopback" in plain_http.json()["error_description"]


async def test_registration_tokens_over_the_api(server: Monitored) -> None:
    http, auth = server.at("192.0.2.50"), await admin_token(server)

    created = await http.post(
        "/admin/api/registration-tokens", json={"ttl": 600, "max_uses": 3}, headers=auth
    )
    refused = await http.post("/admin/api/registration-tokens", json={"ttl": 1}, headers=auth)
    revoked = await http.delete(
        f"/admin/api/registration-tokens/{created.json()['token_id']}", headers=auth
    )
    unknown = await http.delete("/admin/api/registration-tokens/iat-nothing", headers=auth)
    anonymous = await http.post("/admin/api/registration-tokens", json={})

    assert created.status_code == 201, created.text
    made = created.json()
    assert made["max_uses"] == 3
    assert made["uses"] == 0
    assert made["revoked"] is False
    assert refused.status_code == 400
    assert "lifetime" in refused.json()["error_description"]
    assert revoked.json() == {"token_id": made["token_id"], "revoked": True}
    assert unknown.status_code == 400
    assert anonymous.status_code == 401
    listed = await server.services.initial_tokens.list()
    assert [(token["token_id"], token["revoked"]) for token in listed] == [(made["token_id"], True)]
    audit = [x for x in server.audit_lines() if x["event"] == "admin_action"]
    assert [a["action"] for a in audit] == [
        "registration_token.create",
        "registration_token.create",
        "registration_token.revoke",
        "registration_token.revoke",
    ]
    assert made["token"] not in server.audit.getvalue()  # shown once, never audited
