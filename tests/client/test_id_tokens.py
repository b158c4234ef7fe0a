"""The SDK verifies every ID token it receives (OIDC Core §3.1.3.7): signed with a key of the
issuer's JWKS and the algorithm pinned to that key, for us, fresh, with our sign-in's nonce and
a matching at_hash. Against a real server on loopback, with an ML-DSA-65 and an ES256 client."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.client.conftest import PASSWORD, AuthServer, ShiftedClock
from tests.client.test_loopback import browser
from tests.e2e.live import free_port, serve_in_thread
from tokenward.client import AuthorizationCodePKCE, Discovery, Http, IdTokenError, TokenSet
from tokenward.client.id_tokens import IdTokenVerifier
from tokenward.client.jwks import IssuerKeys
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import Services, build_services, memory_stores
from tokenward.tokens.id_token import IdTokenClaims, IdTokenSigner, token_hash
from tokenward.tokens.jws import sign_compact
from tokenward.tokens.sealing import generate_master_key

CLIENTS = {"pq-desktop": "ML-DSA-65", "ec-desktop": "ES256"}


@dataclass
class Deployment:
    server: AuthServer
    ports: dict[str, int]


async def _prepare(issuer: str, clock: ShiftedClock, ports: dict[str, int]) -> Services:
    settings = Settings(
        issuer=issuer,
        master_key=generate_master_key(),
        signing_algs="ML-DSA-65",
        revocation_max_staleness=1e9,
    )
    services = await build_services(settings, memory_stores(clock), clock)
    for client_id, alg in CLIENTS.items():
        await services.client_admin.create_client(
            client_id,
            grant_types=["authorization_code", "refresh_token"],
            scope="openid read",
            redirect_uris=[f"http://127.0.0.1:{ports[client_id]}/callback"],
            public=True,
            id_token_signed_response_alg=alg,
        )
    await services.user_admin.create_user("alice", PASSWORD)
    return services


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    clock = ShiftedClock()
    port = free_port()
    ports = {client_id: free_port() for client_id in CLIENTS}
    services = asyncio.run(_prepare(f"http://127.0.0.1:{port}", clock, ports))
    with serve_in_thread(server_app(services), port) as base:
        yield Deployment(AuthServer(base, services, clock, "", 0), ports)


def desktop(
    deployment: Deployment, client_id: str, open_browser: Callable[[str], object]
) -> AuthorizationCodePKCE:
    return AuthorizationCodePKCE(
        deployment.server.issuer,
        client_id,
        scope="openid read",
        open_browser=open_browser,
        port=deployment.ports[client_id],
        timeout=10,
        clock=deployment.server.clock,
    )


def header(token: str) -> dict[str, object]:
    segment = token.split(".", maxsplit=1)[0]
    decoded: dict[str, object] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return decoded


@pytest.mark.parametrize(("client_id", "alg"), sorted(CLIENTS.items()))
def test_a_sign_in_yields_verified_id_token_claims(
    deployment: Deployment, client_id: str, alg: str
) -> None:
    sent: dict[str, str] = {}

    def open_url(url: str) -> None:
        sent.update((k, v[0]) for k, v in parse_qs(urlsplit(url).query).items())
        browser(deployment.server)(url)

    with desktop(deployment, client_id, open_url) as source:
        tokens = source.login()
        assert tokens.id_token is not None
        assert header(tokens.id_token)["alg"] == alg
        claims = tokens.id_token_claims
        assert claims is not None
        assert claims["iss"] == deployment.server.issuer
        assert claims["aud"] == client_id
        assert claims["nonce"] == sent["nonce"]
        assert len(sent["nonce"]) >= 43  # 256 bits
        # Checked by the SDK: SHA-256 for ES256, SHAKE256 (64 bytes) for ML-DSA.
        assert "at_hash" in claims
        renewed = source.refresh(tokens)
    assert renewed.id_token_claims is not None
    assert renewed.id_token_claims["sub"] == claims["sub"]


def test_a_sign_in_whose_id_token_has_another_nonce_is_refused(deployment: Deployment) -> None:
    def swap_nonce(url: str) -> None:
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        query["nonce"] = "a-nonce-an-attacker-chose-for-a-replayed-token"
        browser(deployment.server)(
            f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}"
        )

    with (
        desktop(deployment, "pq-desktop", swap_nonce) as source,
        pytest.raises(IdTokenError, match="nonce"),
    ):
        source.login()


# --- the verifier on tokens signed by the server's own keys, then altered ----------------------


def sign(deployment: Deployment, alg: str, **overrides: object) -> str:
    services = deployment.server.services
    signer = IdTokenSigner(
        services.keys.keyrings, deployment.server.issuer, deployment.server.clock
    )
    claims = IdTokenClaims(
        subject="alice",
        client_id=str(overrides.pop("client_id", "pq-desktop")),
        auth_time=int(time.time()),
        nonce="n-0S6_WzA2Mj",
        extra=overrides or None,
    )
    return signer.sign(claims, alg, access_token="the-access-token")


def sign_claims(deployment: Deployment, alg: str, claims: dict[str, object]) -> str:
    key = deployment.server.services.keys.keyrings[alg].active()
    now = int(deployment.server.clock())
    payload = {"iss": deployment.server.issuer, "sub": "alice", "iat": now, "exp": now + 60}
    header = {"alg": alg, "kid": key.kid, "typ": "JWT"}
    return sign_compact(header, json.dumps({**payload, **claims}).encode(), key.sign)


def verify(deployment: Deployment, token: str, **options: object) -> dict[str, object]:
    verifier = IdTokenVerifier(
        deployment.server.issuer,
        "pq-desktop",
        keys=IssuerKeys(),
        clock=deployment.server.clock,
    )
    http = Http()
    try:
        metadata = http.run(Discovery(deployment.server.issuer).flow())
        return http.run(verifier.flow(token, metadata, **options))  # type: ignore[arg-type]
    finally:
        http.close()


def segments(token: str) -> list[str]:
    return token.split(".")


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", ["ML-DSA-65", "ES256", "RS256"])
def test_a_genuine_token_verifies(deployment: Deployment, alg: str) -> None:
    claims = verify(
        deployment, sign(deployment, alg), nonce="n-0S6_WzA2Mj", access_token="the-access-token"
    )
    assert claims["sub"] == "alice"


def test_another_audience_is_refused(deployment: Deployment) -> None:
    with pytest.raises(IdTokenError, match="aud"):
        verify(deployment, sign(deployment, "ML-DSA-65", client_id="ec-desktop"))


def test_several_audiences_need_azp_naming_us(deployment: Deployment) -> None:
    both = ["pq-desktop", "api"]
    with pytest.raises(IdTokenError, match="azp"):
        verify(deployment, sign_claims(deployment, "ES256", {"aud": both}))
    with pytest.raises(IdTokenError, match="azp"):
        verify(deployment, sign_claims(deployment, "ES256", {"aud": both, "azp": "api"}))
    token = sign_claims(deployment, "ML-DSA-65", {"aud": both, "azp": "pq-desktop"})
    assert verify(deployment, token)["azp"] == "pq-desktop"


def test_a_wrong_nonce_is_refused(deployment: Deployment) -> None:
    with pytest.raises(IdTokenError, match="nonce"):
        verify(deployment, sign(deployment, "ML-DSA-65"), nonce="another-sign-in")


@pytest.mark.parametrize("alg", ["ML-DSA-65", "ES256"])
def test_a_tampered_signature_is_refused(deployment: Deployment, alg: str) -> None:
    head, payload, signature = segments(sign(deployment, alg))
    flipped = ("B" if signature[10] == "A" else "A").join((signature[:10], signature[11:]))
    with pytest.raises(IdTokenError, match="does not verify"):
        verify(deployment, f"{head}.{payload}.{flipped}")


def test_a_tampered_payload_is_refused(deployment: Deployment) -> None:
    head, _payload, signature = segments(sign(deployment, "ML-DSA-65"))
    forged = b64({"iss": deployment.server.issuer, "sub": "mallory", "aud": "pq-desktop"})
    with pytest.raises(IdTokenError, match="does not verify"):
        verify(deployment, f"{head}.{forged}.{signature}")


@pytest.mark.parametrize(("signed", "claimed"), [("ES256", "ML-DSA-65"), ("ML-DSA-65", "ES256")])
def test_an_alg_other_than_the_keys_is_refused(
    deployment: Deployment, signed: str, claimed: str
) -> None:
    head, payload, signature = segments(sign(deployment, signed))
    relabelled = b64({**header(f"{head}.."), "alg": claimed})
    with pytest.raises(IdTokenError, match="alg does not match"):
        verify(deployment, f"{relabelled}.{payload}.{signature}")


def test_an_expired_token_is_refused(deployment: Deployment) -> None:
    token = sign(deployment, "ES256")
    verifier = IdTokenVerifier(
        deployment.server.issuer,
        "pq-desktop",
        clock=lambda: deployment.server.clock() + 3600 + 61,  # lifetime plus leeway
    )
    http = Http()
    try:
        metadata = http.run(Discovery(deployment.server.issuer).flow())
        with pytest.raises(IdTokenError, match="expired"):
            http.run(verifier.flow(token, metadata))
    finally:
        http.close()


def test_at_hash_is_checked_where_oidc_defines_it(deployment: Deployment) -> None:
    with pytest.raises(IdTokenError, match="at_hash does not match"):
        verify(deployment, sign(deployment, "ES256"), access_token="another-access-token")


def test_an_ml_dsa_at_hash_is_shake256_not_sha256(deployment: Deployment) -> None:
    # OpenID connect issue #1125: SHAKE256 (64 bytes out) for ML-DSA; a SHA-256 one is wrong.
    sha256 = token_hash("the-access-token", "ES256")
    wrong = sign_claims(deployment, "ML-DSA-65", {"aud": "pq-desktop", "at_hash": sha256})
    with pytest.raises(IdTokenError, match="at_hash does not match"):
        verify(deployment, wrong, access_token="the-access-token")
    shake = token_hash("the-access-token", "ML-DSA-65")
    right = sign_claims(deployment, "ML-DSA-65", {"aud": "pq-desktop", "at_hash": shake})
    assert verify(deployment, right, access_token="the-access-token")["at_hash"] == shake


def test_token_hash_matches_oidc_token_hash_vectors() -> None:
    # panva/oidc-token-hash test/generate.js (5.2.0): the same value for all three ML-DSA sets.
    value = "YmJiZTAwYmYtMzgyOC00NzhkLTkyOTItNjJjNDM3MGYzOWIy9sFhvH8K_x8UIHj1osisS57f5DduL"
    for alg in ("ML-DSA-44", "ML-DSA-65", "ML-DSA-87"):
        assert token_hash(value, alg) == "sB_U72jyb0WgtX8TsVoqJnm6CD295W9gfSDRxkilB3I"


def test_an_unknown_kid_refetches_once_then_fails(deployment: Deployment) -> None:
    head, payload, signature = segments(sign(deployment, "ES256"))
    unknown = b64({**header(f"{head}.."), "kid": "no-such-key"})
    with pytest.raises(IdTokenError, match="kid"):
        verify(deployment, f"{unknown}.{payload}.{signature}")


def test_claims_survive_a_store(deployment: Deployment) -> None:
    tokens = TokenSet("at", "Bearer", None, id_token="x.y.z", id_token_claims={"sub": "alice"})
    assert TokenSet.from_json(tokens.to_json(b"k" * 32), b"k" * 32).id_token_claims == {
        "sub": "alice"
    }
