"""RP-initiated logout: only an ID token of this very session ends it without asking; any other
token we signed, another user's ID token, or a bare link gets the confirmation page (CSRF)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import FrozenClock
from tests.server.conftest import ISSUER, Server
from tests.server.flows import Pkce, authorize_params, query_of
from tests.server.test_refresh_device_logout import refresh, signed_in_tokens
from tokenward.guard import InvalidToken
from tokenward.tokens.id_token import ID_TOKEN_LIFETIME

pytestmark = pytest.mark.anyio
BYE = "https://app.example/bye"


@pytest.fixture
async def other_browser(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """A second browser (its own cookies) on the same server."""
    transport = server.http._transport
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        yield http


def still_valid(server: Server, tokens: dict[str, str]) -> None:
    server.services.validator.authenticate_sync(f"Bearer {tokens['access_token']}")


async def signed_in(server: Server) -> bool:
    """Whether the browser still has a live session: /authorize skips the sign-in form."""
    page = await server.http.get("/authorize", params=authorize_params(Pkce.new()))
    return page.status_code == 302


def confirmation(response: httpx.Response) -> dict[str, str]:
    """The hidden fields of the "Sign out?" page."""
    assert response.status_code == 200
    assert "Sign out?" in response.text
    return dict(re.findall(r'name="([^"]+)" value="([^"]*)"', response.text))


async def test_another_clients_access_token_is_no_hint(server: Server, clock: FrozenClock) -> None:
    tokens = await signed_in_tokens(server)
    service_token = (await server.token(scope="read")).json()["access_token"]
    introspection = await server.http.post(  # RFC 9701: a JWT we sign for any client that asks
        "/introspect",
        data={"token": tokens["access_token"]},
        auth=("service", server.secret),
        headers={"accept": "application/token-introspection+jwt"},
    )
    clock.advance(1)  # so that a sign-out now would revoke the tokens (watermark)

    # All signed by us and verifying with our keys; none is an ID token of this session.
    for hint in (service_token, tokens["access_token"], introspection.text):
        response = await server.http.get("/logout", params={"id_token_hint": hint})

        confirmation(response)
    still_valid(server, tokens)
    assert (await refresh(server, tokens["refresh_token"]))["status"] == "200"


async def test_another_users_id_token_does_not_end_this_session(
    server: Server, other_browser: httpx.AsyncClient, clock: FrozenClock
) -> None:
    await server.services.user_admin.create_user("bob", "bob's long password")
    alice = await signed_in_tokens(server)
    bob = await signed_in_tokens(
        Server(server.services, other_browser, server.secret, server.web_secret),
        username="bob",
        password="bob's long password",
    )
    clock.advance(1)

    response = await server.http.get(
        "/logout",
        params={"id_token_hint": bob["id_token"], "post_logout_redirect_uri": BYE, "state": "s"},
    )

    fields = confirmation(response)
    assert fields["client_id"] == "web"  # from the hint: the confirmed sign-out may redirect
    still_valid(server, alice)
    still_valid(server, bob)  # and bob's session is not this browser's to end either
    assert await signed_in(server)


async def test_this_sessions_id_token_signs_out_without_asking(
    server: Server, clock: FrozenClock
) -> None:
    tokens = await signed_in_tokens(server)
    clock.advance(ID_TOKEN_LIFETIME + 60)  # RP-Initiated Logout §2: an expired hint still counts

    response = await server.http.get(
        "/logout",
        params={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": BYE, "state": "s"},
    )

    assert response.status_code == 302
    assert query_of(response.headers["location"]) == {"state": "s"}
    assert (await refresh(server, tokens["refresh_token"]))["error"] == "invalid_grant"
    assert not await signed_in(server)


async def test_the_confirmation_form_signs_out(server: Server, clock: FrozenClock) -> None:
    tokens = await signed_in_tokens(server)
    clock.advance(1)  # the session's watermark revokes what was issued before it
    fields = confirmation(
        await server.http.get(
            "/logout", params={"client_id": "web", "post_logout_redirect_uri": BYE, "state": "s"}
        )
    )

    response = await server.http.post("/logout", data=fields)

    assert response.status_code == 302
    assert response.headers["location"] == f"{BYE}?state=s"
    with pytest.raises(InvalidToken, match="session"):
        still_valid(server, tokens)
    assert not await signed_in(server)


@pytest.mark.parametrize("how", ["GET", "POST without csrf", "POST with a wrong csrf"])
async def test_a_confirmation_not_from_our_form_only_asks_again(
    server: Server, clock: FrozenClock, how: str
) -> None:
    tokens = await signed_in_tokens(server)
    clock.advance(1)
    confirmation(await server.http.get("/logout"))  # this browser has a CSRF cookie now
    forged = {"confirm": "yes"}

    if how == "GET":  # a link on another site: the Lax session cookie goes, the Strict one not
        server.http.cookies.delete("tw_csrf")
        response = await server.http.get("/logout", params=forged)
    elif how == "POST without csrf":
        server.http.cookies.delete("tw_csrf")
        response = await server.http.post("/logout", data=forged)
    else:
        response = await server.http.post("/logout", data={**forged, "csrf": "x" * 43})

    confirmation(response)
    still_valid(server, tokens)
    assert await signed_in(server)


async def test_without_a_session_nothing_is_revoked(
    server: Server, other_browser: httpx.AsyncClient, clock: FrozenClock
) -> None:
    tokens = await signed_in_tokens(server)
    clock.advance(1)

    # Another browser (no session cookie) presents alice's genuine ID token.
    response = await other_browser.get(
        "/logout",
        params={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": BYE},
    )

    assert response.status_code == 302
    assert response.headers["location"] == BYE
    still_valid(server, tokens)
    assert await signed_in(server)


async def test_a_hint_for_another_client_than_client_id_is_refused(
    server: Server, clock: FrozenClock
) -> None:
    tokens = await signed_in_tokens(server)
    clock.advance(1)

    response = await server.http.get(
        "/logout", params={"id_token_hint": tokens["id_token"], "client_id": "tv"}
    )

    assert response.status_code == 400
    still_valid(server, tokens)


@pytest.mark.parametrize(
    "params",
    [{"id_token_hint": "not.a.token"}, {f"p{i}": "x" for i in range(17)}],
    ids=["garbage hint", "too many parameters"],
)
async def test_bad_input_is_a_400_page_and_signs_nobody_out(
    server: Server, clock: FrozenClock, params: dict[str, str]
) -> None:
    tokens = await signed_in_tokens(server)
    clock.advance(1)

    response = await server.http.get("/logout", params=params)

    assert response.status_code == 400
    assert "Sign-out failed" in response.text
    still_valid(server, tokens)
    assert await signed_in(server)
