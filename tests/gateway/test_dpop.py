"""`auth: dpop` routes (RFC 9449 §7) with tokens from a live authorization server over loopback:
a bound token with a fresh proof passes; a stolen token, a replayed or missing proof and Bearer
use of a bound token are refused with the DPoP challenge; server nonces; `public_url` as htu."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import FrozenClock
from tests.e2e.live import free_port
from tests.gateway.conftest import GatewayFactory, Running, serve
from tokenward.client.dpop import DpopKey
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import Services, build_services, memory_stores
from tokenward.gateway.config import parse_config
from tokenward.gateway.trust import remote_trust
from tokenward.tokens.sealing import generate_master_key

NONCE_ENV = "TW_GATEWAY_TEST_DPOP_NONCE"
CONFIG = """
trust: {{issuer: ISSUER, audience: ISSUER/api}}
EXTRA
routes:
  - {{name: bound, prefix: /bound, upstreams: [{upstream}], auth: dpop, scopes: [read]}}
  - {{name: items, prefix: /items, upstreams: [{upstream}], auth: bearer, scopes: [read]}}
  - {{name: open, prefix: /open, upstreams: [{upstream}], auth: none}}
"""


@dataclass
class Issuer:
    base: str
    services: Services
    secret: str
    clock: FrozenClock

    def key(self) -> DpopKey:
        return DpopKey(clock=self.clock)

    def dpop_token(self, key: DpopKey) -> str:
        """client_credentials with a proof; one retry on use_dpop_nonce (RFC 9449 §8)."""
        url = f"{self.base}/token"
        data = {"grant_type": "client_credentials", "scope": "read"}
        auth = ("svc", self.secret)
        response = httpx.post(url, data=data, auth=auth, headers={"dpop": key.proof("POST", url)})
        if response.status_code == 400 and response.json()["error"] == "use_dpop_nonce":
            nonce = response.headers["dpop-nonce"]
            proof = key.proof("POST", url, nonce=nonce)
            response = httpx.post(url, data=data, auth=auth, headers={"dpop": proof})
        assert response.status_code == 200, response.text
        assert response.json()["token_type"] == "DPoP"
        value: str = response.json()["access_token"]
        return value


async def _prepare(issuer: str, clock: FrozenClock) -> tuple[Services, str]:
    settings = Settings(issuer=issuer, master_key=generate_master_key())
    services = await build_services(settings, memory_stores(clock), clock)
    created = await services.client_admin.create_client(
        "svc", grant_types=["client_credentials"], scope="read", redirect_uris=[]
    )
    return services, created["client_secret"]


@pytest.fixture
def issuer(clock: FrozenClock) -> Iterator[Issuer]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    services, secret = asyncio.run(_prepare(base, clock))
    with serve(server_app(services), port):
        yield Issuer(base, services, secret, clock)


Start = Callable[..., Running]


@pytest.fixture
def start(gateway: GatewayFactory, issuer: Issuer, clock: FrozenClock, upstream_url: str) -> Start:
    def run(extra: str = "") -> Running:
        text = CONFIG.replace("EXTRA", extra).replace("ISSUER", issuer.base)
        config = parse_config(text.format(upstream=upstream_url))
        setup = asyncio.run(remote_trust(config.trust, config, clock))
        return gateway(text, validator=setup.validator)

    return run


def call(
    running: Running, key: DpopKey, token: str, path: str = "/bound/x", **options: str
) -> httpx.Response:
    proof = key.proof("GET", running.base + path, access_token=token, **options)
    headers = {"authorization": f"DPoP {token}", "dpop": proof}
    return running.http.get(path, headers=headers)


def test_bound_token_with_a_fresh_proof_passes(start: Start, issuer: Issuer) -> None:
    running = start()
    key = issuer.key()
    token = issuer.dpop_token(key)
    for _ in range(2):  # the second request hits the validator's cache, with its own proof
        response = call(running, key, token)
        assert response.status_code == 200, response.text
        seen = response.json()["headers"]
        assert seen["x-auth-client-id"] == ["svc"]
        assert "dpop" not in seen  # the proof is consumed here, as the token is
        assert "authorization" not in seen
    assert running.last_audit()["reason"] == "ok"


@pytest.mark.parametrize("alg", ["ML-DSA-44", "ML-DSA-87"])
def test_ml_dsa_proofs_pass_and_bind_like_any_other(start: Start, issuer: Issuer, alg: str) -> None:
    """RFC 9964 proof keys: ~5.9 KB (44) to ~11 KB (87) proofs beside the token, through the
    gateway's head limits; bound by the AKP thumbprint, so another ML-DSA key is refused."""
    running = start()
    key = DpopKey.generate(alg, clock=issuer.clock)
    token = issuer.dpop_token(key)
    response = call(running, key, token)
    assert response.status_code == 200, response.text
    thief = DpopKey.generate(alg, clock=issuer.clock)
    _refused(call(running, thief, token), "invalid_dpop_proof")


def _refused(response: httpx.Response, error: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == error
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("DPoP ")
    assert 'algs="ES256 ES384 ES512 EdDSA RS256 PS256 ML-DSA-44 ML-DSA-65 ML-DSA-87"' in challenge
    assert f'error="{error}"' in challenge


def test_stolen_token_with_another_key_is_refused(start: Start, issuer: Issuer) -> None:
    running = start()
    token = issuer.dpop_token(issuer.key())
    response = call(running, issuer.key(), token)  # the thief signs with a key of their own
    _refused(response, "invalid_dpop_proof")
    assert "not signed by the key" in response.json()["error_description"]
    assert running.last_audit()["reason"] == "invalid_dpop_proof"


def test_replayed_proof_is_refused(start: Start, issuer: Issuer) -> None:
    running = start()
    key = issuer.key()
    token = issuer.dpop_token(key)
    proof = key.proof("GET", running.base + "/bound/x", access_token=token)
    headers = {"authorization": f"DPoP {token}", "dpop": proof}
    assert running.http.get("/bound/x", headers=headers).status_code == 200
    replay = running.http.get("/bound/x", headers=headers)
    _refused(replay, "invalid_dpop_proof")
    assert "already used" in replay.json()["error_description"]


def test_missing_proof_and_proof_for_another_request_are_refused(
    start: Start, issuer: Issuer
) -> None:
    running = start()
    key = issuer.key()
    token = issuer.dpop_token(key)
    missing = running.http.get("/bound/x", headers={"authorization": f"DPoP {token}"})
    _refused(missing, "invalid_dpop_proof")
    other_url = key.proof("GET", running.base + "/bound/y", access_token=token)
    response = running.http.get(
        "/bound/x", headers={"authorization": f"DPoP {token}", "dpop": other_url}
    )
    _refused(response, "invalid_dpop_proof")
    assert "htu" in response.json()["error_description"]
    no_ath = key.proof("GET", running.base + "/bound/x")
    response = running.http.get(
        "/bound/x", headers={"authorization": f"DPoP {token}", "dpop": no_ath}
    )
    _refused(response, "invalid_dpop_proof")
    two = running.http.get(
        "/bound/x",
        headers=[
            ("authorization", f"DPoP {token}"),
            ("dpop", key.proof("GET", running.base + "/bound/x", access_token=token)),
            ("dpop", key.proof("GET", running.base + "/bound/x", access_token=token)),
        ],
    )
    _refused(two, "invalid_dpop_proof")


def test_bearer_use_of_a_bound_token_is_refused_on_both_route_kinds(
    start: Start, issuer: Issuer
) -> None:
    running = start()
    key = issuer.key()
    token = issuer.dpop_token(key)
    proof = key.proof("GET", running.base + "/bound/x", access_token=token)
    on_dpop = running.http.get(
        "/bound/x", headers={"authorization": f"Bearer {token}", "dpop": proof}
    )
    _refused(on_dpop, "invalid_token")
    on_bearer = running.http.get("/items/x", headers={"authorization": f"Bearer {token}"})
    assert on_bearer.status_code == 401
    assert on_bearer.json()["error"] == "invalid_token"
    assert "DPoP-bound" in on_bearer.json()["error_description"]
    assert on_bearer.headers["www-authenticate"].startswith("Bearer ")


def test_no_credentials_gets_the_dpop_challenge(start: Start) -> None:
    running = start()
    response = running.http.get("/bound/x")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('DPoP realm="tokenward-gateway"')
    assert "algs=" in response.headers["www-authenticate"]
    assert running.last_audit()["reason"] == "missing_token"


def test_dpop_header_passes_through_on_routes_that_do_not_consume_it(start: Start) -> None:
    running = start()
    response = running.http.get("/open/x", headers={"dpop": "a.b.c"})
    assert response.json()["headers"]["dpop"] == ["a.b.c"]


def test_server_nonce_challenge_then_success(
    start: Start, issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(NONCE_ENV, "a gateway nonce secret of some length")
    running = start(f"dpop: {{{{nonce_secret_env: {NONCE_ENV}, algorithms: [ES256]}}}}")
    key = issuer.key()
    token = issuer.dpop_token(key)
    first = call(running, key, token)
    _refused_nonce = first.status_code == 401 and first.json()["error"] == "use_dpop_nonce"
    assert _refused_nonce, first.text
    assert first.headers["www-authenticate"].startswith("DPoP ")
    assert 'algs="ES256"' in first.headers["www-authenticate"]
    nonce = first.headers["dpop-nonce"]
    assert call(running, key, token, nonce=nonce).status_code == 200


def test_public_url_is_the_htu(start: Start, issuer: Issuer) -> None:
    running = start("public_url: https://api.example/")
    key = issuer.key()
    token = issuer.dpop_token(key)
    proof = key.proof("GET", "https://API.example:443/bound/x?q=1", access_token=token)
    headers = {"authorization": f"DPoP {token}", "dpop": proof}
    assert running.http.get("/bound/x?q=2", headers=headers).status_code == 200
    # A proof for the address the gateway happens to listen on is not for its public URL.
    _refused(call(running, key, token), "invalid_dpop_proof")


def test_htu_names_the_resolved_path(start: Start, issuer: Issuer) -> None:
    """The proof names the path the upstream is sent (gateway/paths.py), whatever dot
    segments the request line held."""
    running = start()
    key = issuer.key()
    token = issuer.dpop_token(key)
    proof = key.proof("GET", running.base + "/bound/x", access_token=token)
    response = running.http.get(
        "/",
        headers={"authorization": f"DPoP {token}", "dpop": proof},
        extensions={"target": b"/bound/a/../x"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["raw_path"] == "/bound/x"
