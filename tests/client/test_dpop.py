"""DPoP through the SDK against the real server: nonce challenges at the token endpoint, bound
tokens and bound refresh tokens, proofs with `ath` for resources."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from tests.client.conftest import AuthServer, DeviceUser, Recorder
from tokenward.client import (
    ClientCredentials,
    DeviceCodeLogin,
    DpopKey,
    Http,
    LoginRequired,
    TokenAuth,
)
from tokenward.tokens.dpop import DpopVerifier, access_token_hash
from tokenward.tokens.jws import parse_compact, payload_object

ACCESS_LIFETIME = 900.0


def claims(token: str) -> dict[str, object]:
    return payload_object(parse_compact(token))


def proof_claims(proof: str | None) -> dict[str, object]:
    assert proof is not None
    return payload_object(parse_compact(proof, embedded_jwk=True))


def service(server: AuthServer, key: DpopKey, client: httpx.Client) -> ClientCredentials:
    return ClientCredentials(
        server.issuer,
        "service",
        server.service_secret,
        scope="read",
        dpop=key,
        http=Http(client),
        clock=server.clock,
    )


def test_nonce_challenge_at_the_token_endpoint_costs_one_retry(
    auth_server: AuthServer, recorder: Recorder, as_client: httpx.Client
) -> None:
    key = DpopKey(clock=auth_server.clock)
    source = service(auth_server, key, as_client)
    tokens = source.fetch()
    assert tokens.token_type == "DPoP"
    assert claims(tokens.access_token)["cnf"] == {"jkt": key.thumbprint}
    token_calls = [e for e in recorder.exchanges if e.path == "/token"]
    assert [e.error for e in token_calls] == ["use_dpop_nonce", None]
    first, retry = (proof_claims(e.proof) for e in token_calls)
    assert "nonce" not in first
    assert retry["nonce"]
    assert retry["jti"] != first["jti"]  # a new proof, never a replayed one

    source.fetch()  # the nonce from the last answer is reused: no second challenge
    assert recorder.count("/token") == 3


def test_device_login_with_dpop_binds_and_refreshes(
    auth_server: AuthServer, recorder: Recorder, as_client: httpx.Client
) -> None:
    key = DpopKey(clock=auth_server.clock)
    user = DeviceUser(auth_server)
    source = DeviceCodeLogin(
        auth_server.issuer,
        "cli",
        scope="read",
        dpop=key,
        prompt=user.prompt,
        http=Http(as_client, sleep=user.sleep),
        clock=auth_server.clock,
    )
    tokens = source.login()
    assert tokens.token_type == "DPoP"
    assert tokens.dpop_key is key
    auth_server.clock.advance(ACCESS_LIFETIME)  # also past the nonce windows: a new challenge
    renewed = source.refresh(tokens)
    assert renewed.token_type == "DPoP"
    assert claims(renewed.access_token)["cnf"] == {"jkt": key.thumbprint}
    refreshes = [e for e in recorder.exchanges if e.grant_type == "refresh_token"]
    assert [e.error for e in refreshes] == ["use_dpop_nonce", None]
    assert all(e.proof for e in refreshes)  # the public client's refresh token is bound

    # A thief with the refresh token but another key gets nothing (RFC 9449 §5).
    thief = DeviceCodeLogin(
        auth_server.issuer, "cli", dpop=DpopKey(clock=auth_server.clock), http=Http(as_client)
    )
    with pytest.raises(LoginRequired) as caught:
        thief.refresh(replace(renewed, dpop_key=None))
    assert caught.value.error == "invalid_grant"


def test_resource_requests_carry_a_proof_with_ath(
    auth_server: AuthServer, as_client: httpx.Client
) -> None:
    key = DpopKey(clock=auth_server.clock)
    auth = TokenAuth(service(auth_server, key, as_client))
    api_recorder = Recorder()
    with api_recorder.client(auth=auth, base_url=auth_server.base) as api:
        api.get("/api/hello", params={"q": "1"})
        api.get("/api/hello")
    token = auth.token().access_token
    proofs = [e.proof for e in api_recorder.exchanges]
    assert all(e.authorization == f"DPoP {token}" for e in api_recorder.exchanges)
    assert proofs[0] != proofs[1]  # one fresh proof per request
    for proof in proofs:
        body = proof_claims(proof)
        assert body["ath"] == access_token_hash(token)
        assert body["htm"] == "GET"
        assert body["htu"] == f"{auth_server.base}/api/hello"  # no query (RFC 9449 §4.2)


@pytest.mark.anyio
async def test_proofs_verify_with_the_servers_own_checks(
    auth_server: AuthServer, recorder: Recorder
) -> None:
    async def first_use(_key: str, _until: float) -> bool:
        return True

    verifier = DpopVerifier(first_use, None, auth_server.clock)
    key = DpopKey(clock=auth_server.clock)
    async with recorder.async_client() as as_client:
        source = ClientCredentials(
            auth_server.issuer,
            "service",
            auth_server.service_secret,
            scope="read",
            dpop=key,
            http=Http(async_client=as_client),
            clock=auth_server.clock,
        )
        auth = TokenAuth(source)
        api_recorder = Recorder()
        async with api_recorder.async_client(auth=auth, base_url=auth_server.base) as api:
            await api.post("/api/hello", content=b"{}")
    token = (await auth.atoken()).access_token
    proof = await verifier.verify(
        api_recorder.exchanges[0].proof,
        method="POST",
        url=f"{auth_server.base}/api/hello",
        access_token=token,
    )
    assert proof.jkt == key.thumbprint


def test_dpop_life_at_the_protected_api(
    auth_server: AuthServer, recorder: Recorder, as_client: httpx.Client
) -> None:
    key = DpopKey(clock=auth_server.clock)
    auth = TokenAuth(service(auth_server, key, as_client))
    with httpx.Client(auth=auth, base_url=auth_server.base, timeout=10) as api:
        response = api.get("/api/hello")
        assert response.status_code == 200, response.headers.get("www-authenticate")
        assert response.json()["client_id"] == "service"
        auth_server.clock.advance(ACCESS_LIFETIME)  # renewed, bound to the same key again
        assert api.get("/api/hello").status_code == 200
    assert recorder.count("/token", "client_credentials") == 4  # two nonce challenges
    assert claims(auth.token().access_token)["cnf"] == {"jkt": key.thumbprint}
