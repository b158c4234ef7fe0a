"""DPoP-bound tokens at a protected resource (RFC 9449 §7): the demo API and userinfo."""

from __future__ import annotations

import pytest

from tests.conftest import FrozenClock
from tests.server.conftest import ISSUER, Server
from tests.server.test_dpop_token import dpop_post
from tokenward.client.dpop import DpopKey

pytestmark = pytest.mark.anyio
API = ISSUER + "/api/hello"


async def bound_token(server: Server, key: DpopKey) -> str:
    response = await dpop_post(
        server,
        key,
        {"grant_type": "client_credentials", "scope": "read"},
        ("service", server.secret),
    )
    assert response.json()["token_type"] == "DPoP"
    token: str = response.json()["access_token"]
    return token


async def test_dpop_call_succeeds_with_a_fresh_proof_each_time(
    server: Server, clock: FrozenClock
) -> None:
    key = DpopKey(clock=clock)
    token = await bound_token(server, key)
    for _ in range(2):  # the second call is a cache hit for the token, yet needs its own proof
        response = await server.http.get(
            "/api/hello",
            headers={
                "authorization": f"DPoP {token}",
                "dpop": key.proof("GET", API, access_token=token),
            },
        )
        assert response.status_code == 200, response.text
        assert response.json()["hello"] == "service"


async def test_bound_token_as_bearer_is_rejected(server: Server, clock: FrozenClock) -> None:
    token = await bound_token(server, DpopKey(clock=clock))
    response = await server.http.get("/api/hello", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


async def test_stolen_token_without_its_key_is_rejected(server: Server, clock: FrozenClock) -> None:
    token = await bound_token(server, DpopKey(clock=clock))
    thief = DpopKey(clock=clock)
    response = await server.http.get(
        "/api/hello",
        headers={
            "authorization": f"DPoP {token}",
            "dpop": thief.proof("GET", API, access_token=token),
        },
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_dpop_proof"
    assert response.headers["www-authenticate"].startswith("DPoP ")


@pytest.mark.parametrize(
    "problem", ["missing", "replayed", "wrong_ath", "wrong_url", "wrong_method"]
)
async def test_bad_proofs_are_rejected(server: Server, clock: FrozenClock, problem: str) -> None:
    key = DpopKey(clock=clock)
    token = await bound_token(server, key)
    proof = {
        "missing": None,
        "replayed": key.proof("GET", API, access_token=token),
        "wrong_ath": key.proof("GET", API, access_token=token + "x"),
        "wrong_url": key.proof("GET", ISSUER + "/api/other", access_token=token),
        "wrong_method": key.proof("POST", API, access_token=token),
    }[problem]
    headers = {"authorization": f"DPoP {token}"}
    if proof is not None:
        headers["dpop"] = proof
    if problem == "replayed":
        assert (await server.http.get("/api/hello", headers=headers)).status_code == 200
    response = await server.http.get("/api/hello", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_dpop_proof"


async def test_unbound_token_with_dpop_scheme_is_rejected(
    server: Server, clock: FrozenClock
) -> None:
    token = (await server.token(scope="read")).json()["access_token"]
    key = DpopKey(clock=clock)
    response = await server.http.get(
        "/api/hello",
        headers={
            "authorization": f"DPoP {token}",
            "dpop": key.proof("GET", API, access_token=token),
        },
    )
    assert response.status_code == 401


async def test_revoked_bound_token_is_rejected(server: Server, clock: FrozenClock) -> None:
    key = DpopKey(clock=clock)
    token = await bound_token(server, key)
    await server.http.post("/revoke", data={"token": token}, auth=("service", server.secret))
    response = await server.http.get(
        "/api/hello",
        headers={
            "authorization": f"DPoP {token}",
            "dpop": key.proof("GET", API, access_token=token),
        },
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
