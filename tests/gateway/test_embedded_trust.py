"""Embedded mounting: the gateway beside a running authorization server in one process
(`embedded_trust(services, config)`) believes the server's own revocation mirror, the one the
server's lifespan keeps fed: a revocation at the server's /revoke is refused at once, one
written by another process (`tokenward revoke`) as soon as the server's feed reads the log."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from tests.e2e.live import free_port
from tests.gateway.conftest import serve
from tests.gateway.processes import cli, refused_within
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.gateway import embedded_trust
from tokenward.deploy.wiring import Services, build_services, open_stores
from tokenward.gateway.app import Gateway
from tokenward.gateway.config import parse_config
from tokenward.gateway.startup import Lifespan, StartupFailed
from tokenward.tokens.sealing import generate_master_key

CONFIG = """
trust: {{issuer: "{issuer}", audience: "{issuer}/api"}}
routes:
  - {{name: api, prefix: /api, upstreams: ["{upstream}"], auth: bearer, scopes: [read]}}
"""


@dataclass
class Mounted:
    base: str
    services: Services
    gateway: Gateway
    settings: Settings
    secret: str


class Beside:
    """The server and the gateway in one ASGI app: /api goes to the gateway, the rest to the
    server; both lifespans run (the gateway's after the server's, as an operator mounts it)."""

    def __init__(self, server: Any, gateway: Gateway) -> None:
        self.server, self.gateway = server, gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["path"].startswith("/api"):
            await self.gateway(scope, receive, send)
        else:
            await self.server(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        lives = [Lifespan(self.server), Lifespan(self.gateway)]
        await receive()
        try:
            for life in lives:
                await life.startup()
        except StartupFailed as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()
        for life in reversed(lives):
            await life.shutdown()
        await send({"type": "lifespan.shutdown.complete"})


async def _prepare(settings: Settings) -> tuple[Services, str]:
    stores = await open_stores(settings)
    services = await build_services(settings, stores)
    created = await services.client_admin.create_client(
        "svc", grant_types=["client_credentials"], scope="read", redirect_uris=[]
    )
    # Pooled connections belong to this event loop; the server's loop opens its own.
    await stores.aclose()
    return services, str(created["client_secret"])


@pytest.fixture(scope="module")
def mounted(tmp_path_factory: pytest.TempPathFactory, upstream_url: str) -> Iterator[Mounted]:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    data_dir = tmp_path_factory.mktemp("embedded")
    settings = Settings(issuer=issuer, master_key=generate_master_key(), data_dir=data_dir)
    services, secret = asyncio.run(_prepare(settings))
    config = parse_config(CONFIG.format(issuer=issuer, upstream=upstream_url), "embedded.yaml")
    gateway = Gateway(config, embedded_trust(services, config).validator, audit=None)
    try:
        with serve(Beside(server_app(services), gateway), port) as base:
            yield Mounted(base, services, gateway, settings, secret)
    finally:
        # The server thread's pooled SQL connections outlive its loop: close them here, or the
        # garbage collector warns about them during whichever test runs next.
        asyncio.run(services.stores.aclose())


def _token(mounted: Mounted) -> str:
    response = httpx.post(
        f"{mounted.base}/token",
        data={"grant_type": "client_credentials"},
        auth=("svc", mounted.secret),
    )
    assert response.status_code == 200, response.text
    value: str = response.json()["access_token"]
    return value


def test_the_gateway_believes_the_servers_own_mirror(mounted: Mounted) -> None:
    validator = mounted.gateway.validator
    assert validator is not None
    assert validator.revocations is mounted.services.validator.revocations


def test_revoked_at_the_server_is_refused_at_once(mounted: Mounted) -> None:
    bearer = _token(mounted)
    api = f"{mounted.base}/api/x"
    assert httpx.get(api, headers={"authorization": f"Bearer {bearer}"}).status_code == 200
    revoked = httpx.post(
        f"{mounted.base}/revoke", data={"token": bearer}, auth=("svc", mounted.secret)
    )
    assert revoked.status_code == 200
    # Applied to the shared mirror before /revoke answered: no wait at all.
    assert httpx.get(api, headers={"authorization": f"Bearer {bearer}"}).status_code == 401


def test_revoked_by_another_process_is_refused_through_the_servers_feed(
    mounted: Mounted, tmp_path: Path
) -> None:
    bearer = _token(mounted)
    api = f"{mounted.base}/api/x"
    assert httpx.get(api, headers={"authorization": f"Bearer {bearer}"}).status_code == 200
    master_key = mounted.settings.master_key
    assert master_key is not None
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")},
        "TOKENWARD_MASTER_KEY": master_key.get_secret_value(),
        "TOKENWARD_ISSUER": mounted.settings.issuer,
    }
    cli(mounted.settings.data_dir, env, "revoke", "--token", bearer)
    assert refused_within(api, bearer, 3.0) < 3.0
