"""An authorization server on memory stores and a frozen clock, reached through ASGI; and the
same server on SQLite or PostgreSQL (`sql_server`) for what only a real database can race."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from tests.conftest import FrozenClock
from tests.server.flows import REDIRECT_URI
from tests.store.conftest import PG_URL, SQL, postgres_schema
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import Services, StoreSet, build_services, memory_stores, open_stores
from tokenward.tokens.sealing import generate_master_key

ISSUER = "https://as.example"


@dataclass
class Server:
    services: Services
    http: httpx.AsyncClient
    secret: str  # of the confidential client "service"
    web_secret: str  # of the confidential browser client "web"

    async def token(self, **params: str) -> httpx.Response:
        data = {"grant_type": "client_credentials", **params}
        return await self.http.post("/token", data=data, auth=("service", self.secret))


@asynccontextmanager
async def running_server(
    settings: Settings, stores: StoreSet, clock: FrozenClock
) -> AsyncIterator[Server]:
    """The server with its test clients ("service", "web", "tv") and the user alice."""
    services = await build_services(settings, stores, clock)
    created = await services.client_admin.create_client(
        "service",
        grant_types=["client_credentials"],
        scope="read write",
        redirect_uris=[],
    )
    web = await services.client_admin.create_client(
        "web",
        grant_types=["authorization_code", "refresh_token"],
        scope="openid profile email read write",
        redirect_uris=[REDIRECT_URI],
    )
    registered = await services.stores.clients.get("web")
    assert registered is not None
    await services.stores.clients.put(
        replace(registered, post_logout_redirect_uris=("https://app.example/bye",), name="Web App")
    )
    await services.client_admin.create_client(
        "tv",
        grant_types=["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
        scope="openid read",
        redirect_uris=[],
        public=True,
    )
    await services.user_admin.create_user("alice", "correct horse battery")
    transport = httpx.ASGITransport(app=server_app(services))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        yield Server(services, http, created["client_secret"], web["client_secret"])


@pytest.fixture
async def server(clock: FrozenClock) -> AsyncIterator[Server]:
    settings = Settings(issuer=ISSUER, master_key=generate_master_key())
    async with running_server(settings, memory_stores(clock), clock) as running:
        yield running


@pytest.fixture(params=SQL)
async def sql_server(
    request: pytest.FixtureRequest, clock: FrozenClock, tmp_path: Path
) -> AsyncIterator[Server]:
    """The server on the durable stores: SQLite in tmp_path, or a private PostgreSQL schema."""
    settings = Settings(issuer=ISSUER, master_key=generate_master_key(), data_dir=tmp_path)
    async with AsyncExitStack() as stack:
        if request.param == "postgres":
            schema = await stack.enter_async_context(postgres_schema())
            settings = settings.model_copy(
                update={"database_url": PG_URL, "database_schema": schema}
            )
        stores = await open_stores(settings, clock)
        stack.push_async_callback(stores.aclose)  # before the schema is dropped
        yield await stack.enter_async_context(running_server(settings, stores, clock))
