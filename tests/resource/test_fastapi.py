"""The FastAPI dependency through real requests over httpx.ASGITransport.

No `from __future__ import annotations` here: routes declared inside fixtures name local
dependencies in `Annotated[...]`, which FastAPI can only resolve when evaluated eagerly.
"""

from collections.abc import Callable
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from tests.conftest import FrozenClock
from tests.resource.conftest import (
    LACKS_SCOPE,
    MISSING,
    REALM,
    Case,
    assert_no_leak,
    assert_refused,
    insufficient_scope,
    invalid_token,
)
from tokenward.core.records import Revocation, RevocationKind
from tokenward.guard import AccessToken, Validator
from tokenward.resource import BearerAuthMiddleware
from tokenward.resource.fastapi import (
    current_token,
    install_bearer_error_handler,
    require_scopes,
)
from tokenward.store.memory import MemoryRevocationStore

Reader = Annotated[AccessToken, Depends(require_scopes("read", realm=REALM))]


def api(validator: Validator | None, *, handler: bool = True) -> FastAPI:
    app = FastAPI()
    if validator is not None:
        app.state.tokenward_validator = validator
    if handler:
        install_bearer_error_handler(app)

    @app.get("/items")
    async def items(token: Reader) -> dict[str, object]:
        return {"sub": token.sub, "scopes": sorted(token.scopes)}

    @app.get("/ambient")
    async def ambient(request: Request) -> dict[str, object]:
        token = current_token(request)
        return {"sub": token.sub if token else None}

    return app


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test")


@pytest.fixture
def client(validator: Validator) -> httpx.AsyncClient:
    return client_for(api(validator))


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


@pytest.mark.anyio
async def test_revoked_token_refused_on_the_next_request(
    client: httpx.AsyncClient,
    mint: Callable[..., str],
    revocations: MemoryRevocationStore,
    clock: FrozenClock,
) -> None:
    token = mint()
    headers = {"authorization": "Bearer " + token}
    async with client:
        assert (await client.get("/items", headers=headers)).status_code == 200
        await revocations.revoke(
            Revocation(RevocationKind.SUBJECT, "alice", clock() + 1, clock() + 3600)
        )
        response = await client.get("/items", headers=headers)
    assert_refused(
        response.status_code,
        response.headers.multi_items(),
        response.content,
        invalid_token("the subject's tokens were revoked"),
        [token],
    )


@pytest.mark.anyio
async def test_explicit_validator_and_several_scopes(
    validator: Validator, mint: Callable[..., str]
) -> None:
    app = api(None)
    writer = Depends(require_scopes("write", "read", validator=validator, realm=REALM))

    @app.get("/write")
    async def write(token: Annotated[AccessToken, writer]) -> dict[str, str]:
        return {"sub": token.sub}

    narrow, wide = mint(scopes=("read",)), mint(scopes=("read", "write"))
    async with client_for(app) as client:
        refused = await client.get("/write", headers={"authorization": "Bearer " + narrow})
        allowed = await client.get("/write", headers={"authorization": "Bearer " + wide})
    assert_refused(
        refused.status_code,
        refused.headers.multi_items(),
        refused.content,
        insufficient_scope("read write"),
        [narrow],
    )
    assert allowed.json() == {"sub": "alice"}


@pytest.mark.anyio
async def test_without_the_handler_status_and_challenge_still_hold(
    validator: Validator, mint: Callable[..., str]
) -> None:
    token = mint(scopes=("profile",))
    async with client_for(api(validator, handler=False)) as client:
        missing = await client.get("/items")
        narrow = await client.get("/items", headers={"authorization": "Bearer " + token})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == MISSING.www_authenticate
    assert missing.headers["cache-control"] == "no-store"
    assert missing.json() == {"detail": "no bearer token"}
    assert narrow.status_code == 403
    assert narrow.headers["www-authenticate"] == insufficient_scope("read").www_authenticate
    assert narrow.json() == {"detail": LACKS_SCOPE}
    assert_no_leak(narrow.headers.multi_items(), narrow.content, [token])


@pytest.mark.anyio
async def test_missing_validator_is_a_server_error(mint: Callable[..., str]) -> None:
    async with client_for(api(None)) as client:
        with pytest.raises(RuntimeError, match="tokenward_validator"):
            await client.get("/items", headers={"authorization": "Bearer " + mint()})


@pytest.mark.anyio
async def test_current_token_reads_what_the_middleware_set(
    validator: Validator, mint: Callable[..., str]
) -> None:
    bare, guarded = api(validator), api(validator)
    guarded.add_middleware(BearerAuthMiddleware, validator=validator, realm=REALM)
    headers = {"authorization": "Bearer " + mint()}
    async with client_for(bare) as client:
        assert (await client.get("/ambient", headers=headers)).json() == {"sub": None}
    async with client_for(guarded) as client:
        assert (await client.get("/ambient", headers=headers)).json() == {"sub": "alice"}
        assert (await client.get("/ambient")).status_code == 401


@pytest.mark.anyio
async def test_route_level_dependency(validator: Validator, mint: Callable[..., str]) -> None:
    app = api(validator)

    @app.get("/admin", dependencies=[Depends(require_scopes("admin", realm=REALM))])
    async def admin() -> dict[str, bool]:
        return {"ok": True}

    async with client_for(app) as client:
        refused = await client.get("/admin", headers={"authorization": "Bearer " + mint()})
        allowed = await client.get(
            "/admin", headers={"authorization": "Bearer " + mint(scopes=("admin",))}
        )
    assert refused.status_code == 403
    assert refused.json()["scope"] == "admin"
    assert allowed.json() == {"ok": True}
