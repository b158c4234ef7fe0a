"""The authorization server with monitoring settings of the test's choosing, reached through
ASGI from any client address (each address its own httpx client on the same app)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from tests.conftest import FrozenClock
from tests.server.flows import REDIRECT_URI
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import Services, build_services, memory_stores
from tokenward.monitor.config import MonitorSettings
from tokenward.tokens.sealing import generate_master_key

ISSUER = "https://as.example"
PASSWORD = "correct horse battery"


@dataclass
class Monitored:
    services: Services
    app: Any
    secret: str  # of the confidential client "service" (scope read write)
    web_secret: str
    admin_secret: str  # of the client "ops" (client credentials, scope tokenward:admin)
    audit: io.StringIO
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    def at(self, ip: str) -> httpx.AsyncClient:
        """A client whose requests come from `ip`."""
        if ip not in self.clients:
            transport = httpx.ASGITransport(app=self.app, client=(ip, 40000))
            self.clients[ip] = httpx.AsyncClient(transport=transport, base_url=ISSUER)
        return self.clients[ip]

    async def token(self, ip: str = "192.0.2.10", scope: str = "read") -> str:
        response = await self.at(ip).post(
            "/token",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=("service", self.secret),
        )
        assert response.status_code == 200, response.text
        value: str = response.json()["access_token"]
        return value

    async def hello(self, token: str, ip: str = "192.0.2.10") -> httpx.Response:
        return await self.at(ip).get("/api/hello", headers={"authorization": f"Bearer {token}"})

    def audit_lines(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.audit.getvalue().splitlines()]


@asynccontextmanager
async def monitored_server(clock: FrozenClock, **monitor: Any) -> AsyncIterator[Monitored]:
    settings = Settings(issuer=ISSUER, master_key=generate_master_key())
    audit = io.StringIO()
    monitor_settings = MonitorSettings(audit_log="off", **monitor)
    services = await build_services(settings, memory_stores(clock), clock, monitor_settings)
    services.monitor.audit = _audit(audit)
    service = await services.client_admin.create_client(
        "service",
        grant_types=["client_credentials"],
        scope="read write",
        redirect_uris=[],
    )
    web = await services.client_admin.create_client(
        "web",
        grant_types=["authorization_code", "refresh_token"],
        scope="openid profile read",
        redirect_uris=[REDIRECT_URI],
    )
    ops = await services.client_admin.create_client(
        "ops",
        grant_types=["client_credentials"],
        scope="tokenward:admin",
        redirect_uris=[],
    )
    await services.user_admin.create_user("alice", PASSWORD)
    await services.user_admin.create_user("root", PASSWORD)
    await services.user_admin.set_admin("root", True)
    server = Monitored(
        services,
        server_app(services),
        service["client_secret"],
        web["client_secret"],
        ops["client_secret"],
        audit,
    )
    try:
        yield server
    finally:
        for client in server.clients.values():
            await client.aclose()


def _audit(stream: io.StringIO) -> Any:
    from tokenward.monitor.alerts import SecurityAudit

    return SecurityAudit(stream)
