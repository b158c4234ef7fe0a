"""Authorization code + PKCE through the sign-in and consent pages, then the token endpoint."""

from __future__ import annotations

import pytest

from tests.conftest import FrozenClock
from tests.server.conftest import ISSUER, Server
from tests.server.flows import (
    REDIRECT_URI,
    Pkce,
    authorize_params,
    hidden_interaction,
    query_of,
    sign_in_and_consent,
)
from tokenward.guard import InvalidToken
from tokenward.tokens.id_token import token_hash
from tokenward.tokens.jws import payload_object, verify_compact

pytestmark = pytest.mark.anyio


async def exchange(server: Server, code: str, pkce: Pkce, **extra: str) -> dict[str, object]:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": pkce.verifier,
        **extra,
    }
    response = await server.http.post("/token", data=data, auth=("web", server.web_secret))
    return {"status": response.status_code, **response.json()}


async def test_full_flow_issues_access_refresh_and_id_token(
    server: Server, clock: FrozenClock
) -> None:
    pkce = Pkce.new()
    redirect = await sign_in_and_consent(server.http, pkce)
    assert redirect["state"] == "st-123"
    assert redirect["iss"] == ISSUER  # RFC 9207
    tokens = await exchange(server, redirect["code"], pkce)
    assert tokens["status"] == 200
    assert tokens["token_type"] == "Bearer"
    assert str(tokens["refresh_token"]).startswith("twr_")
    access = server.services.validator.authenticate_sync(f"Bearer {tokens['access_token']}")
    user = await server.services.stores.users.by_username("alice")
    assert user is not None
    assert access.sub == user.user_id
    assert access.sid is not None
    assert access.scopes == {"openid", "profile", "read"}
    jws, key = verify_compact(str(tokens["id_token"]), server.services.keys.verification_key)
    assert key.alg.name == "RS256"  # OIDC's default ID token algorithm
    claims = payload_object(jws)
    assert claims["iss"] == ISSUER
    assert claims["aud"] == "web"
    assert claims["nonce"] == "n-456"
    assert claims["sid"] == access.sid
    assert claims["auth_time"] == int(clock())
    assert claims["at_hash"] == token_hash(str(tokens["access_token"]), "RS256")


async def test_second_authorization_skips_consent_once_granted(server: Server) -> None:
    pkce = Pkce.new()
    await sign_in_and_consent(server.http, pkce)
    response = await server.http.get("/authorize", params=authorize_params(Pkce.new()))
    assert response.status_code == 302  # signed in and consented: straight back with a code
    assert "code" in query_of(response.headers["location"])


async def test_code_is_single_use_and_replay_revokes_what_it_minted(server: Server) -> None:
    pkce = Pkce.new()
    code = (await sign_in_and_consent(server.http, pkce))["code"]
    first = await exchange(server, code, pkce)
    assert first["status"] == 200
    replay = await exchange(server, code, pkce)
    assert replay["status"] == 400
    assert replay["error"] == "invalid_grant"
    with pytest.raises(InvalidToken, match="revoked"):
        server.services.validator.authenticate_sync(f"Bearer {first['access_token']}")
    refreshed = await server.http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": str(first["refresh_token"])},
        auth=("web", server.web_secret),
    )
    assert refreshed.json()["error"] == "invalid_grant"


async def test_code_expires_after_60_seconds(server: Server, clock: FrozenClock) -> None:
    pkce = Pkce.new()
    code = (await sign_in_and_consent(server.http, pkce))["code"]
    clock.advance(61)
    assert (await exchange(server, code, pkce))["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"code_verifier": "x" * 43}, "invalid_grant"),
        ({"redirect_uri": "https://app.example/other"}, "invalid_grant"),
    ],
)
async def test_exchange_bound_to_pkce_and_redirect(
    server: Server, override: dict[str, str], error: str
) -> None:
    pkce = Pkce.new()
    code = (await sign_in_and_consent(server.http, pkce))["code"]
    assert (await exchange(server, code, pkce, **override))["error"] == error


@pytest.mark.parametrize(
    "override",
    [{"code_verifier": "x" * 43}, {"code_verifier": ""}, {"redirect_uri": "https://a.example/x"}],
)
async def test_a_refused_exchange_uses_the_code_up(
    server: Server, override: dict[str, str]
) -> None:
    # Checked before anything is written, yet a failed attempt still spends the code: a
    # guesser of the verifier gets one try, and the real client's exchange then fails too.
    pkce = Pkce.new()
    code = (await sign_in_and_consent(server.http, pkce))["code"]
    assert (await exchange(server, code, pkce, **override))["error"] == "invalid_grant"
    assert (await exchange(server, code, pkce))["error"] == "invalid_grant"
    record = await server.services.stores.codes.peek(
        next(iter(server.services.stores.codes._codes))  # type: ignore[attr-defined]
    )
    assert record is not None
    assert record.consumed_at is not None
    assert record.access_jti is None  # nothing was minted for it


async def test_code_of_another_client_refused(server: Server) -> None:
    pkce = Pkce.new()
    code = (await sign_in_and_consent(server.http, pkce))["code"]
    response = await server.http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": pkce.verifier,
        },
        auth=("service", server.secret),
    )
    assert response.json()["error"] in ("unauthorized_client", "invalid_grant")


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": ""}, "invalid_request"),
        ({"scope": "admin"}, "invalid_scope"),
        ({"prompt": "none"}, "login_required"),
        ({"resource": "https://elsewhere.example"}, "invalid_target"),
        ({"request": "eyJ..."}, "invalid_request_object"),  # the client has no keys
    ],
)
async def test_errors_after_validation_redirect_with_state_and_iss(
    server: Server, params: dict[str, str], error: str
) -> None:
    response = await server.http.get("/authorize", params=authorize_params(Pkce.new(), **params))
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI)
    query = query_of(location)
    assert query["error"] == error
    assert query["state"] == "st-123"
    assert query["iss"] == ISSUER


async def test_duplicate_parameter_is_invalid_request(server: Server) -> None:
    params: list[tuple[str, str | int | float | bool | None]] = [
        *authorize_params(Pkce.new()).items(),
        ("scope", "read"),
    ]
    response = await server.http.get("/authorize", params=params)
    assert query_of(response.headers["location"])["error"] == "invalid_request"


@pytest.mark.parametrize(
    "params",
    [
        {"client_id": "nobody"},
        {"redirect_uri": "https://evil.example/callback"},
        {"redirect_uri": REDIRECT_URI + "/"},
    ],
)
async def test_untrusted_client_or_redirect_shows_an_error_page(
    server: Server, params: dict[str, str]
) -> None:
    response = await server.http.get("/authorize", params=authorize_params(Pkce.new(), **params))
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "text/html" in response.headers["content-type"]


async def test_wrong_password_then_throttled(server: Server) -> None:
    page = await server.http.get("/authorize", params=authorize_params(Pkce.new()))
    interaction = page.text.split('name="interaction" value="')[1].split('"')[0]
    statuses = []
    for _ in range(6):
        response = await server.http.post(
            "/login", data={"interaction": interaction, "username": "alice", "password": "wrong!!!"}
        )
        statuses.append(response.status_code)
        interaction = hidden_interaction(response.text)  # each form is good for one try
    assert statuses[:5] == [401] * 5
    assert statuses[5] == 429
    assert "Too many failed sign-in attempts" in response.text


async def test_login_form_needs_this_browsers_csrf_cookie(server: Server) -> None:
    page = await server.http.get("/authorize", params=authorize_params(Pkce.new()))
    interaction = page.text.split('name="interaction" value="')[1].split('"')[0]
    server.http.cookies.clear()  # another browser replaying the form
    response = await server.http.post(
        "/login",
        data={"interaction": interaction, "username": "alice", "password": "correct horse battery"},
    )
    assert response.status_code == 400
    assert not any("tw_session" in name for name in response.cookies)


async def test_session_cookie_attributes(server: Server) -> None:
    page = await server.http.get("/authorize", params=authorize_params(Pkce.new()))
    interaction = page.text.split('name="interaction" value="')[1].split('"')[0]
    response = await server.http.post(
        "/login",
        data={"interaction": interaction, "username": "alice", "password": "correct horse battery"},
    )
    cookie = next(
        v
        for k, v in response.headers.multi_items()
        if k == "set-cookie" and v.startswith("__Host-tw_session=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "SameSite=Lax" in cookie
    assert "Secure" in cookie  # the issuer is https


async def test_denied_consent_redirects_access_denied(server: Server) -> None:
    page = await server.http.get("/authorize", params=authorize_params(Pkce.new()))
    interaction = page.text.split('name="interaction" value="')[1].split('"')[0]
    consent = await server.http.post(
        "/login",
        data={"interaction": interaction, "username": "alice", "password": "correct horse battery"},
    )
    response = await server.http.post(
        "/consent",
        data={
            "interaction": consent.text.split('name="interaction" value="')[1].split('"')[0],
            "decision": "deny",
        },
    )
    assert query_of(response.headers["location"])["error"] == "access_denied"


async def test_prompt_login_forces_a_new_sign_in(server: Server) -> None:
    await sign_in_and_consent(server.http, Pkce.new())
    response = await server.http.get(
        "/authorize", params=authorize_params(Pkce.new(), prompt="login")
    )
    assert response.status_code == 200
    assert 'action="/login"' in response.text


async def test_max_age_exceeded_forces_a_new_sign_in(server: Server, clock: FrozenClock) -> None:
    await sign_in_and_consent(server.http, Pkce.new())
    clock.advance(120)
    response = await server.http.get(
        "/authorize", params=authorize_params(Pkce.new(), max_age="60")
    )
    assert 'action="/login"' in response.text


async def test_loopback_redirect_may_use_any_port(server: Server) -> None:
    """RFC 8252 §7.3: native apps listen on an ephemeral loopback port."""
    from dataclasses import replace

    record = await server.services.stores.clients.get("web")
    assert record is not None
    await server.services.stores.clients.put(
        replace(record, redirect_uris=("http://127.0.0.1/cb",))
    )
    ok = await server.http.get(
        "/authorize", params=authorize_params(Pkce.new(), redirect_uri="http://127.0.0.1:51234/cb")
    )
    assert ok.status_code == 200  # the sign-in page: the redirect was accepted
    for bad in (
        "http://127.0.0.1:51234/other",
        "http://localhost:51234/cb",
        "https://127.0.0.1:51234/cb",
    ):
        refused = await server.http.get(
            "/authorize", params=authorize_params(Pkce.new(), redirect_uri=bad)
        )
        assert refused.status_code == 400
