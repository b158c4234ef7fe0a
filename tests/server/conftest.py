"""An authorization server on memory stores and a frozen clock, reached through ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import FrozenClock
from tokenward.admin import create_client
from tokenward.config import Settings
from tokenward.server.app import create_app
from tokenward.tokens.sealing import generate_master_key
from tokenward.wiring import Services, build_services, memory_stores

ISSUER = "https://as.example"


@dataclass
class Server:
    services: Services
    http: httpx.AsyncClient
    secret: str  # of the confidential client "service"

    async def token(self, **params: str) -> httpx.Response:
        data = {"grant_type": "client_credentials", **params}
        return await self.http.post("/token", data=data, auth=("service", self.secret))


@pytest.fixture
async def server(clock: FrozenClock) -> AsyncIterator[Server]:
    settings = Settings(issuer=ISSUER, master_key=generate_master_key())
    services = await build_services(settings, memory_stores(clock), clock)
    created = await create_client(
        services,
        "service",
        grant_types=["client_credentials"],
        scope="read write",
        redirect_uris=[],
    )
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        yield Server(services, http, created["client_secret"])
