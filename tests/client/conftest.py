"""A real authorization server on loopback whose clock the tests move, shared with the SDK.

The server and the SDK read one `ShiftedClock` (real time plus an offset), so "fifteen minutes
later" is one call: the token has expired at both ends, nonce windows roll over, and device-flow
polls wait no wall-clock time. Nothing here sleeps beyond bounded waits.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx
import pytest

from tests.e2e.live import free_port, serve_in_thread
from tests.server.flows import hidden_interaction
from tokenward.client import DeviceAuthorization
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import Services, build_services, memory_stores
from tokenward.tokens.sealing import generate_master_key

PASSWORD = "correct horse battery"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class ShiftedClock:
    """Real time plus an offset that only ever grows."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.offset += seconds


@dataclass
class AuthServer:
    base: str
    services: Services
    clock: ShiftedClock
    service_secret: str
    loopback_port: int  # the desktop client's registered redirect port

    @property
    def issuer(self) -> str:
        return self.base

    def approve_device(self, user_code: str, decision: str = "approve") -> None:
        """A person signs in on another screen, types the code and answers."""
        with httpx.Client(base_url=self.base, timeout=10) as browser:
            page = browser.get("/device", params={"user_code": user_code})
            entered = browser.post(
                "/login",
                data={
                    "interaction": hidden_interaction(page.text),
                    "username": "alice",
                    "password": PASSWORD,
                },
            )
            confirm = browser.post(
                "/device",
                data={"interaction": hidden_interaction(entered.text), "user_code": user_code},
            )
            done = browser.post(
                "/device/decision",
                data={"interaction": hidden_interaction(confirm.text), "decision": decision},
            )
            assert done.status_code == 200, done.text[:300]

    def revoke(self, token: str, client_id: str = "cli") -> None:
        response = httpx.post(
            f"{self.base}/revoke", data={"token": token, "client_id": client_id}, timeout=10
        )
        assert response.status_code == 200


async def _prepare(issuer: str, clock: ShiftedClock, loopback_port: int) -> tuple[Services, str]:
    # Time jumps here are instant, while the revocation feed resyncs on wall-clock seconds: a
    # staleness bound measured on the jumping clock would fail closed after every jump.
    settings = Settings(
        issuer=issuer, master_key=generate_master_key(), revocation_max_staleness=1e9
    )
    services = await build_services(settings, memory_stores(clock), clock)
    service = await services.client_admin.create_client(
        "service",
        grant_types=["client_credentials"],
        scope="read write",
        redirect_uris=[],
    )
    await services.client_admin.create_client(
        "cli",
        grant_types=[DEVICE_GRANT, "refresh_token"],
        scope="openid read",
        redirect_uris=[],
        public=True,
    )
    await services.client_admin.create_client(
        "desktop",
        grant_types=["authorization_code", "refresh_token"],
        scope="openid read",
        redirect_uris=[f"http://127.0.0.1:{loopback_port}/callback"],
        public=True,
    )
    await services.user_admin.create_user("alice", PASSWORD)
    await services.user_admin.create_user("bob", PASSWORD)
    return services, service["client_secret"]


@pytest.fixture(scope="module")
def auth_server() -> Iterator[AuthServer]:
    clock = ShiftedClock()
    port, loopback_port = free_port(), free_port()
    services, secret = asyncio.run(_prepare(f"http://127.0.0.1:{port}", clock, loopback_port))
    with serve_in_thread(server_app(services), port) as base:
        yield AuthServer(base, services, clock, secret, loopback_port)


@dataclass
class Exchange:
    method: str
    path: str
    grant_type: str | None
    refresh_token: str | None
    proof: str | None = None  # the DPoP header
    authorization: str | None = None
    status: int | None = None
    error: str | None = None


@dataclass
class Recorder:
    """Every request a client sent, with the grant and refresh token of token requests, and the
    error code of each answer: the server's view of what the SDK did."""

    exchanges: list[Exchange] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_request(self, request: httpx.Request) -> None:
        form = parse_qs(request.content.decode()) if request.method == "POST" else {}
        with self.lock:
            self.exchanges.append(
                Exchange(
                    request.method,
                    request.url.path,
                    form.get("grant_type", [None])[0],
                    form.get("refresh_token", [None])[0],
                    request.headers.get("dpop"),
                    request.headers.get("authorization"),
                )
            )

    def on_response(self, response: httpx.Response) -> None:
        response.read()
        error = None
        if response.headers.get("content-type", "").startswith("application/json"):
            body = response.json()
            error = body.get("error") if isinstance(body, dict) else None
        with self.lock:
            for exchange in reversed(self.exchanges):
                if exchange.status is None and exchange.path == response.request.url.path:
                    exchange.status, exchange.error = response.status_code, error
                    break

    async def aon_request(self, request: httpx.Request) -> None:
        self.on_request(request)

    async def aon_response(self, response: httpx.Response) -> None:
        await response.aread()
        self.on_response(response)

    def count(self, path: str, grant_type: str | None = None) -> int:
        with self.lock:
            return sum(
                1
                for e in self.exchanges
                if e.path == path and (grant_type is None or e.grant_type == grant_type)
            )

    def client(self, **options: object) -> httpx.Client:
        hooks = {"request": [self.on_request], "response": [self.on_response]}
        return httpx.Client(event_hooks=hooks, timeout=10, **options)  # type: ignore[arg-type]

    def async_client(self, **options: object) -> httpx.AsyncClient:
        hooks = {"request": [self.aon_request], "response": [self.aon_response]}
        return httpx.AsyncClient(event_hooks=hooks, timeout=10, **options)  # type: ignore[arg-type]


class DeviceUser:
    """The person at the other screen: reads the code from the prompt and approves during the
    n-th pause between polls. Pauses advance the shared clock instead of sleeping."""

    def __init__(
        self,
        server: AuthServer,
        approve_on: int = 2,
        decision: str = "approve",
        early_on: int | None = None,
    ) -> None:
        self.server = server
        self.early_on = early_on  # that pause ends early, as if the client's clock ran fast
        self.approve_on = approve_on
        self.decision = decision
        self.authorization: DeviceAuthorization | None = None
        self.pauses: list[float] = []

    def prompt(self, authorization: DeviceAuthorization) -> None:
        self.authorization = authorization

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        if len(self.pauses) == self.approve_on:
            assert self.authorization is not None
            self.server.approve_device(self.authorization.user_code, self.decision)
        self.server.clock.advance(1.0 if len(self.pauses) == self.early_on else seconds)

    async def asleep(self, seconds: float) -> None:
        await asyncio.to_thread(self.sleep, seconds)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def as_client(recorder: Recorder) -> Iterator[httpx.Client]:
    """The SDK's (sync) client for the authorization server, recorded."""
    with recorder.client() as client:
        yield client


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
