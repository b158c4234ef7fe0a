"""The busiest endpoints served past the framework's layers (server/direct.py): only their exact
method and path, errors rendered by the application's own handlers, and every deployment
middleware still around them. A deployment middleware that fails answers the same 500."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send
from structlog.testing import capture_logs

from tests.server.conftest import ISSUER, Server
from tokenward.deploy.deployment import server_app
from tokenward.oauth.errors import InvalidRequest, OAuthError
from tokenward.server.direct import DirectEndpoints
from tokenward.server.outer import SERVER_ERROR_BODY

pytestmark = pytest.mark.anyio


async def _framework(scope: Scope, receive: Receive, send: Send) -> None:
    await Response("framework", status_code=299)(scope, receive, send)


async def _endpoint(_request: Request) -> Response:
    return Response("direct")


async def _refusing(_request: Request) -> Response:
    raise InvalidRequest("no")


async def _on_oauth(_request: Request, exc: Exception) -> Response:
    return Response(type(exc).__name__, status_code=400)


def _client(endpoints: dict[tuple[str, str], Any]) -> httpx.AsyncClient:
    app = DirectEndpoints(_framework, endpoints, {OAuthError: _on_oauth, 404: _on_oauth})
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def test_only_the_exact_method_and_path_is_served_directly() -> None:
    async with _client({("POST", "/token"): _endpoint}) as http:
        assert (await http.post("/token")).text == "direct"
        for response in (
            await http.get("/token"),
            await http.post("/token/"),
            await http.post("/Token"),
            await http.post("/token/x"),
            await http.post("/other"),
        ):
            assert response.status_code == 299, response.request.url


@pytest.mark.parametrize(
    ("root_path", "path", "direct"),
    [("/auth", "/auth/token", True), ("/auth", "/token", True), ("/auth", "/auth/other", False)],
)
async def test_the_path_matched_is_the_routers_without_the_root_path(
    root_path: str, path: str, direct: bool
) -> None:
    app = DirectEndpoints(_framework, {("POST", "/token"): _endpoint}, {})
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.post(path)
    assert (response.text == "direct") is direct


_PATHS = ("/token", "/auth/token", "/authtoken", "/auth", "/auth/", "/tokens", "/auth/auth/token")


@pytest.mark.parametrize("root_path", ["", "/auth", "/auth/", "/au"])
@pytest.mark.parametrize("path", _PATHS)
async def test_the_direct_decision_is_the_routers_own(root_path: str, path: str) -> None:
    """Beside a real Starlette router with the same route: whatever root path a proxy sets, a
    request is served directly exactly when the framework would route it to that endpoint."""

    async def routed(_request: Request) -> Response:
        return Response("routed")

    router = Router([Route("/token", routed, methods=["POST"])])
    direct = DirectEndpoints(router, {("POST", "/token"): _endpoint}, {})
    answers = []
    for app in (router, direct):
        transport = httpx.ASGITransport(app=app, root_path=root_path)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            answers.append((await http.post(path)).text)
    assert (answers[0] == "routed") is (answers[1] == "direct"), answers


async def test_errors_are_rendered_by_the_handler_of_their_class() -> None:
    async with _client({("POST", "/token"): _refusing}) as http:
        response = await http.post("/token")
    assert (response.status_code, response.text) == (400, "InvalidRequest")  # via OAuthError


async def test_an_error_without_a_handler_goes_on_up() -> None:
    async def failing(_request: Request) -> Response:
        raise RuntimeError("a bug")

    async with _client({("POST", "/token"): failing}) as http:
        with pytest.raises(RuntimeError):
            await http.post("/token")


async def test_a_bug_in_the_token_endpoint_is_a_500_without_a_traceback(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_args: object) -> None:
        raise RuntimeError("a bug quoting client_secret=hunter2")

    server.services.token_endpoint._authenticator.authenticate = broken  # type: ignore[assignment]
    with caplog.at_level(logging.DEBUG), capture_logs() as logs:
        response = await server.token()
    assert response.status_code == 500
    assert response.json()["error"] == "server_error"
    assert response.headers["cache-control"] == "no-store"
    assert {"event": "unhandled_error", "path": "/token", "error": "RuntimeError"} in [
        {key: entry.get(key) for key in ("event", "path", "error")} for entry in logs
    ]
    written = response.text + caplog.text + repr(logs)
    assert "hunter2" not in written
    assert "Traceback" not in written


async def test_the_deployment_middleware_sees_direct_requests(server: Server) -> None:
    assert (await server.token()).status_code == 200
    assert (await server.http.get("/token")).status_code == 405  # not direct: the router's
    metrics = server.services.metrics.registry
    labels = {"endpoint": "/token", "method": "POST", "status": "200"}
    assert metrics.get_sample_value("tokenward_http_requests_total", labels) == 1
    assert (
        metrics.get_sample_value(
            "tokenward_tokens_issued_total",
            {"grant_type": "client_credentials", "outcome": "success"},
        )
        == 1
    )


class _Failing:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raise RuntimeError("a middleware bug quoting access_token=secret-value")
        await self.app(scope, receive, send)


@pytest.mark.parametrize("path", ["/token", "/.well-known/openid-configuration"])
async def test_a_failing_deployment_middleware_answers_the_same_500(
    server: Server, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    app = server_app(server.services)
    app.add_middleware(_Failing)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    with caplog.at_level(logging.DEBUG), capture_logs() as logs:
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            response = await http.post(path, data={"grant_type": "client_credentials"})
    assert response.status_code == 500
    assert response.content == SERVER_ERROR_BODY
    assert response.json()["error"] == "server_error"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["strict-transport-security"]  # still through Outer
    assert [(entry["event"], entry["error"]) for entry in logs] == [
        ("unhandled_error", "RuntimeError")
    ]
    assert "secret-value" not in caplog.text + repr(logs)
    assert "Traceback" not in caplog.text + repr(logs)
