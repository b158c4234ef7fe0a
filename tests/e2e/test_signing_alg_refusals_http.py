"""Issue 17, parts 4 and 6, over loopback: ML-DSA is refused under the FAPI 2.0 profile with the
reason in the error (registration, client assertions, DPoP proofs, an audience's algorithm), and
an algorithm without an active key is never swapped for another one (registration and issuance
fail closed with a clear error, no 5xx)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest

from tests.e2e.live import free_port, serve_in_thread
from tokenward.client import DpopKey
from tokenward.config import Settings
from tokenward.core.records import ClientRecord
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import Services, build_services, memory_stores
from tokenward.oauth.errors import InvalidTarget
from tokenward.oauth.issuance import AccessTokenIssuer
from tokenward.oauth.profiles import FAPI2, Profiles
from tokenward.services.clients import ClientAdmin
from tokenward.services.errors import AdminError
from tokenward.store.memory import MemoryKeyStore
from tokenward.tokens.grant import TokenGrant
from tokenward.tokens.jws import sign_compact
from tokenward.tokens.jwt_access import JwtAccessTokenStrategy
from tokenward.tokens.key_manager import KeyManager
from tokenward.tokens.keyring import KeyPolicy, Keyring
from tokenward.tokens.sealing import KeySealer, generate_master_key
from tokenward.tokens.signing_choice import SigningPolicy

FAPI_LIST = "not in FAPI 2.0's PS256/ES256/EdDSA list"
CALLBACK = "https://bank.example/callback"


def ring(alg: str) -> Keyring:
    made = Keyring(KeyPolicy(algorithm=alg), time.time)
    made.ensure_ready()
    return made


def jwks_of(*rings: Keyring) -> str:
    return json.dumps({"keys": [key for r in rings for key in r.jwks()["keys"]]})


@dataclass
class Live:
    base: str
    services: Services
    rings: dict[str, Keyring]
    secrets: dict[str, str]

    def assertion(self, client_id: str, alg: str) -> dict[str, str]:
        key = self.rings[client_id if alg == "ES256" else f"{client_id}/{alg}"].active()
        now = int(time.time())
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": self.base,
            "jti": secrets.token_urlsafe(16),
            "iat": now,
            "exp": now + 60,
        }
        header = {"alg": key.alg.name, "kid": key.kid, "typ": "JWT"}
        return {
            "client_id": client_id,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": sign_compact(header, json.dumps(claims).encode(), key.sign),
        }


async def _prepare(issuer: str) -> Live:
    settings = Settings(issuer=issuer, master_key=generate_master_key(), profile="fapi2")
    services = await build_services(settings, memory_stores())
    rings = {
        "bank": ring("ES256"),
        "old-pq": ring("ES256"),
        "old-pq/ML-DSA-65": ring("ML-DSA-65"),
        "keyless-at": ring("ES256"),
        "keyless-id": ring("ES256"),
    }
    await services.client_admin.create_client(
        "bank",
        grant_types=["client_credentials"],
        scope="read",
        redirect_uris=[],
        jwks=jwks_of(rings["bank"]),
    )
    # Registered before the deployment went fapi2 (a baseline registration service on the same
    # store): an ML-DSA key among its keys, and tokens pinned to algorithms with no key here.
    before = ClientAdmin(services.stores.clients, services.hasher, services.watermarks, time.time)
    await before.create_client(
        "old-pq",
        grant_types=["client_credentials", "authorization_code"],
        scope="openid read",
        redirect_uris=[CALLBACK],
        jwks=jwks_of(rings["old-pq"], rings["old-pq/ML-DSA-65"]),
        id_token_signed_response_alg="ES256",
    )
    # FAPI 2.0 allows PS256 and EdDSA, but this deployment holds no key for either.
    await before.create_client(
        "keyless-at",
        grant_types=["client_credentials"],
        scope="read",
        redirect_uris=[],
        jwks=jwks_of(rings["keyless-at"]),
        access_token_alg="PS256",
        id_token_signed_response_alg="ES256",
    )
    await before.create_client(
        "keyless-id",
        grant_types=["client_credentials"],
        scope="openid read",
        redirect_uris=[],
        jwks=jwks_of(rings["keyless-id"]),
        id_token_signed_response_alg="EdDSA",
    )
    return Live(issuer, services, rings, {})


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    port = free_port()
    prepared = asyncio.run(_prepare(f"http://127.0.0.1:{port}"))
    with serve_in_thread(server_app(prepared.services), port) as base:
        yield Live(base, prepared.services, prepared.rings, prepared.secrets)


# --- FAPI 2.0 refuses ML-DSA, and says why ------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"access_token_alg": "ML-DSA-65"},
        {"id_token_signed_response_alg": "ML-DSA-44"},
        {"jwks": jwks_of(ring("ML-DSA-87"))},
    ],
    ids=["access_token_alg", "id_token_alg", "jwks_key"],
)
def test_fapi2_registration_refuses_ml_dsa_naming_the_list(
    live: Live, options: dict[str, Any]
) -> None:
    options = {"jwks": jwks_of(ring("ES256")), **options}
    with pytest.raises(AdminError) as refused:
        asyncio.run(
            live.services.client_admin.create_client(
                f"pq-{secrets.token_hex(4)}",
                grant_types=["client_credentials"],
                scope="read",
                redirect_uris=[],
                **options,
            )
        )
    message = str(refused.value)
    assert FAPI_LIST in message
    assert "ML-DSA (RFC 9964) is not among them" in message


def test_an_ml_dsa_client_assertion_under_fapi2_is_refused_with_the_reason(live: Live) -> None:
    refused = httpx.post(
        f"{live.base}/token",
        data={"grant_type": "client_credentials", **live.assertion("old-pq", "ML-DSA-65")},
    )
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"
    assert FAPI_LIST in refused.json()["error_description"]
    assert "ML-DSA-65" in refused.json()["error_description"]


def test_an_ml_dsa_request_object_under_fapi2_is_refused_with_the_reason(live: Live) -> None:
    key = live.rings["old-pq/ML-DSA-65"].active()
    now = int(time.time())
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    claims = {
        "iss": "old-pq",
        "aud": live.base,
        "client_id": "old-pq",
        "response_type": "code",
        "redirect_uri": CALLBACK,
        "scope": "openid read",
        "state": "s-1",
        "nonce": "n-1",
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": secrets.token_urlsafe(16),
    }
    header = {"alg": key.alg.name, "kid": key.kid, "typ": "oauth-authz-req+jwt"}
    request = sign_compact(header, json.dumps(claims).encode(), key.sign)
    refused = httpx.post(
        f"{live.base}/par", data={"request": request, **live.assertion("old-pq", "ES256")}
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_request_object"
    assert FAPI_LIST in refused.json()["error_description"]


def token_with_proof(live: Live, key: DpopKey) -> httpx.Response:
    """A DPoP token request from `bank`, again with the server's nonce when it asks (§8)."""
    url = f"{live.base}/token"
    nonce: str | None = None
    for _ in range(2):
        response = httpx.post(
            url,
            data={"grant_type": "client_credentials", **live.assertion("bank", "ES256")},
            headers={"dpop": key.proof("POST", url, nonce=nonce)},
        )
        if response.status_code != 400 or response.json().get("error") != "use_dpop_nonce":
            return response
        nonce = response.headers["dpop-nonce"]
    return response


def test_an_ml_dsa_dpop_proof_under_fapi2_is_refused_with_the_reason(live: Live) -> None:
    refused = token_with_proof(live, DpopKey.generate("ML-DSA-65"))
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_dpop_proof"
    assert FAPI_LIST in refused.json()["error_description"]
    assert "ML-DSA-65" in refused.json()["error_description"]
    # The same client with an ES256 proof gets its DPoP-bound token.
    accepted = token_with_proof(live, DpopKey())
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["token_type"] == "DPoP"


def test_the_fapi2_setting_refuses_an_ml_dsa_audience() -> None:
    with pytest.raises(ValueError, match=FAPI_LIST):
        Settings(profile="fapi2", audience_signing_algs={"https://pq.example/api": "ML-DSA-65"})


@pytest.mark.anyio
async def test_a_fapi2_client_on_a_baseline_server_gets_no_ml_dsa_audience_token() -> None:
    """A per-client fapi2 profile on a server whose audience is mapped to ML-DSA-65: that
    audience's tokens are refused (invalid_target) with the reason, not signed ML-DSA."""
    keys = await KeyManager.load(
        MemoryKeyStore(),
        KeySealer(generate_master_key()),
        [KeyPolicy(algorithm="ES256"), KeyPolicy(algorithm="ML-DSA-65")],
        time.time,
        signing=SigningPolicy("ES256", {"https://pq.example/api": "ML-DSA-65"}),
    )
    issuer = AccessTokenIssuer(
        {"jwt": JwtAccessTokenStrategy(keys, "https://issuer.example")},
        algorithm_of=keys.signing.access_token_alg,
        profiles=Profiles(),
    )
    client = ClientRecord(
        "bank", "private_key_jwt", ("client_credentials",), frozenset({"read"}), time.time()
    )
    bank = replace(client, profile=FAPI2.name)
    with pytest.raises(InvalidTarget, match=FAPI_LIST):
        await issuer.issue(bank, TokenGrant("bank", "bank", ("https://pq.example/api",)))
    legacy = await issuer.issue(bank, TokenGrant("bank", "bank", ("https://legacy.example",)))
    assert legacy.value.count(".") == 2
    # A baseline client gets the ML-DSA-65 token its audience asks for.
    assert await issuer.issue(client, TokenGrant("app", "bank", ("https://pq.example/api",)))


# --- no key, no token: never another algorithm ------------------------------------------


@pytest.mark.parametrize(("client_id", "alg"), [("keyless-at", "PS256"), ("keyless-id", "EdDSA")])
def test_a_client_pinned_to_an_algorithm_without_a_key_is_refused_not_downgraded(
    live: Live, client_id: str, alg: str
) -> None:
    refused = httpx.post(
        f"{live.base}/token",
        data={"grant_type": "client_credentials", "scope": "read"}
        | live.assertion(client_id, "ES256"),
    )
    assert refused.status_code == 401  # invalid_client, RFC 6749 §5.2: never a 5xx
    body = refused.json()
    assert body["error"] == "invalid_client"
    assert f"no active {alg} signing key" in body["error_description"]
    assert "TOKENWARD_SIGNING_ALGS" in body["error_description"]
    assert "access_token" not in body


@pytest.mark.anyio
async def test_an_audience_algorithm_without_a_key_is_invalid_target() -> None:
    # A stored migration choice naming an algorithm whose keyring this node does not hold.
    keys = await KeyManager.load(
        MemoryKeyStore(),
        KeySealer(generate_master_key()),
        [KeyPolicy(algorithm="ES256")],
        time.time,
        signing=SigningPolicy("ES256", {"https://pq.example/api": "ML-DSA-87"}),
    )
    issuer = AccessTokenIssuer(
        {"jwt": JwtAccessTokenStrategy(keys, "https://issuer.example")},
        algorithm_of=keys.signing.access_token_alg,
    )
    app = ClientRecord(
        "app", "client_secret_basic", ("client_credentials",), frozenset({"read"}), time.time()
    )
    with pytest.raises(InvalidTarget, match="no active ML-DSA-87 signing key"):
        await issuer.issue(app, TokenGrant("app", "app", ("https://pq.example/api",)))


@pytest.mark.anyio
async def test_a_ps256_fapi2_deployment_defaults_id_tokens_to_ps256() -> None:
    """No ES256 key here: the default ID-token algorithm is one the deployment can sign."""
    settings = Settings(
        issuer="https://issuer.example",
        master_key=generate_master_key(),
        profile="fapi2",
        signing_alg="PS256",
    )
    services = await build_services(settings, memory_stores())
    created = await services.client_admin.create_client(
        "bank",
        grant_types=["client_credentials"],
        scope="openid read",
        redirect_uris=[],
        jwks=jwks_of(ring("ES256")),
    )
    assert created["id_token_signed_response_alg"] == "PS256"
