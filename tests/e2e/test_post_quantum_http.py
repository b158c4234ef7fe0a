"""Post-quantum tokens over real HTTP (RFC 9964): one server signing ML-DSA-44 by default, ES256
for a legacy API, ML-DSA-87 for a pinned client and ML-DSA-65 ID tokens for another, all at
once; jwcrypto judges every token through the published /jwks, and signs the client's
ML-DSA assertions and DPoP proofs the server must accept."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws
from jwcrypto import jwt as jwcrypto_jwt

from tests.e2e.conftest import CALLBACK, PASSWORD, Live
from tests.e2e.live import free_port, serve_in_thread
from tests.e2e.test_grants_http import code_flow
from tests.server.flows import Pkce
from tokenward.client.dpop import DpopKey
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import Services, build_services, open_stores
from tokenward.tokens.sealing import generate_master_key

LEGACY = "https://legacy.example/api"
PQC = "https://pqc.example/api"
ML_DSA = ["ML-DSA-44", "ML-DSA-65", "ML-DSA-87"]


async def _prepare(
    settings: Settings, assertion_key: jwcrypto_jwk.JWK
) -> tuple[Services, dict[str, str]]:
    stores = await open_stores(settings)
    services = await build_services(settings, stores)
    admin = services.client_admin
    secrets_of: dict[str, str] = {}
    extras: tuple[tuple[str, dict[str, Any]], ...] = (
        ("service", {}),
        ("pinned", {"access_token_alg": "ML-DSA-87"}),
    )
    for client_id, extra in extras:
        created = await admin.create_client(
            client_id,
            grant_types=["client_credentials"],
            scope="read",
            redirect_uris=[],
            audience=[f"{settings.issuer}/api", LEGACY, PQC],
            **extra,
        )
        secrets_of[client_id] = created["client_secret"]
    web = await admin.create_client(
        "web",
        grant_types=["authorization_code", "refresh_token"],
        scope="openid profile read",
        redirect_uris=[CALLBACK],
        id_token_signed_response_alg="ML-DSA-65",
    )
    secrets_of["web"] = web["client_secret"]
    await admin.create_client(
        "pkjwt",
        grant_types=["client_credentials"],
        scope="read",
        redirect_uris=[],
        jwks=json.dumps({"keys": [assertion_key.export_public(as_dict=True)]}),
    )
    await services.user_admin.create_user("alice", PASSWORD)
    registered = await services.stores.clients.get("web")
    assert registered is not None
    await services.stores.clients.put(replace(registered, post_logout_redirect_uris=(CALLBACK,)))
    await stores.aclose()
    return services, secrets_of


@pytest.fixture(scope="module")
def pq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Live, dict[str, str], Any]]:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    data_dir: Path = tmp_path_factory.mktemp("pq")
    settings = Settings(
        issuer=issuer,
        master_key=generate_master_key(),
        data_dir=data_dir,
        signing_alg="ML-DSA-44",
        signing_algs="ML-DSA-65,ML-DSA-87",
        audience_signing_algs={LEGACY: "ES256"},
    )
    assertion_key = jwcrypto_jwk.JWK.generate(kty="AKP", alg="ML-DSA-44", kid="pk-1")
    services, secrets_of = asyncio.run(_prepare(settings, assertion_key))
    try:
        with serve_in_thread(server_app(services), port) as base:
            yield (
                Live(base, services, secrets_of["service"], secrets_of["web"]),
                secrets_of,
                assertion_key,
            )
    finally:
        asyncio.run(services.stores.aclose())


def jwks_of(base: str) -> jwcrypto_jwk.JWKSet:
    return jwcrypto_jwk.JWKSet.from_json(httpx.get(f"{base}/jwks").text)


def judged(base: str, token: str) -> tuple[str, dict[str, Any]]:
    """jwcrypto verifies `token` with the key /jwks publishes under its kid: (alg, claims)."""
    parsed = jwcrypto_jws.JWS()
    parsed.deserialize(token)
    header = parsed.jose_header
    key = jwks_of(base).get_key(header["kid"])
    assert key is not None, "the kid is published in /jwks"
    parsed.verify(key, alg=header["alg"])
    return header["alg"], json.loads(parsed.payload)


def client_token(base: str, client: str, secret: str, **data: str) -> str:
    response = httpx.post(
        f"{base}/token", auth=(client, secret), data={"grant_type": "client_credentials", **data}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_each_audience_and_client_gets_its_algorithm(pq: Any) -> None:
    live, secrets_of, _ = pq
    base = live.base
    default = client_token(base, "service", secrets_of["service"], resource=f"{base}/api")
    legacy = client_token(base, "service", secrets_of["service"], resource=LEGACY)
    pinned = client_token(base, "pinned", secrets_of["pinned"], resource=LEGACY)
    assert judged(base, default)[0] == "ML-DSA-44"
    assert judged(base, legacy)[0] == "ES256"
    alg, claims = judged(base, pinned)
    assert alg == "ML-DSA-87"
    assert claims["aud"] == LEGACY
    assert len(pinned) > 6000  # what docs/post-quantum.md measures
    # Our own API validates every one of them (the demo API's audience is the default one).
    api = httpx.get(f"{base}/api/hello", headers={"authorization": f"Bearer {default}"})
    assert api.status_code == 200, api.text


def test_discovery_lists_what_is_supported(pq: Any) -> None:
    live, _, _ = pq
    metadata = httpx.get(f"{live.base}/.well-known/openid-configuration").json()
    for field in (
        "dpop_signing_alg_values_supported",
        "id_token_signing_alg_values_supported",
        "token_endpoint_auth_signing_alg_values_supported",
        "introspection_signing_alg_values_supported",
    ):
        assert set(ML_DSA) <= set(metadata[field]), field
    assert {"ES256", "RS256"} <= set(metadata["id_token_signing_alg_values_supported"])
    published = {key["alg"] for key in httpx.get(f"{live.base}/jwks").json()["keys"]}
    assert published == {"ES256", "RS256", *ML_DSA}


def test_id_tokens_in_the_clients_algorithm(pq: Any) -> None:
    live, _, _ = pq
    with httpx.Client() as http:
        tokens = code_flow(live, http, Pkce.new())
    alg, claims = judged(live.base, tokens["id_token"])
    assert alg == "ML-DSA-65"
    assert claims["aud"] == "web"
    # ML-DSA's at_hash: SHAKE256 with 64 bytes out, left half (OpenID connect issue #1125).
    digest = hashlib.shake_256(tokens["access_token"].encode("ascii")).digest(64)
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:32]).rstrip(b"=").decode()
    assert judged(live.base, tokens["access_token"])[0] == "ML-DSA-44"


def test_introspection_jwt_response_is_ml_dsa(pq: Any) -> None:
    live, secrets_of, _ = pq
    token = client_token(live.base, "service", secrets_of["service"], resource=LEGACY)
    response = httpx.post(
        f"{live.base}/introspect",
        auth=("service", secrets_of["service"]),
        data={"token": token},
        headers={"accept": "application/token-introspection+jwt"},
    )
    assert response.status_code == 200, response.text
    alg, claims = judged(live.base, response.text)
    assert alg == "ML-DSA-44"  # RFC 9701, signed with the deployment's algorithm
    assert claims["token_introspection"]["active"] is True


def test_private_key_jwt_with_an_ml_dsa_key_made_by_jwcrypto(pq: Any) -> None:
    live, _, assertion_key = pq
    now = int(time.time())
    assertion = jwcrypto_jwt.JWT(
        header={"alg": "ML-DSA-44", "kid": "pk-1"},
        claims={
            "iss": "pkjwt",
            "sub": "pkjwt",
            "aud": f"{live.base}/token",
            "jti": secrets.token_urlsafe(16),
            "iat": now,
            "exp": now + 60,
        },
    )
    assertion.make_signed_token(assertion_key)
    form = {
        "grant_type": "client_credentials",
        "client_id": "pkjwt",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion.serialize(),
    }
    response = httpx.post(f"{live.base}/token", data=form)
    assert response.status_code == 200, response.text
    replayed = httpx.post(f"{live.base}/token", data=form)
    assert replayed.status_code == 401  # the jti is single use, whatever the algorithm


@pytest.mark.parametrize("alg", ML_DSA)
def test_dpop_proofs_signed_with_ml_dsa(pq: Any, alg: str) -> None:
    live, secrets_of, _ = pq
    key = DpopKey.generate(alg)
    url = f"{live.base}/token"
    data = {"grant_type": "client_credentials", "resource": LEGACY}
    auth = ("service", secrets_of["service"])
    first = httpx.post(url, auth=auth, data=data, headers={"dpop": key.proof("POST", url)})
    assert first.status_code == 400
    nonce = first.headers["dpop-nonce"]
    proof = key.proof("POST", url, nonce=nonce)
    response = httpx.post(url, auth=auth, data=data, headers={"dpop": proof})
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    _alg, claims = judged(live.base, response.json()["access_token"])
    # The binding is jwcrypto's RFC 9964 thumbprint (alg, kty, pub) of the proof key.
    assert claims["cnf"]["jkt"] == jwcrypto_jwk.JWK(**key.jwk).thumbprint()
