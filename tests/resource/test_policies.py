"""Cedar policies in a service that protects itself: `BearerAuthMiddleware(policy=...)` and the
FastAPI `require_policy` dependency, served over loopback HTTP, with the examples of
docs/policies.md loaded from the page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.types import Receive, Scope, Send

from tests.conftest import AUDIENCE, ISSUER, FrozenClock
from tests.docs.blocks import blocks
from tests.gateway.conftest import serve
from tests.gateway.test_policy_examples import MFA, PAGE, example
from tokenward.client.dpop import DpopKey
from tokenward.core.claims import AccessToken
from tokenward.guard import KeyringKeySource, RevocationMirror, Validator
from tokenward.guard.authz import PolicyEngine, load_policy_set
from tokenward.guard.authz.source import PolicyFile
from tokenward.resource.asgi import BearerAuthMiddleware
from tokenward.resource.fastapi import install_bearer_error_handler, require_policy
from tokenward.resource.policies import RoutePolicy
from tokenward.store.memory import MemoryReplayCache, MemoryRevocationStore
from tokenward.tokens.dpop import DpopVerifier
from tokenward.tokens.grant import TokenGrant
from tokenward.tokens.jwt_access import JwtAccessTokenStrategy
from tokenward.tokens.keyring import Keyring

STEP_UP = (
    'Bearer realm="tokenward", error="insufficient_user_authentication", '
    'error_description="a stronger or more recent authentication is required", '
    f'acr_values="{MFA}", max_age=300'
)


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """The protected API: answers who the middleware let in."""
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": message["type"] + ".complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    token = scope["state"]["access_token"]
    body = json.dumps({"sub": token.sub, "path": scope["path"]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def dpop_validator(
    keyring: Keyring, clock: FrozenClock, revocations: MemoryRevocationStore
) -> Validator:
    mirror = RevocationMirror()
    revocations.attach(mirror)
    return Validator(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=KeyringKeySource(keyring),
        revocations=mirror,
        clock=clock,
        leeway=30,
        dpop=DpopVerifier(MemoryReplayCache(clock).first_use, None, clock),
    )


def engine(text: str, clock: FrozenClock) -> PolicyEngine:
    return PolicyEngine(load_policy_set([PolicyFile("example.cedar", text)]), clock=clock)


def mint(strategy: JwtAccessTokenStrategy, **fields: Any) -> str:
    grant = TokenGrant("alice", "client-1", (AUDIENCE,), frozenset({"read"}), **fields)
    return strategy.mint_sync(grant).value


@pytest.fixture
def served() -> Iterator[Any]:
    stack: list[Any] = []

    def start(app: Any) -> httpx.Client:
        context = serve(app)
        base = context.__enter__()
        client = httpx.Client(base_url=base, timeout=30)
        stack.append((context, client))
        return client

    yield start
    for context, client in reversed(stack):
        client.close()
        context.__exit__(None, None, None)


def test_dpop_required_for_writes(
    dpop_validator: Validator,
    strategy: JwtAccessTokenStrategy,
    clock: FrozenClock,
    served: Any,
) -> None:
    policy = RoutePolicy.of(engine(example("writes-need-dpop"), clock), "api")
    client = served(BearerAuthMiddleware(echo, dpop_validator, policy=policy))
    base = str(client.base_url).rstrip("/")
    bearer = {"authorization": f"Bearer {mint(strategy)}"}
    assert client.get("/things", headers=bearer).status_code == 200
    refused = client.post("/things", headers=bearer, content=b"{}")
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "access_denied",
        "error_description": "the authorization policy does not allow this request",
    }
    key = DpopKey(clock=clock)
    bound = mint(strategy, cnf={"jkt": key.thumbprint})

    def with_proof(method: str) -> dict[str, str]:
        proof = key.proof(method, base + "/things", access_token=bound)
        return {"authorization": f"DPoP {bound}", "dpop": proof}

    assert client.post("/things", headers=with_proof("POST"), content=b"{}").status_code == 200
    assert client.delete("/things", headers=with_proof("DELETE")).status_code == 200
    assert client.get("/things", headers=with_proof("GET")).status_code == 200


def test_step_up_challenge_from_the_middleware_is_exact(
    validator: Validator, strategy: JwtAccessTokenStrategy, clock: FrozenClock, served: Any
) -> None:
    policy = RoutePolicy.of(engine(example("transfers-need-fresh-mfa"), clock), "transfers")
    client = served(BearerAuthMiddleware(echo, validator, policy=policy))
    now = int(clock())
    stale = mint(strategy, acr=MFA, auth_time=now - 900)
    refused = client.post("/transfers", headers={"authorization": f"Bearer {stale}"})
    assert refused.status_code == 401
    assert refused.headers.get_list("www-authenticate") == [STEP_UP]
    assert refused.headers["cache-control"] == "no-store"
    fresh = mint(strategy, acr=MFA, auth_time=now - 10)
    allowed = client.post("/transfers", headers={"authorization": f"Bearer {fresh}"})
    assert allowed.status_code == 200


def test_fastapi_require_policy(
    validator: Validator, strategy: JwtAccessTokenStrategy, clock: FrozenClock, served: Any
) -> None:
    policy = RoutePolicy.of(
        engine(example("tenant-isolation"), clock), "orders", ["/tenants/{tenant}/orders/{id}"]
    )
    app = FastAPI()
    install_bearer_error_handler(app)
    # Defaults, not Annotated: this module's annotations are strings FastAPI cannot resolve in
    # a function's locals.
    allowed = Depends(require_policy(policy, "read", validator=validator))
    step_up = RoutePolicy.of(engine(example("transfers-need-fresh-mfa"), clock), "transfers")
    stepped = Depends(require_policy(step_up, validator=validator))

    @app.get("/tenants/{tenant}/orders/{order}")
    async def order(tenant: str, order: str, token: AccessToken = allowed) -> Any:
        return {"tenant": tenant, "order": order, "sub": token.sub}

    @app.post("/transfers")
    async def transfer(token: AccessToken = stepped) -> Any:
        return {"sub": token.sub}

    client = served(app)
    acme = {"authorization": f"Bearer {mint(strategy, extra={'tenant': 'acme'})}"}
    answer = client.get("/tenants/acme/orders/1", headers=acme)
    assert answer.status_code == 200, answer.text
    assert answer.json()["tenant"] == "acme"
    assert client.get("/tenants/globex/orders/1", headers=acme).status_code == 403
    challenged = client.post("/transfers", headers=acme)
    assert challenged.status_code == 401
    assert challenged.headers["www-authenticate"] == STEP_UP
    assert challenged.json()["error"] == "insufficient_user_authentication"


def test_documented_middleware(
    validator: Validator,
    strategy: JwtAccessTokenStrategy,
    clock: FrozenClock,
    served: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The page's Python block, run as written with orders.cedar holding the tenant example."""
    (code,) = [block.text for block in blocks(PAGE) if block.lang == "python"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "orders.cedar").write_text(example("tenant-isolation"))
    namespace: dict[str, Any] = {"app": echo, "validator": validator}
    exec(compile(code, str(PAGE), "exec"), namespace)  # noqa: S102 - the docs' own block
    client = served(namespace["protected"])
    acme = {"authorization": f"Bearer {mint(strategy, extra={'tenant': 'acme'})}"}
    assert client.get("/tenants/acme/orders/1", headers=acme).json()["sub"] == "alice"
    assert client.get("/tenants/globex/orders/1", headers=acme).status_code == 403
