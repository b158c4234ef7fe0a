"""DPoP at the token endpoint (RFC 9449 §5, §8): nonces, bound tokens, bound refresh tokens."""

from __future__ import annotations

import json
from dataclasses import replace

import httpx
import pytest

from tests.conftest import FrozenClock
from tests.server.conftest import ISSUER, Server
from tests.server.flows import Pkce, hidden_interaction, query_of
from tokenward.client.dpop import DpopKey
from tokenward.tokens.dpop import normalised_htu
from tokenward.tokens.jws import sign_compact

pytestmark = pytest.mark.anyio
TOKEN_URL = ISSUER + "/token"


async def dpop_post(
    server: Server, key: DpopKey, data: dict[str, str], auth: tuple[str, str] | None
) -> httpx.Response:
    """POST /token with a proof; on use_dpop_nonce, retry once with the nonce (RFC 9449 §8)."""
    response = await server.http.post(
        "/token",
        data=data,
        auth=auth,  # type: ignore[arg-type]  # httpx takes None (no auth), its stubs do not
        headers={"dpop": key.proof("POST", TOKEN_URL)},
    )
    if response.status_code == 400 and response.json()["error"] == "use_dpop_nonce":
        nonce = response.headers["dpop-nonce"]
        response = await server.http.post(
            "/token",
            data=data,
            auth=auth,  # type: ignore[arg-type]  # httpx takes None (no auth), its stubs do not
            headers={"dpop": key.proof("POST", TOKEN_URL, nonce=nonce)},
        )
    return response


async def test_first_proof_without_nonce_gets_use_dpop_nonce(
    server: Server, clock: FrozenClock
) -> None:
    key = DpopKey(clock=clock)
    response = await server.http.post(
        "/token",
        data={"grant_type": "client_credentials"},
        auth=("service", server.secret),
        headers={"dpop": key.proof("POST", TOKEN_URL)},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "use_dpop_nonce"
    assert response.headers["dpop-nonce"]


async def test_bound_access_token(server: Server, clock: FrozenClock) -> None:
    key = DpopKey(clock=clock)
    response = await dpop_post(
        server, key, {"grant_type": "client_credentials"}, ("service", server.secret)
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "DPoP"
    assert response.headers["dpop-nonce"]
    introspected = (
        await server.http.post(
            "/introspect", data={"token": body["access_token"]}, auth=("service", server.secret)
        )
    ).json()
    assert introspected["cnf"] == {"jkt": key.thumbprint}
    assert introspected["token_type"] == "DPoP"


async def test_replayed_proof_is_invalid_dpop_proof(server: Server, clock: FrozenClock) -> None:
    key = DpopKey(clock=clock)
    first = await server.http.post(
        "/token",
        data={"grant_type": "client_credentials"},
        auth=("service", server.secret),
        headers={"dpop": key.proof("POST", TOKEN_URL)},
    )
    nonce = first.headers["dpop-nonce"]
    proof = key.proof("POST", TOKEN_URL, nonce=nonce)
    ok = await server.http.post(
        "/token",
        data={"grant_type": "client_credentials"},
        auth=("service", server.secret),
        headers={"dpop": proof},
    )
    assert ok.status_code == 200
    replay = await server.http.post(
        "/token",
        data={"grant_type": "client_credentials"},
        auth=("service", server.secret),
        headers={"dpop": proof},
    )
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_dpop_proof"


async def test_client_that_requires_dpop(server: Server) -> None:
    record = await server.services.stores.clients.get("service")
    assert record is not None
    await server.services.stores.clients.put(replace(record, dpop_required=True))
    response = await server.token()
    assert response.json()["error"] == "invalid_dpop_proof"


async def test_public_client_refresh_token_is_bound_to_the_key(
    server: Server, clock: FrozenClock
) -> None:

    await server.services.client_admin.create_client(
        "spa",
        grant_types=["authorization_code", "refresh_token"],
        scope="openid read",
        redirect_uris=["https://spa.example/cb"],
        public=True,
    )
    key = DpopKey(clock=clock)
    pkce = Pkce.new()
    page = await server.http.get(
        "/authorize",
        params={
            "response_type": "code",
            "client_id": "spa",
            "redirect_uri": "https://spa.example/cb",
            "scope": "read",
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
            "dpop_jkt": key.thumbprint,
        },
    )
    consent = await server.http.post(
        "/login",
        data={
            "interaction": hidden_interaction(page.text),
            "username": "alice",
            "password": "correct horse battery",
        },
    )
    done = await server.http.post(
        "/consent", data={"interaction": hidden_interaction(consent.text), "decision": "approve"}
    )
    code = query_of(done.headers["location"])["code"]
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": "https://spa.example/cb",
        "code_verifier": pkce.verifier,
        "client_id": "spa",
    }
    tokens = await dpop_post(server, key, exchange, None)
    assert tokens.status_code == 200, tokens.text
    refresh = tokens.json()["refresh_token"]
    thief = DpopKey(clock=clock)
    stolen = await dpop_post(
        server,
        thief,
        {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": "spa"},
        None,
    )
    assert stolen.json()["error"] == "invalid_grant"
    plain = await server.http.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": refresh, "client_id": "spa"}
    )
    assert plain.json()["error"] == "invalid_grant"
    owner = await dpop_post(
        server,
        key,
        {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": "spa"},
        None,
    )
    assert owner.status_code == 200
    assert owner.json()["token_type"] == "DPoP"


async def test_code_bound_with_dpop_jkt_needs_that_key(server: Server, clock: FrozenClock) -> None:
    key, other = DpopKey(clock=clock), DpopKey(clock=clock)
    pkce = Pkce.new()
    page = await server.http.get(
        "/authorize",
        params={
            "response_type": "code",
            "client_id": "web",
            "redirect_uri": "https://app.example/callback",
            "scope": "read",
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
            "dpop_jkt": key.thumbprint,
        },
    )
    consent = await server.http.post(
        "/login",
        data={
            "interaction": hidden_interaction(page.text),
            "username": "alice",
            "password": "correct horse battery",
        },
    )
    done = await server.http.post(
        "/consent", data={"interaction": hidden_interaction(consent.text), "decision": "approve"}
    )
    code = query_of(done.headers["location"])["code"]
    response = await dpop_post(
        server,
        other,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "https://app.example/callback",
            "code_verifier": pkce.verifier,
        },
        ("web", server.web_secret),
    )
    assert response.json()["error"] == "invalid_grant"


async def test_metadata_advertises_dpop_algs(server: Server) -> None:
    document = (await server.http.get("/.well-known/oauth-authorization-server")).json()
    assert "ES256" in document["dpop_signing_alg_values_supported"]


async def test_a_proof_whose_jti_is_a_lone_surrogate_is_kept_once(
    sql_server: Server, clock: FrozenClock
) -> None:
    """`"\\ud800"` is valid JSON (RFC 8259 §7) and parses to a string UTF-8 cannot encode. It
    is an ordinary jti: accepted once, refused as a replay after, never a 500 (the durable
    replay cache used to fail encoding it)."""
    key = DpopKey(clock=clock)
    auth = ("service", sql_server.secret)
    data = {"grant_type": "client_credentials"}
    first = await sql_server.http.post(
        "/token", data=data, auth=auth, headers={"dpop": key.proof("POST", TOKEN_URL)}
    )
    nonce = first.headers["dpop-nonce"]
    claims = {
        "jti": "\ud800-lone-surrogate",  # 8 to 256 characters, as every jti
        "htm": "POST",
        "htu": normalised_htu(TOKEN_URL),
        "iat": int(clock()),
        "nonce": nonce,
    }
    header = {"typ": "dpop+jwt", "alg": key.alg, "jwk": key.jwk}
    # The stdlib writes the escape; orjson refuses to encode a lone surrogate at all.
    proof = sign_compact(header, json.dumps(claims).encode(), key._sign)
    accepted = await sql_server.http.post("/token", data=data, auth=auth, headers={"dpop": proof})
    assert accepted.status_code == 200, accepted.text
    replayed = await sql_server.http.post("/token", data=data, auth=auth, headers={"dpop": proof})
    assert replayed.status_code == 400
    assert replayed.json()["error"] == "invalid_dpop_proof"
