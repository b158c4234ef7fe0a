"""A small protected API served beside the authorization server, so `make run` shows the whole
loop: get a token, call an API with it, revoke it, see the call refused."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from tokenward.core.claims import AccessToken
from tokenward.resource.fastapi import require_scopes

router = APIRouter(prefix="/api", tags=["demo API"])
# The validator is app.state.tokenward_validator (this server's audience), set by create_app.
ReadToken = Annotated[AccessToken, Depends(require_scopes("read"))]


@router.get("/hello", summary="A protected demo resource (needs scope read)")
async def hello(token: ReadToken) -> dict[str, Any]:
    return {"hello": token.sub, "client_id": token.client_id, "scope": token.scope}
