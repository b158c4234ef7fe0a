"""Parallel exchanges of one authorization code on a real database: however they interleave,
no token any of them received stays active (RFC 9700 §4.5, RFC 6749 §4.1.2)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.server.conftest import Server
from tests.server.flows import REDIRECT_URI, Pkce, authorize_params, query_of, sign_in_and_consent
from tokenward.core.records import CodeRecord
from tokenward.guard import InvalidToken

pytestmark = pytest.mark.anyio

ROUNDS = 10  # codes per test. Before the fix, two exchanges left the winner's tokens active in
# 18-20 rounds of 20 (SQLite, PostgreSQL); five exchanges in 4 of 20 on SQLite.


async def new_code(server: Server, pkce: Pkce) -> str:
    """A code for alice, already signed in and consented: /authorize answers at once."""
    response = await server.http.get("/authorize", params=authorize_params(pkce))
    assert response.status_code == 302, response.text[:300]
    return query_of(response.headers["location"])["code"]


async def exchange(server: Server, code: str, pkce: Pkce) -> dict[str, str]:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": pkce.verifier,
    }
    response = await server.http.post("/token", data=data, auth=("web", server.web_secret))
    assert response.status_code in (200, 400), response.text
    body: dict[str, str] = response.json()
    return body


async def active(server: Server, token: str) -> bool:
    response = await server.http.post(
        "/introspect", data={"token": token}, auth=("web", server.web_secret)
    )
    assert response.status_code == 200
    return bool(response.json()["active"])


@pytest.mark.parametrize("parallel", [2, 5])
async def test_no_token_of_a_replayed_code_stays_active(sql_server: Server, parallel: int) -> None:
    server = sql_server
    await sign_in_and_consent(server.http, Pkce.new())
    delivered = 0
    for _ in range(ROUNDS):
        pkce = Pkce.new()
        code = await new_code(server, pkce)

        answers = await asyncio.gather(*(exchange(server, code, pkce) for _ in range(parallel)))

        winners = [answer for answer in answers if "access_token" in answer]
        assert len(winners) <= 1  # exactly one may win the code, and even it may be revoked
        assert [a["error"] for a in answers if a not in winners] == ["invalid_grant"] * (
            parallel - len(winners)
        )
        delivered += len(winners)
        for tokens in winners:
            assert not await active(server, tokens["access_token"])
            assert not await active(server, tokens["refresh_token"])
            with pytest.raises(InvalidToken, match="revoked"):
                server.services.validator.authenticate_sync(f"Bearer {tokens['access_token']}")
    assert delivered <= ROUNDS


async def test_a_replay_between_the_read_and_the_exchange_fails_the_first_exchange_too(
    server: Server,
) -> None:
    # The interleaving the race produces, made deterministic: a replay uses the code after the
    # first exchange read it and minted its token, before its one write.
    codes = server.services.stores.codes
    exchange_code = codes.exchange
    replays: list[object] = []

    async def replay_first(digest: str, *args: Any) -> tuple[bool, CodeRecord | None]:
        replays.append(await codes.consume(digest, server.services.clock()))
        return await exchange_code(digest, *args)

    await sign_in_and_consent(server.http, Pkce.new())
    pkce = Pkce.new()
    code = await new_code(server, pkce)
    codes.exchange = replay_first  # type: ignore[assignment]

    answer = await exchange(server, code, pkce)

    assert answer["error"] == "invalid_grant"  # the replay came first: this one lost the code
    assert len(replays) == 1
    denied = await server.services.stores.revocations.active(server.services.clock())
    assert [revocation.kind for _, revocation in denied] == ["jti"]  # its access token
    assert server.services.stores.grants._families == {}  # type: ignore[attr-defined]
