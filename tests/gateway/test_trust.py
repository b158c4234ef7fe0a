"""Remote trust over real HTTP: discovery + JWKS from a live authorization server, and opaque
tokens through RFC 7662 introspection with its positive (≤ exp, ≤ max_ttl) and negative cache."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import AUDIENCE, ISSUER, FrozenClock
from tests.e2e.live import free_port
from tests.gateway.conftest import GatewayFactory, serve
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import Services, build_services, memory_stores
from tokenward.gateway.config import parse_config
from tokenward.gateway.trust import TrustError, discover, remote_trust
from tokenward.tokens.keyring import Keyring
from tokenward.tokens.sealing import generate_master_key

SECRET_ENV = "TW_GATEWAY_TEST_SECRET"
CONFIG = """
trust:
  issuer: ISSUER
  audience: ISSUER/api
  introspection: {{client_id: gateway, client_secret_env: TW_GATEWAY_TEST_SECRET,
                  max_ttl: 60, negative_ttl: 5}}
routes:
  - {{name: items, prefix: /items, upstreams: [{upstream}], auth: bearer, scopes: [read]}}
"""


@dataclass
class Issuer:
    base: str
    services: Services
    secrets: dict[str, str]

    def token(self, client_id: str) -> str:
        response = httpx.post(
            f"{self.base}/token",
            data={"grant_type": "client_credentials", "scope": "read"},
            auth=(client_id, self.secrets[client_id]),
        )
        assert response.status_code == 200, response.text
        value: str = response.json()["access_token"]
        return value


async def _prepare(issuer: str, clock: FrozenClock) -> tuple[Services, dict[str, str]]:
    settings = Settings(issuer=issuer, master_key=generate_master_key())
    services = await build_services(settings, memory_stores(clock), clock)
    secrets = {}
    for client_id, token_format in (
        ("jwt-svc", "jwt"),
        ("opaque-svc", "opaque"),
        ("gateway", "jwt"),
    ):
        created = await services.client_admin.create_client(
            client_id,
            grant_types=["client_credentials"],
            scope="read write",
            redirect_uris=[],
            token_format=token_format,
        )
        secrets[client_id] = created["client_secret"]
    return services, secrets


@pytest.fixture
def issuer(clock: FrozenClock) -> Iterator[Issuer]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    services, secrets = asyncio.run(_prepare(base, clock))
    with serve(server_app(services), port):
        yield Issuer(base, services, secrets)


@pytest.fixture
def remote(
    gateway: GatewayFactory,
    issuer: Issuer,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
    upstream_url: str,
) -> tuple[GatewayFactory, Issuer]:
    monkeypatch.setenv(SECRET_ENV, issuer.secrets["gateway"])
    text = CONFIG.replace("ISSUER", issuer.base)
    config = parse_config(text.format(upstream=upstream_url))
    setup = asyncio.run(remote_trust(config.trust, config, clock))

    def start() -> object:
        return gateway(text, validator=setup.validator, introspection=setup.introspection)

    return start, issuer  # type: ignore[return-value]


def test_jwt_from_a_remote_issuer_via_discovery_and_jwks(
    remote: tuple[GatewayFactory, Issuer],
) -> None:
    start, issuer = remote
    running = start()
    token = issuer.token("jwt-svc")
    response = running.http.get("/items", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.json()["headers"]["x-auth-client-id"] == ["jwt-svc"]
    assert running.gateway.introspection is not None
    assert running.gateway.introspection.calls == 0  # JWTs never need the issuer per request


def test_opaque_token_introspected_cached_and_rechecked_after_max_ttl(
    remote: tuple[GatewayFactory, Issuer], clock: FrozenClock
) -> None:
    start, issuer = remote
    running = start()
    resolver = running.gateway.introspection
    assert resolver is not None
    token = issuer.token("opaque-svc")
    assert token.startswith("twa_")
    headers = {"authorization": f"Bearer {token}"}
    for _ in range(3):
        response = running.http.get("/items", headers=headers)
        assert response.status_code == 200, response.text
    assert response.json()["headers"]["x-auth-subject"] == ["opaque-svc"]
    assert resolver.calls == 1
    revoked = httpx.post(
        f"{issuer.base}/revoke",
        data={"token": token},
        auth=("opaque-svc", issuer.secrets["opaque-svc"]),
    )
    assert revoked.status_code == 200
    # Within max_ttl the cached answer stands; past it the issuer is asked, and says inactive.
    assert running.http.get("/items", headers=headers).status_code == 200
    clock.advance(61)
    refused = running.http.get("/items", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["error_description"] == "the access token is not active"
    assert resolver.calls == 2


def test_unknown_opaque_token_is_negatively_cached(
    remote: tuple[GatewayFactory, Issuer], clock: FrozenClock
) -> None:
    start, _issuer = remote
    running = start()
    resolver = running.gateway.introspection
    assert resolver is not None
    headers = {"authorization": "Bearer twa_made-up-token-value"}
    for _ in range(3):
        assert running.http.get("/items", headers=headers).status_code == 401
    assert resolver.calls == 1
    clock.advance(6)
    assert running.http.get("/items", headers=headers).status_code == 401
    assert resolver.calls == 2


def test_introspection_outage_fails_closed_with_503(
    gateway: GatewayFactory,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
    upstream_url: str,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv(SECRET_ENV, "x" * 40)
    text = (
        CONFIG.replace("ISSUER", dead)
        .replace("client_id: gateway,", f"client_id: gateway, endpoint: {dead}/introspect,")
        .replace("  audience:", f"  jwks_uri: {dead}/jwks\n  audience:")
    )
    config = parse_config(text.format(upstream=upstream_url))
    setup = asyncio.run(remote_trust(config.trust, config, clock))
    running = gateway(text, validator=setup.validator, introspection=setup.introspection)
    response = running.http.get("/items", headers={"authorization": "Bearer twa_whatever"})
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.headers["retry-after"] == "1"


def test_discovery_refuses_an_issuer_mismatch(issuer: Issuer) -> None:
    with pytest.raises(TrustError, match="different issuer"):
        asyncio.run(discover(issuer.base + "/"))
    with pytest.raises(TrustError, match="cannot reach"):
        asyncio.run(discover(f"http://127.0.0.1:{free_port()}"))


def test_a_jwks_file_is_enough_to_trust_an_issuer(
    gateway: GatewayFactory,
    keyring: Keyring,
    mint: Callable[..., str],
    clock: FrozenClock,
    tmp_path: Path,
    upstream_url: str,
) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(keyring.jwks()))
    text = FILE_CONFIG.replace("JWKS", str(jwks))
    config = parse_config(text.format(upstream=upstream_url, issuer=ISSUER, audience=AUDIENCE))
    setup = asyncio.run(remote_trust(config.trust, config, clock))
    running = gateway(text, validator=setup.validator)
    response = running.http.get("/items", headers={"authorization": f"Bearer {mint()}"})
    assert response.status_code == 200
    jwks.write_text("{}")
    with pytest.raises(TrustError, match="not a usable JWKS"):
        asyncio.run(remote_trust(config.trust, config, clock))


FILE_CONFIG = """
trust: {{issuer: {issuer}, audience: {audience}, jwks_file: JWKS}}
routes:
  - {{name: items, prefix: /items, upstreams: [{upstream}], auth: bearer}}
"""
