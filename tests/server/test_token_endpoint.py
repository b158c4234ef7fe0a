"""The token endpoint with client credentials, and its errors, through the ASGI app."""

from __future__ import annotations

import pytest

from tests.server.conftest import ISSUER, Server

pytestmark = pytest.mark.anyio


async def test_client_credentials_issues_an_rfc9068_token(server: Server) -> None:
    response = await server.token(scope="read")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["scope"] == "read"
    assert "refresh_token" not in body
    token = server.services.validator.authenticate_sync("Bearer " + body["access_token"])
    assert token.sub == "service"
    assert token.client_id == "service"
    assert token.iss == ISSUER


async def test_no_scope_grants_every_allowed_scope(server: Server) -> None:
    assert (await server.token()).json()["scope"] == "read write"


async def test_scope_beyond_the_client_is_invalid_scope(server: Server) -> None:
    response = await server.token(scope="read admin")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


async def test_unknown_resource_is_invalid_target(server: Server) -> None:
    response = await server.token(resource="https://elsewhere.example")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"grant_type": "password", "username": "u", "password": "p"}, "unsupported_grant_type"),
        ({"grant_type": "authorization_code"}, "unauthorized_client"),
        ({}, "invalid_request"),
    ],
)
async def test_grant_type_errors(server: Server, data: dict[str, str], error: str) -> None:
    response = await server.http.post("/token", data=data, auth=("service", server.secret))
    assert response.status_code == 400
    assert response.json()["error"] == error


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b'{"grant_type": "client_credentials"}', {"content-type": "application/json"}),
        (
            b"grant_type=client_credentials&grant_type=client_credentials",
            {"content-type": "application/x-www-form-urlencoded"},
        ),
        (b"grant_type=" + b"x" * 70_000, {"content-type": "application/x-www-form-urlencoded"}),
        (b"\xff\xfe\x00", {"content-type": "application/x-www-form-urlencoded"}),
    ],
    ids=["json", "duplicate", "oversized", "binary"],
)
async def test_malformed_bodies_are_invalid_request(
    server: Server, content: bytes, headers: dict[str, str]
) -> None:
    response = await server.http.post(
        "/token", content=content, headers=headers, auth=("service", server.secret)
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.headers["content-type"] == "application/json"


async def test_bad_client_secret_is_401_invalid_client(server: Server) -> None:
    response = await server.http.post(
        "/token", data={"grant_type": "client_credentials"}, auth=("service", "wrong")
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")


async def test_introspection_before_and_after_revocation(server: Server) -> None:
    access = (await server.token(scope="read")).json()["access_token"]
    auth = ("service", server.secret)
    active = (await server.http.post("/introspect", data={"token": access}, auth=auth)).json()
    assert active["active"] is True
    assert active["client_id"] == "service"
    assert active["scope"] == "read"
    assert active["token_type"] == "Bearer"
    revoked = await server.http.post("/revoke", data={"token": access}, auth=auth)
    assert revoked.status_code == 200
    after = (await server.http.post("/introspect", data={"token": access}, auth=auth)).json()
    assert after == {"active": False}


async def test_revoked_jwt_rejected_by_the_validator(server: Server) -> None:
    access = (await server.token()).json()["access_token"]
    server.services.validator.authenticate_sync("Bearer " + access)  # cached now
    await server.http.post("/revoke", data={"token": access}, auth=("service", server.secret))
    with pytest.raises(Exception, match="revoked"):
        server.services.validator.authenticate_sync("Bearer " + access)


async def test_revoke_unknown_token_is_200(server: Server) -> None:
    response = await server.http.post(
        "/revoke", data={"token": "garbage"}, auth=("service", server.secret)
    )
    assert response.status_code == 200


async def test_introspection_needs_client_authentication(server: Server) -> None:
    response = await server.http.post("/introspect", data={"token": "x"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_introspection_as_signed_jwt(server: Server) -> None:
    from tokenward.tokens.jws import payload_object, verify_compact

    access = (await server.token()).json()["access_token"]
    response = await server.http.post(
        "/introspect",
        data={"token": access},
        auth=("service", server.secret),
        headers={"accept": "application/token-introspection+jwt"},
    )
    assert response.headers["content-type"].startswith("application/token-introspection+jwt")
    jws, _ = verify_compact(response.text, server.services.keys.keyring.verification_key)
    assert jws.header["typ"] == "token-introspection+jwt"
    claims = payload_object(jws)
    assert claims["aud"] == "service"
    assert claims["token_introspection"]["active"] is True


async def test_opaque_tokens_for_opaque_clients(server: Server) -> None:

    created = await server.services.client_admin.create_client(
        "opaque-service",
        grant_types=["client_credentials"],
        scope="read",
        redirect_uris=[],
        token_format="opaque",
    )
    response = await server.http.post(
        "/token",
        data={"grant_type": "client_credentials"},
        auth=("opaque-service", created["client_secret"]),
    )
    access = response.json()["access_token"]
    assert access.startswith("twa_")
    assert "." not in access
    token = await server.services.validator.authenticate("Bearer " + access)
    assert token.client_id == "opaque-service"


async def test_discovery_documents_share_the_exact_issuer(server: Server) -> None:
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        document = (await server.http.get(path)).json()
        assert document["issuer"] == ISSUER
        assert document["token_endpoint"] == ISSUER + "/token"
        assert document["code_challenge_methods_supported"] == ["S256"]


async def test_jwks_has_active_and_next_keys(server: Server) -> None:
    response = await server.http.get("/jwks")
    assert response.headers["cache-control"].startswith("public, max-age=")
    kids = {key["kid"] for key in response.json()["keys"]}
    assert kids == {key.kid for key in server.services.keys.managed_keys()}
    assert {key["alg"] for key in response.json()["keys"]} == {"ES256", "RS256"}


async def test_demo_api_accepts_then_refuses_after_revocation(server: Server) -> None:
    access = (await server.token(scope="read")).json()["access_token"]
    headers = {"authorization": f"Bearer {access}"}
    ok = await server.http.get("/api/hello", headers=headers)
    assert ok.status_code == 200
    assert ok.json()["hello"] == "service"
    await server.http.post("/revoke", data={"token": access}, auth=("service", server.secret))
    refused = await server.http.get("/api/hello", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]


async def test_demo_api_scope_and_missing_token(server: Server) -> None:
    missing = await server.http.get("/api/hello")
    assert missing.status_code == 401
    challenges = missing.headers.get_list("www-authenticate")
    assert challenges[0] == 'Bearer realm="tokenward"'
    assert challenges[1].startswith('DPoP algs="ES256')  # RFC 9449 §7.1: DPoP is offered too
    write_only = (await server.token(scope="write")).json()["access_token"]
    refused = await server.http.get("/api/hello", headers={"authorization": f"Bearer {write_only}"})
    assert refused.status_code == 403
    assert refused.json()["error"] == "insufficient_scope"


async def test_openapi_document_renders(server: Server) -> None:
    document = (await server.http.get("/openapi.json")).json()
    assert "/token" in document["paths"]
    assert {"get", "post"} <= document["paths"]["/userinfo"].keys()
