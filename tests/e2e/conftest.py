"""The authorization server over real HTTP on loopback, with memory stores and real time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tests.e2e.live import free_port, serve_in_thread
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import Services, build_services, memory_stores, open_stores
from tokenward.tokens.sealing import generate_master_key

CALLBACK = "http://127.0.0.1:9/callback"  # never contacted: the test reads the redirect itself
PASSWORD = "correct horse battery"


@dataclass
class Live:
    base: str
    services: Services
    service_secret: str
    web_secret: str


async def _prepare(issuer: str, backend: str, data_dir: Path) -> tuple[Services, str, str]:
    settings = Settings(issuer=issuer, master_key=generate_master_key(), data_dir=data_dir)
    stores = memory_stores() if backend == "memory" else await open_stores(settings)
    services = await build_services(settings, stores)
    service = await services.client_admin.create_client(
        "service",
        grant_types=["client_credentials"],
        scope="read write",
        redirect_uris=[],
    )
    web = await services.client_admin.create_client(
        "web",
        grant_types=["authorization_code", "refresh_token"],
        scope="openid profile email read",
        redirect_uris=[CALLBACK],
    )
    registered = await services.stores.clients.get("web")
    assert registered is not None
    await services.stores.clients.put(replace(registered, post_logout_redirect_uris=(CALLBACK,)))
    await services.client_admin.create_client(
        "tv",
        grant_types=["urn:ietf:params:oauth:grant-type:device_code"],
        scope="openid read",
        redirect_uris=[],
        public=True,
    )
    await services.user_admin.create_user("alice", PASSWORD)
    # Pooled SQL connections belong to this event loop; the server thread opens its own.
    await stores.aclose()
    return services, service["client_secret"], web["client_secret"]


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    data_dir = tmp_path_factory.mktemp("tokenward")
    services, service_secret, web_secret = asyncio.run(_prepare(issuer, request.param, data_dir))
    try:
        with serve_in_thread(server_app(services), port) as base:
            yield Live(base, services, service_secret, web_secret)
    finally:
        # The server thread's pooled SQL connections outlive its loop: close them here, or the
        # garbage collector warns about them during whichever test runs next.
        asyncio.run(services.stores.aclose())
