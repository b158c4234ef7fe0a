"""Refresh rotation and reuse detection, the device flow, userinfo and RP-initiated logout."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import FrozenClock
from tests.server.conftest import Server
from tests.server.flows import REDIRECT_URI, Pkce, hidden_interaction, query_of, sign_in_and_consent
from tokenward.guard import InvalidToken

pytestmark = pytest.mark.anyio
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


async def signed_in_tokens(server: Server, **credentials: str) -> dict[str, str]:
    """Sign in (alice, or `username` and `password`) and exchange the code."""
    pkce = Pkce.new()
    code = (await sign_in_and_consent(server.http, pkce, **credentials))["code"]
    response = await server.http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": pkce.verifier,
        },
        auth=("web", server.web_secret),
    )
    tokens: dict[str, str] = response.json()
    return tokens


async def refresh(server: Server, token: str, **extra: str) -> dict[str, str]:
    response = await server.http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": token, **extra},
        auth=("web", server.web_secret),
    )
    body: dict[str, str] = response.json()
    body["status"] = str(response.status_code)
    return body


async def test_each_refresh_rotates(server: Server) -> None:
    first = await signed_in_tokens(server)
    second = await refresh(server, first["refresh_token"])
    assert second["status"] == "200"
    assert second["refresh_token"] != first["refresh_token"]
    third = await refresh(server, second["refresh_token"])
    assert third["status"] == "200"


async def test_reuse_of_a_rotated_token_revokes_the_family(
    server: Server, clock: FrozenClock
) -> None:
    first = await signed_in_tokens(server)
    second = await refresh(server, first["refresh_token"])
    third = await refresh(server, second["refresh_token"])
    clock.advance(30)  # past the grace
    stolen = await refresh(server, first["refresh_token"])
    assert stolen["error"] == "invalid_grant"
    assert (await refresh(server, third["refresh_token"]))["error"] == "invalid_grant"
    for tokens in (second, third):
        with pytest.raises(InvalidToken, match="revoked"):
            server.services.validator.authenticate_sync(f"Bearer {tokens['access_token']}")


async def test_parallel_repeat_within_grace_gets_the_same_successor(server: Server) -> None:
    first = await signed_in_tokens(server)
    a, b = await asyncio.gather(
        refresh(server, first["refresh_token"]), refresh(server, first["refresh_token"])
    )
    assert a["status"] == b["status"] == "200"
    assert a["refresh_token"] == b["refresh_token"]  # no second branch
    # Detection stays on: the successor rotates once; a second rotation of it is reuse.
    assert (await refresh(server, a["refresh_token"]))["status"] == "200"


async def test_grace_does_not_cover_an_older_ancestor(server: Server) -> None:
    first = await signed_in_tokens(server)
    second = await refresh(server, first["refresh_token"])
    await refresh(server, second["refresh_token"])
    assert (await refresh(server, first["refresh_token"]))["error"] == "invalid_grant"


async def test_scope_may_narrow_never_widen(server: Server) -> None:
    first = await signed_in_tokens(server)
    narrowed = await refresh(server, first["refresh_token"], scope="read")
    assert narrowed["scope"] == "read"
    widened = await refresh(server, narrowed["refresh_token"], scope="read write")
    assert widened["error"] == "invalid_scope"
    # The family keeps its original scope: a later refresh without scope gets all of it back.
    assert (await refresh(server, narrowed["refresh_token"]))["scope"] == "openid profile read"


async def test_password_change_revokes_access_and_refresh_tokens(
    server: Server, clock: FrozenClock
) -> None:
    tokens = await signed_in_tokens(server)
    server.services.validator.authenticate_sync(f"Bearer {tokens['access_token']}")
    clock.advance(0.5)
    await server.services.user_admin.set_password("alice", "a brand new password")
    with pytest.raises(InvalidToken, match="subject"):
        server.services.validator.authenticate_sync(f"Bearer {tokens['access_token']}")
    assert (await refresh(server, tokens["refresh_token"]))["error"] == "invalid_grant"


async def test_refresh_token_introspection_and_revocation(server: Server) -> None:
    tokens = await signed_in_tokens(server)
    auth = ("web", server.web_secret)
    data = {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"}
    active = (await server.http.post("/introspect", data=data, auth=auth)).json()
    assert active["active"] is True
    assert active["client_id"] == "web"
    assert (await server.http.post("/revoke", data=data, auth=auth)).status_code == 200
    assert (await server.http.post("/introspect", data=data, auth=auth)).json() == {"active": False}
    with pytest.raises(InvalidToken):
        server.services.validator.authenticate_sync(f"Bearer {tokens['access_token']}")


async def test_userinfo_get_and_post(server: Server) -> None:
    tokens = await signed_in_tokens(server)
    headers = {"authorization": f"Bearer {tokens['access_token']}"}
    for method in ("GET", "POST"):
        response = await server.http.request(method, "/userinfo", headers=headers)
        assert response.status_code == 200
        body = response.json()
        assert body["preferred_username"] == "alice"
        assert "email" not in body  # email scope not granted
    missing = await server.http.get("/userinfo")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")


async def test_logout_ends_session_and_revokes_its_tokens(
    server: Server, clock: FrozenClock
) -> None:
    tokens = await signed_in_tokens(server)
    clock.advance(0.5)
    response = await server.http.get(
        "/logout",
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://app.example/bye",
            "state": "bye-1",
        },
    )
    assert response.status_code == 302
    assert query_of(response.headers["location"]) == {"state": "bye-1"}
    with pytest.raises(InvalidToken, match="session"):
        server.services.validator.authenticate_sync(f"Bearer {tokens['access_token']}")
    assert (await refresh(server, tokens["refresh_token"]))["error"] == "invalid_grant"
    again = await server.http.get(
        "/authorize",
        params={
            "response_type": "code",
            "client_id": "web",
            "redirect_uri": REDIRECT_URI,
            "scope": "read",
            "code_challenge": Pkce.new().challenge,
            "code_challenge_method": "S256",
        },
    )
    assert 'action="/login"' in again.text  # the browser session is gone


async def test_logout_refuses_unregistered_post_logout_redirect(server: Server) -> None:
    tokens = await signed_in_tokens(server)
    response = await server.http.get(
        "/logout",
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://evil.example/",
        },
    )
    assert response.status_code == 400
    assert "location" not in response.headers


async def test_logout_without_hint_asks_the_user(server: Server) -> None:
    await signed_in_tokens(server)
    response = await server.http.get("/logout")
    assert response.status_code == 200
    assert "Sign out?" in response.text


async def test_device_flow(server: Server, clock: FrozenClock) -> None:
    start = (
        await server.http.post(
            "/device_authorization", data={"client_id": "tv", "scope": "openid read"}
        )
    ).json()
    assert start["verification_uri"].endswith("/device")
    assert len(start["user_code"]) == 9
    poll = {"grant_type": DEVICE_GRANT, "device_code": start["device_code"], "client_id": "tv"}
    pending = await server.http.post("/token", data=poll)
    assert pending.json()["error"] == "authorization_pending"
    too_fast = await server.http.post("/token", data=poll)
    assert too_fast.json()["error"] == "slow_down"
    clock.advance(11)  # the interval grew to 10 s: waiting it out is plain pending again
    assert (await server.http.post("/token", data=poll)).json()["error"] == "authorization_pending"
    # The user signs in on another device and approves.
    page = await server.http.get("/device", params={"user_code": start["user_code"]})
    entered = await server.http.post(
        "/login",
        data={
            "interaction": hidden_interaction(page.text),
            "username": "alice",
            "password": "correct horse battery",
        },
    )
    confirm = await server.http.post(
        "/device",
        data={
            "interaction": hidden_interaction(entered.text),
            "user_code": start["user_code"].lower(),
        },
    )
    assert "Allow" in confirm.text
    done = await server.http.post(
        "/device/decision",
        data={"interaction": hidden_interaction(confirm.text), "decision": "approve"},
    )
    assert done.status_code == 200
    clock.advance(11)
    tokens = await server.http.post("/token", data=poll)
    assert tokens.status_code == 200
    body = tokens.json()
    assert body["scope"] == "openid read"
    assert "id_token" in body
    clock.advance(11)
    assert (await server.http.post("/token", data=poll)).json()["error"] == "invalid_grant"


async def test_device_code_expires(server: Server, clock: FrozenClock) -> None:
    start = (await server.http.post("/device_authorization", data={"client_id": "tv"})).json()
    clock.advance(601)
    response = await server.http.post(
        "/token",
        data={"grant_type": DEVICE_GRANT, "device_code": start["device_code"], "client_id": "tv"},
    )
    assert response.json()["error"] == "expired_token"


async def test_device_denied(server: Server, clock: FrozenClock) -> None:
    start = (await server.http.post("/device_authorization", data={"client_id": "tv"})).json()
    page = await server.http.get("/device")
    entered = await server.http.post(
        "/login",
        data={
            "interaction": hidden_interaction(page.text),
            "username": "alice",
            "password": "correct horse battery",
        },
    )
    confirm = await server.http.post(
        "/device",
        data={"interaction": hidden_interaction(entered.text), "user_code": start["user_code"]},
    )
    await server.http.post(
        "/device/decision",
        data={"interaction": hidden_interaction(confirm.text), "decision": "deny"},
    )
    response = await server.http.post(
        "/token",
        data={"grant_type": DEVICE_GRANT, "device_code": start["device_code"], "client_id": "tv"},
    )
    assert response.json()["error"] == "access_denied"
