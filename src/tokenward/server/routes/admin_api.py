"""The admin JSON API under /admin/api: the console's actions for scripts and tools.

Every call needs `Authorization: Bearer <token>` with the scope `tokenward:admin`, issued for
this server's API audience to an admin user or to a client registered with that scope. No
cookies are read, so there is nothing to forge across sites. Every change is audited.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from tokenward.core.claims import AccessToken
from tokenward.core.errors import InsufficientScope
from tokenward.deploy.wiring import Services
from tokenward.oauth.token_endpoint import NO_STORE
from tokenward.resource.fastapi import BearerHTTPException, require_scopes
from tokenward.server.edge import JSONResponse
from tokenward.server.routes.admin_support import (
    ADMIN_SCOPE,
    ActionError,
    api_actor,
    list_clients,
    list_grants,
    list_keys,
    list_sessions,
    list_users,
    perform,
)


class Client(BaseModel):
    client_id: str
    auth_method: str
    grant_types: list[str]
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str] = []
    scope: str
    token_format: str
    skip_consent: bool
    disabled: bool


class ClientWithSecret(Client):
    client_secret: str | None = Field(None, description="Shown once; only its digest is kept")


class NewClient(BaseModel):
    client_id: str = Field(pattern=r"^[A-Za-z0-9._~-]{1,64}$")
    grant_types: list[str]
    scope: str = ""
    redirect_uris: list[str] = []
    post_logout_redirect_uris: list[str] = []
    public: bool = False
    token_format: str = "jwt"


class User(BaseModel):
    user_id: str
    username: str
    disabled: bool
    admin: bool
    active_sessions: int


class UserState(BaseModel):
    user_id: str
    username: str
    disabled: bool


class Session(BaseModel):
    session_id: str
    user_id: str
    username: str
    auth_time: float
    expires_at: float


class Grant(BaseModel):
    user_id: str
    username: str
    client_id: str
    scope: str


class GrantRef(BaseModel):
    user_id: str
    client_id: str


class Key(BaseModel):
    kid: str
    alg: str
    state: str
    created_at: float
    activated_at: float | None
    retiring_at: float | None
    retired_at: float | None


class RevokeRequest(BaseModel):
    jti: str | None = None
    subject: str | None = None
    session: str | None = None
    client: str | None = None


class Revoked(BaseModel):
    revoked: list[dict[str, Any]]
    at: str


class AlertOut(BaseModel):
    id: str
    time: float
    detector: str
    severity: str
    title: str
    explanation: str
    target: dict[str, str | None]
    evidence: dict[str, Any]
    occurrences: int
    last_seen: float
    status: str
    responses: list[dict[str, Any]]
    actions: list[str]


class AlertResponse(BaseModel):
    action: str = Field(
        description="revoke_token, revoke_session, revoke_subject, block_ip or resolve"
    )


class Block(BaseModel):
    ip: str
    seconds: float = 3600.0


class Blocked(BaseModel):
    ip: str
    until: float
    reason: str
    by: str


class Usage(BaseModel):
    usage: dict[str, Any]
    health: dict[str, Any]


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The action cannot be done; `error_description` says why"},
    401: {"description": "No valid bearer token"},
    403: {"description": "The token lacks the scope tokenward:admin or its subject is no admin"},
}


async def _no_store(response: Response) -> None:
    """Every answer here may carry a new client secret or live security data: never cached."""
    response.headers.update(NO_STORE)


def router(services: Services) -> APIRouter:
    api = APIRouter(
        prefix="/admin/api", tags=["admin"], responses=ERRORS, dependencies=[Depends(_no_store)]
    )
    scoped = require_scopes(ADMIN_SCOPE, validator=services.validator)

    async def actor(token: AccessToken = Depends(scoped)) -> str:  # noqa: B008
        name = await api_actor(services, token)
        if name is None:
            error = InsufficientScope("the token's subject may not administer", scope=ADMIN_SCOPE)
            raise BearerHTTPException(error)
        return name

    async def act(who: str, action: str, params: dict[str, Any]) -> Any:
        try:
            return await perform(services, who, "api", action, params)
        except ActionError as exc:
            return JSONResponse(
                {"error": "invalid_request", "error_description": str(exc)},
                status_code=400,
                headers=NO_STORE,
            )

    admin = Depends(actor)

    @api.get("/clients", response_model=list[Client], summary="List clients")
    async def clients(_who: str = admin) -> Any:
        return await list_clients(services)

    @api.post("/clients", response_model=ClientWithSecret, status_code=201, summary="Create")
    async def create_client(body: NewClient, who: str = admin) -> Any:
        return await act(who, "client.create", body.model_dump())

    @api.post("/clients/{client_id}/disable", response_model=Client, summary="Disable a client")
    async def disable_client(client_id: str, who: str = admin) -> Any:
        return await act(who, "client.disable", {"client_id": client_id})

    @api.post("/clients/{client_id}/enable", response_model=Client, summary="Enable a client")
    async def enable_client(client_id: str, who: str = admin) -> Any:
        return await act(who, "client.enable", {"client_id": client_id})

    @api.post("/clients/{client_id}/rotate-secret", response_model=ClientWithSecret)
    async def rotate_secret(client_id: str, who: str = admin) -> Any:
        return await act(who, "client.rotate_secret", {"client_id": client_id})

    @api.get("/users", response_model=list[User], summary="List users")
    async def users(_who: str = admin) -> Any:
        return await list_users(services)

    @api.post("/users/{user_id}/disable", response_model=UserState, summary="Disable a user")
    async def disable_user(user_id: str, who: str = admin) -> Any:
        return await act(who, "user.disable", {"user_id": user_id})

    @api.post("/users/{user_id}/enable", response_model=UserState, summary="Enable a user")
    async def enable_user(user_id: str, who: str = admin) -> Any:
        return await act(who, "user.enable", {"user_id": user_id})

    @api.post("/users/{user_id}/logout", response_model=Revoked, summary="Force logout")
    async def force_logout(user_id: str, who: str = admin) -> Any:
        return await act(who, "user.logout", {"user_id": user_id})

    @api.get("/sessions", response_model=list[Session], summary="Active browser sessions")
    async def sessions(_who: str = admin) -> Any:
        return await list_sessions(services)

    @api.post("/sessions/{session_id}/revoke", response_model=Revoked, summary="End a session")
    async def revoke_session(session_id: str, who: str = admin) -> Any:
        return await act(who, "session.revoke", {"session_id": session_id})

    @api.get("/grants", response_model=list[Grant], summary="Consents users gave clients")
    async def grants(_who: str = admin) -> Any:
        return await list_grants(services)

    @api.post("/grants/revoke", summary="Withdraw a consent and revoke the user's tokens")
    async def revoke_grant(body: GrantRef, who: str = admin) -> Any:
        return await act(who, "grant.revoke", body.model_dump())

    @api.post("/revoke", response_model=Revoked, summary="Revoke by jti, subject, session, client")
    async def revoke(body: RevokeRequest, who: str = admin) -> Any:
        return await act(who, "token.revoke", body.model_dump())

    @api.get("/keys", response_model=list[Key], summary="Signing keys and their states")
    async def keys(_who: str = admin) -> Any:
        return list_keys(services)

    @api.post("/keys/rotate", summary="Rotate the signing keys now")
    async def rotate_keys(who: str = admin) -> Any:
        return await act(who, "key.rotate", {})

    @api.get("/usage", response_model=Usage, summary="Live usage and monitor health")
    async def usage(_who: str = admin) -> Any:
        return {
            "usage": services.monitor.stats.snapshot(services.clock()),
            "health": services.monitor.health(),
        }

    @api.get("/alerts", response_model=list[AlertOut], summary="Recent alerts, newest first")
    async def alerts(_who: str = admin) -> Any:
        return [alert.as_dict() for alert in services.monitor.alerts.recent(500)]

    @api.post("/alerts/{alert_id}/respond", response_model=AlertOut, summary="Respond to an alert")
    async def respond(alert_id: str, body: AlertResponse, who: str = admin) -> Any:
        return await act(who, "alert.respond", {"alert_id": alert_id, "action": body.action})

    @api.get("/blocklist", response_model=list[Blocked], summary="Blocked addresses")
    async def blocklist(_who: str = admin) -> Any:
        return [_entry(entry) for entry in services.monitor.blocklist.entries()]

    @api.post("/blocklist", summary="Block an address for a while")
    async def block(body: Block, who: str = admin) -> Any:
        return await act(who, "ip.block", body.model_dump())

    @api.delete("/blocklist/{ip}", summary="Unblock an address")
    async def unblock(ip: str, who: str = admin) -> Any:
        return await act(who, "ip.unblock", {"ip": ip})

    return api


def _entry(entry: Any) -> dict[str, Any]:
    return {"ip": entry.ip, "until": entry.until, "reason": entry.reason, "by": entry.by}
