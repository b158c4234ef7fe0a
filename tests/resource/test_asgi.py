"""BearerAuthMiddleware through real HTTP requests over httpx.ASGITransport, and websockets."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from tests.conftest import FrozenClock
from tests.resource.conftest import (
    REALM,
    REVOKED,
    TWO_HEADERS,
    Case,
    assert_no_leak,
    assert_refused,
    invalid_request,
    invalid_token,
)
from tokenward.core.records import Revocation, RevocationKind
from tokenward.guard import AccessToken, Validator
from tokenward.resource import BearerAuthMiddleware
from tokenward.store.memory import MemoryRevocationStore


async def items(request: Request) -> JSONResponse:
    token: AccessToken = request.state.access_token
    return JSONResponse({"sub": token.sub, "scopes": sorted(token.scopes)})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True, "token": hasattr(request.state, "access_token")})


async def echo_subject(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"sub": websocket.state.access_token.sub})
    await websocket.close()


def protected_app(validator: Validator) -> Starlette:
    return Starlette(
        routes=[
            Route("/items", items),
            Route("/health", health),
            WebSocketRoute("/ws", echo_subject),
        ],
        middleware=[
            Middleware(
                BearerAuthMiddleware,
                validator=validator,
                required_scopes=("read",),
                realm=REALM,
                exempt_paths=("/health",),
            )
        ],
    )


@pytest.fixture
def client(validator: Validator) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=protected_app(validator))
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


@pytest.mark.anyio
async def test_valid_token_reaches_the_handler(
    client: httpx.AsyncClient, mint: Callable[..., str]
) -> None:
    token = mint(scopes=("read", "write"))
    async with client:
        response = await client.get("/items", headers={"authorization": "Bearer " + token})
    assert response.status_code == 200
    assert response.json() == {"sub": "alice", "scopes": ["read", "write"]}
    assert_no_leak(response.headers.multi_items(), response.content, [token])


@pytest.mark.anyio
async def test_refusals_render_rfc6750_challenges(client: httpx.AsyncClient, refusal: Case) -> None:
    async with client:
        response = await client.get(refusal.target, headers=refusal.headers)
    assert_refused(
        response.status_code,
        response.headers.multi_items(),
        response.content,
        refusal.expected,
        refusal.secrets,
    )
    assert response.headers["content-length"] == str(len(response.content))


@pytest.mark.anyio
async def test_revoked_token_refused_on_the_next_request(
    client: httpx.AsyncClient,
    mint: Callable[..., str],
    validator: Validator,
    revocations: MemoryRevocationStore,
    clock: FrozenClock,
) -> None:
    token = mint()
    headers = {"authorization": "Bearer " + token}
    async with client:
        assert (await client.get("/items", headers=headers)).status_code == 200
        jti = validator.authenticate_sync("Bearer " + token).jti
        await revocations.revoke(Revocation(RevocationKind.JTI, jti, None, clock() + 3600))
        response = await client.get("/items", headers=headers)
    assert_refused(
        response.status_code,
        response.headers.multi_items(),
        response.content,
        invalid_token(REVOKED),
        [token],
    )


@pytest.mark.anyio
async def test_cache_hit_does_not_await_the_validator(
    client: httpx.AsyncClient,
    mint: Callable[..., str],
    validator: Validator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0
    real = validator.authenticate

    async def counting(*args: Any, **kwargs: Any) -> AccessToken:
        nonlocal calls
        calls += 1
        return await real(*args, **kwargs)

    monkeypatch.setattr(validator, "authenticate", counting)
    headers = {"authorization": "Bearer " + mint()}
    async with client:
        for _ in range(3):
            assert (await client.get("/items", headers=headers)).status_code == 200
    assert calls == 1


@pytest.mark.anyio
async def test_exempt_path_passes_without_token(client: httpx.AsyncClient) -> None:
    async with client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "token": False}


@pytest.mark.anyio
async def test_exempt_paths_are_exact(client: httpx.AsyncClient) -> None:
    async with client:
        response = await client.get("/health/more")
    assert response.status_code == 401


# --- driving the ASGI callable by hand: websockets and lifespan -----------------------------
def websocket_scope(headers: list[tuple[str, str]], query: str = "") -> Scope:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "scheme": "ws",
        "http_version": "1.1",
        "server": ("api.test", 80),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": query.encode("latin-1"),
        "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers],
        "subprotocols": [],
    }


async def drive(app: Any, scope: Scope, incoming: list[Message]) -> list[Message]:
    """Run one connection: `incoming` are the client's events, the result is what the app sent."""
    sent: list[Message] = []
    pending = list(incoming)

    async def receive() -> Message:
        assert pending, "the app read past the client's last event"
        return pending.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


CLIENT_EVENTS: list[Message] = [
    {"type": "websocket.connect"},
    {"type": "websocket.disconnect", "code": 1000},
]


@pytest.mark.anyio
async def test_websocket_with_valid_token_is_accepted(
    validator: Validator, mint: Callable[..., str]
) -> None:
    scope = websocket_scope([("authorization", "Bearer " + mint())])
    sent = await drive(protected_app(validator), scope, CLIENT_EVENTS)
    assert [message["type"] for message in sent] == [
        "websocket.accept",
        "websocket.send",
        "websocket.close",
    ]
    assert sent[1]["text"] == '{"sub":"alice"}'


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("case", "reason"),
    [("missing", "unauthorized"), ("tampered", "invalid_token"), ("query", "invalid_request")],
)
async def test_websocket_refused_before_accept(
    validator: Validator, mint: Callable[..., str], case: str, reason: str
) -> None:
    token = mint()
    headers, query = {
        "missing": ([], ""),
        "tampered": ([("authorization", "Bearer " + token[:-4] + "AAAA")], ""),
        "query": ([], "access_token=" + token),
    }[case]
    sent = await drive(protected_app(validator), websocket_scope(headers, query), CLIENT_EVENTS)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": reason}]


@pytest.mark.anyio
async def test_websocket_client_gone_before_refusal_gets_nothing(validator: Validator) -> None:
    events: list[Message] = [{"type": "websocket.disconnect", "code": 1001}]
    sent = await drive(protected_app(validator), websocket_scope([]), events)
    assert sent == []


class Recorder:
    """An inner app that records the scopes it sees and answers http with 204."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})


@pytest.mark.anyio
async def test_lifespan_passes_through(validator: Validator) -> None:
    inner = Recorder()
    middleware = BearerAuthMiddleware(inner, validator)
    await drive(middleware, {"type": "lifespan", "asgi": {"version": "3.0"}}, [])
    assert [scope["type"] for scope in inner.scopes] == ["lifespan"]


@pytest.mark.anyio
async def test_token_joins_existing_state(validator: Validator, mint: Callable[..., str]) -> None:
    inner = Recorder()
    middleware = BearerAuthMiddleware(inner, validator)
    scope = websocket_scope([("authorization", "Bearer " + mint())])
    scope.update(type="http", method="GET", path="/items", state={"db": "pool"})
    await drive(middleware, scope, [])
    assert inner.scopes[0]["state"]["db"] == "pool"
    assert inner.scopes[0]["state"]["access_token"].sub == "alice"


@pytest.mark.anyio
async def test_refusal_uses_default_realm_and_never_calls_the_app(
    validator: Validator, mint: Callable[..., str]
) -> None:
    inner = Recorder()
    scope = websocket_scope([("authorization", "Bearer " + mint())] * 2)
    scope.update(type="http", method="GET", path="/items")
    start, body = await drive(BearerAuthMiddleware(inner, validator), scope, [])
    assert inner.scopes == []
    assert start["status"] == 400
    assert (
        b"www-authenticate",
        b'Bearer realm="tokenward", error="invalid_request", '
        b'error_description="more than one Authorization header"',
    ) in start["headers"]
    assert body["body"] == json.dumps(invalid_request(TWO_HEADERS).body).encode()


def test_package_import_needs_no_web_framework() -> None:
    """`import tokenward.resource` must work for users with neither FastAPI nor Flask."""
    code = (
        "import sys, tokenward.resource; "
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'flask'}); "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
