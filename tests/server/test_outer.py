"""The outermost layer: HSTS on every response of an https issuer (none over http), and an
access log with the path only: no query, no header, control characters escaped."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import httpx
import pytest

from tests.conftest import FrozenClock
from tests.server.conftest import Server
from tokenward.config import Settings
from tokenward.deploy.deployment import server_app
from tokenward.deploy.wiring import build_services, memory_stores
from tokenward.server.outer import ACCESS_LOGGER, logged_path
from tokenward.tokens.sealing import generate_master_key

pytestmark = pytest.mark.anyio
HSTS = "max-age=63072000; includeSubDomains"


async def _every_kind_of_response(http: httpx.AsyncClient) -> list[httpx.Response]:
    return [
        await http.get("/.well-known/openid-configuration"),  # JSON 200
        await http.get("/jwks"),
        await http.get("/authorize"),  # an HTML error page
        await http.get("/device"),  # an HTML form
        await http.post("/token", data={"grant_type": "client_credentials"}),  # 401 JSON
        await http.post("/token", data={}),  # 400
        await http.get("/api/hello"),  # 401 from the resource middleware
        await http.get("/nowhere"),  # 404
        await http.get("/admin/login"),
        await http.get("/admin/static/nothing.js"),
        await http.get("/healthz"),
    ]


async def test_hsts_on_every_response_of_an_https_issuer(server: Server) -> None:
    for response in await _every_kind_of_response(server.http):
        assert response.headers.get("strict-transport-security") == HSTS, response.url


async def test_hsts_on_a_500_too(server: Server) -> None:
    async def broken(_client_id: str) -> None:
        raise RuntimeError("a bug")

    server.services.stores.clients.get = broken  # type: ignore[assignment]  # a failing stub
    transport = httpx.ASGITransport(app=server_app(server.services), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://as.example") as http:
        response = await http.get("/authorize", params={"client_id": "web"})
    assert response.status_code == 500
    assert response.headers["strict-transport-security"] == HSTS


@pytest.mark.parametrize(
    ("issuer", "options", "expected"),
    [
        ("http://127.0.0.1:8000", {}, None),
        ("http://localhost:8000", {"hsts_max_age": 600}, None),
        ("https://as.example", {"hsts_max_age": 600}, "max-age=600; includeSubDomains"),
        ("https://as.example", {"hsts_include_subdomains": False}, "max-age=63072000"),
    ],
)
async def test_hsts_follows_the_issuer_and_settings(
    clock: FrozenClock, issuer: str, options: dict[str, Any], expected: str | None
) -> None:
    settings = Settings(issuer=issuer, master_key=generate_master_key(), **options)
    services = await build_services(settings, memory_stores(clock), clock)
    transport = httpx.ASGITransport(app=server_app(services))
    async with httpx.AsyncClient(transport=transport, base_url=issuer) as http:
        for response in await _every_kind_of_response(http):
            assert response.headers.get("strict-transport-security") == expected


async def test_access_log_has_the_path_never_the_query(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "eyJhbGciOiJub25lIn0.secret-payload.sig"
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        await server.http.get(f"/api/hello?access_token={secret}&x=1")
        await server.http.get(
            "/logout", params={"id_token_hint": secret}, headers={"authorization": secret}
        )
        await server.http.post("/token", data={"refresh_token": secret})
    lines = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(lines) == 3, lines
    assert lines[0].startswith('127.0.0.1:123 - "GET /api/hello" 40')
    assert '"GET /logout" ' in lines[1]
    assert '"POST /token" 40' in lines[2]
    assert all(line.endswith("ms") for line in lines)
    assert not any(secret in line or "?" in line or "secret" in line for line in lines)


async def test_a_client_gone_mid_body_is_499_not_an_error(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """The serving layer cuts off a stalled body by telling the app the client left."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/token",
        "raw_path": b"/token",
        "query_string": b"",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded"), (b"host", b"t")],
        "client": ("127.0.0.1", 123),
        "server": ("127.0.0.1", 80),
        "scheme": "http",
        "http_version": "1.1",
        "root_path": "",
    }
    messages: list[dict[str, object]] = [
        {"type": "http.request", "body": b"grant_type=", "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    with caplog.at_level(logging.INFO):
        await server_app(server.services)(scope, receive, send)
    assert sent[0]["status"] == 499
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert '"POST /token" 499' in caplog.text


def test_logged_path_is_raw_escaped_and_bounded() -> None:
    def path_of(raw: bytes) -> str:
        return logged_path({"type": "http", "raw_path": raw, "path": raw.decode("latin-1")})

    assert path_of(b"/token") == "/token"
    assert path_of(b"/a%0Ab") == "/a%0Ab"  # as sent: a decoded newline never reaches the log
    assert path_of(b'/a"b\\c\x01\x7f\xff') == "/a%22b%5Cc%01%7F%FF"
    assert path_of(b"/x?access_token=t") == "/x"
    long = path_of(b"/" + b"a" * 1000)
    assert len(long) == 259
    assert long.endswith("...")
    assert logged_path({"type": "http", "path": "/from\nscope"}) == "/from%0Ascope"
