"""The admin JSON API under /admin/api: the console's actions for scripts and tools.

Every call needs `Authorization: Bearer <token>` with the scope `tokenward:admin`, issued for
this server's API audience to an admin user or to a client registered with that scope. No
cookies are read, so there is nothing to forge across sites. Every change is audited.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from tokenward.core.claims import AccessToken
from tokenward.core.errors import InsufficientScope
from tokenward.oauth.token_endpoint import NO_STORE
from tokenward.resource.fastapi import BearerHTTPException, require_scopes
from tokenward.server.dependencies import Access, Actions, Clock, MonitorDep, Queries
from tokenward.server.edge import JSONResponse
from tokenward.services.admin_access import ADMIN_SCOPE
from tokenward.services.admin_actions import ActionError, AdminActions


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
    owner: str | None = None  # the developer portal's registrant (docs/portal.md): user id
    owner_name: str | None = None  # and username
    approval: str = "approved"  # approved | pending | rejected
    name: str = ""
    exchange_audiences: list[str] = []  # token exchange policy (docs/token-exchange.md)
    exchange_impersonation: bool = False
    access_token_alg: str | None = None  # None: the audience's, else the deployment's
    id_token_signed_response_alg: str = "RS256"
    backchannel_logout_uri: str | None = None
    jwks_uri: str | None = None  # the client's keys: fetched from here, or registered (kids)
    jwks_kids: list[str | None] = []
    require_pushed_authorization_requests: bool = False  # PAR, JAR (docs/fapi.md)
    require_signed_request_object: bool = False
    profile: str = "baseline"  # the security profile (docs/fapi2.md)
    min_acr: str | None = None  # the weakest sign-in it accepts (docs/second-factors.md)
    # RFC 8705 (docs/mtls.md): the one certificate subject field of a tls_client_auth client
    tls_client_auth_subject_dn: str | None = None
    tls_client_auth_san_dns: str | None = None
    tls_client_auth_san_uri: str | None = None
    tls_client_auth_san_ip: str | None = None
    tls_client_auth_san_email: str | None = None
    tls_client_certificate_bound_access_tokens: bool = False


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
    exchange_audiences: list[str] = Field([], max_length=16)
    exchange_impersonation: bool = False
    access_token_alg: str | None = Field(None, max_length=16)
    # Default: RS256, or ES256 for a client under the fapi2 profile.
    id_token_signed_response_alg: str | None = Field(None, max_length=16)
    # OpenID Back-Channel Logout 1.0: where logout tokens go (docs/continuous-access.md)
    backchannel_logout_uri: str | None = Field(None, max_length=2048)
    auth_method: str | None = Field(None, description="Default: by public, jwks, jwks_uri")
    jwks: dict[str, Any] | None = Field(None, description="The client's public keys (JWKS)")
    jwks_uri: str | None = Field(None, max_length=2048, description="Or where it publishes them")
    require_pushed_authorization_requests: bool = False
    require_signed_request_object: bool = False
    profile: Literal["baseline", "fapi2"] = "baseline"  # docs/fapi2.md
    # RFC 8705 (docs/mtls.md): exactly one for tls_client_auth, none for any other method
    tls_client_auth_subject_dn: str | None = Field(None, max_length=1024)
    tls_client_auth_san_dns: str | None = Field(None, max_length=253)
    tls_client_auth_san_uri: str | None = Field(None, max_length=2048)
    tls_client_auth_san_ip: str | None = Field(None, max_length=45)
    tls_client_auth_san_email: str | None = Field(None, max_length=320)
    tls_client_certificate_bound_access_tokens: bool | None = Field(
        None, description="Default: yes for tls_client_auth and self_signed_tls_client_auth"
    )
    min_acr: str | None = Field(None, max_length=64, description="An acr_values_supported level")


class MinAcr(BaseModel):
    """The weakest sign-in the client accepts; null: any (docs/second-factors.md)."""

    min_acr: str | None = Field(max_length=64)


class Passkey(BaseModel):
    id: str
    name: str
    created_at: float
    last_used_at: float | None = None


class Factors(BaseModel):
    """A user's second factors: which, how many, when; never a secret."""

    user_id: str
    totp: bool
    recovery_codes_left: int
    passkeys: list[Passkey]


class FactorsReset(BaseModel):
    """The factors are gone and so are the user's sessions and tokens (as a force logout)."""

    user_id: str
    factors_removed: int
    revoked: list[dict[str, Any]]
    at: str


class ClientKeys(BaseModel):
    """One of the two: the keys, or where the client publishes them (fetched and cached)."""

    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = Field(None, max_length=2048)


class NewRegistrationToken(BaseModel):
    """An initial access token for POST /register (RFC 7591 §3)."""

    ttl: float = Field(86400.0, description="Seconds it stays usable (60 s to 30 days)")
    max_uses: int | None = Field(None, description="Registrations it allows; none: unlimited")


class RegistrationToken(BaseModel):
    token_id: str
    created_at: str
    expires_at: str
    max_uses: int | None
    uses: int
    revoked: bool


class RegistrationTokenWithToken(RegistrationToken):
    token: str = Field(description="Shown once; only its digest is kept")


class User(BaseModel):
    user_id: str
    username: str
    disabled: bool
    admin: bool
    active_sessions: int
    totp: bool = False
    passkeys: int = 0


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
    client_name: str = ""  # as registered (client_name); empty: none
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


router = APIRouter(
    prefix="/admin/api", tags=["admin"], responses=ERRORS, dependencies=[Depends(_no_store)]
)
# The validator is app.state.tokenward_validator (this server's audience), set by create_app.
AdminToken = Annotated[AccessToken, Depends(require_scopes(ADMIN_SCOPE))]


async def _actor(token: AdminToken, access: Access) -> str:
    name = await access.api_actor(token)
    if name is None:
        error = InsufficientScope("the token's subject may not administer", scope=ADMIN_SCOPE)
        raise BearerHTTPException(error)
    return name


Admin = Annotated[str, Depends(_actor)]  # who acts: `user:<name>` or `client:<id>`


async def _act(actions: AdminActions, who: str, action: str, params: dict[str, Any]) -> Any:
    try:
        return await actions.perform(who, "api", action, params)
    except ActionError as exc:
        return JSONResponse(
            {"error": "invalid_request", "error_description": str(exc)},
            status_code=400,
            headers=NO_STORE,
        )


@router.get("/clients", response_model=list[Client], summary="List clients")
async def clients(_who: Admin, queries: Queries) -> Any:
    return await queries.clients()


@router.post("/clients", response_model=ClientWithSecret, status_code=201, summary="Create")
async def create_client(body: NewClient, who: Admin, actions: Actions) -> Any:
    return await _act(actions, who, "client.create", body.model_dump())


@router.post("/clients/{client_id}/disable", response_model=Client, summary="Disable a client")
async def disable_client(client_id: str, who: Admin, actions: Actions) -> Any:
    return await _act(actions, who, "client.disable", {"client_id": client_id})


@router.post("/clients/{client_id}/enable", response_model=Client, summary="Enable a client")
async def enable_client(client_id: str, who: Admin, actions: Actions) -> Any:
    return await _act(actions, who, "client.enable", {"client_id": client_id})


@router.post("/clients/{client_id}/approve", response_model=Client, summary="Approve an app")
async def approve_client(client_id: str, who: Admin, actions: Actions) -> Any:
    """A client registered in the developer portal may get tokens from now on."""
    return await _act(actions, who, "client.approve", {"client_id": client_id})


@router.post("/clients/{client_id}/reject", response_model=Client, summary="Reject an app")
async def reject_client(client_id: str, who: Admin, actions: Actions) -> Any:
    """A client registered in the developer portal never gets tokens."""
    return await _act(actions, who, "client.reject", {"client_id": client_id})


@router.post("/clients/{client_id}/rotate-secret", response_model=ClientWithSecret)
async def rotate_secret(client_id: str, who: Admin, actions: Actions) -> Any:
    return await _act(actions, who, "client.rotate_secret", {"client_id": client_id})


@router.put("/clients/{client_id}/keys", response_model=Client, summary="Replace client keys")
async def set_client_keys(client_id: str, body: ClientKeys, who: Admin, actions: Actions) -> Any:
    params = {"client_id": client_id, **body.model_dump()}
    return await _act(actions, who, "client.set_keys", params)


@router.post(
    "/registration-tokens",
    response_model=RegistrationTokenWithToken,
    status_code=201,
    summary="Create an initial access token for dynamic client registration",
)
async def create_registration_token(
    body: NewRegistrationToken, who: Admin, actions: Actions
) -> Any:
    return await _act(actions, who, "registration_token.create", body.model_dump())


@router.delete("/registration-tokens/{token_id}", summary="Revoke an initial access token")
async def revoke_registration_token(token_id: str, who: Admin, actions: Actions) -> Any:
    return await _act(actions, who, "registration_token.revoke", {"token_id": token_id})


@router.put("/clients/{client_id}/min-acr", response_model=Client, summary="Minimum sign-in")
async def set_min_acr(client_id: str, body: MinAcr, who: Admin, actions: Actions) -> Any:
    params = {"client_id": client_id, "min_acr": body.min_acr}
    return await _act(actions, who, "client.set_min_acr", params)


@router.get("/users/{user_id}/factors", response_model=Factors, summary="A user's factors")
async def user_factors(user_id: str, _who: Admin, queries: Queries) -> Any:
    found = await queries.user_factors(user_id)
    if found is None:
        return JSONResponse(
            {"error": "not_found", "error_description": f"no user {user_id!r}"},
            status_code=404,
            headers=NO_STORE,
        )
    return found


@router.delete(
    "/users/{user_id}/factors", response_model=FactorsReset, summary="Reset a user's factors"
)
async def reset_factors(user_id: str, who: Admin, actions: Actions) -> Any:
    return await _act(actions, who, "user.reset_factors", {"user_id": user_id})


@router.get("/users", response_model=list[User], summary="List users")
async def users(_who: Admin, queries: Queries) -> Any:
    return await queries.users()


@router.post("/users/{user_id}/disable", response_model=UserState, summary="Disable a user")
async def disable_user(user_id: str, who: Admin, actions: Actions) -> Any:
    return await _act(actions, who, "user.disable", {"user_id": user_id})


@router.post("/users/{user_id}/enable", response_model=UserState, summary="Enable a user")
async def enable_user(user_id: str, who: Admin, actions: Actions) -> Any:
    return await _act(actions, who, "user.enable", {"user_id": user_id})


@router.post("/users/{user_id}/logout", response_model=Revoked, summary="Force logout")
async def force_logout(user_id: str, who: Admin, actions: Actions) -> Any:
    return await _act(actions, who, "user.logout", {"user_id": user_id})


@router.get("/sessions", response_model=list[Session], summary="Active browser sessions")
async def sessions(_who: Admin, queries: Queries) -> Any:
    return await queries.sessions()


@router.post("/sessions/{session_id}/revoke", response_model=Revoked, summary="End a session")
async def revoke_session(session_id: str, who: Admin, actions: Actions) -> Any:
    return await _act(actions, who, "session.revoke", {"session_id": session_id})


@router.get("/grants", response_model=list[Grant], summary="Consents users gave clients")
async def grants(_who: Admin, queries: Queries) -> Any:
    return await queries.grants()


@router.post("/grants/revoke", summary="Withdraw a consent and revoke the user's tokens")
async def revoke_grant(body: GrantRef, who: Admin, actions: Actions) -> Any:
    return await _act(actions, who, "grant.revoke", body.model_dump())


@router.post("/revoke", response_model=Revoked, summary="Revoke by jti, subject, session, client")
async def revoke(body: RevokeRequest, who: Admin, actions: Actions) -> Any:
    return await _act(actions, who, "token.revoke", body.model_dump())


@router.get("/keys", response_model=list[Key], summary="Signing keys and their states")
async def keys(_who: Admin, queries: Queries) -> Any:
    return queries.keys()


@router.post("/keys/rotate", summary="Rotate the signing keys now")
async def rotate_keys(who: Admin, actions: Actions) -> Any:
    return await _act(actions, who, "key.rotate", {})


@router.get("/usage", response_model=Usage, summary="Live usage and monitor health")
async def usage(_who: Admin, monitor: MonitorDep, clock: Clock) -> Any:
    return {"usage": monitor.stats.snapshot(clock()), "health": monitor.health()}


@router.get("/alerts", response_model=list[AlertOut], summary="Recent alerts, newest first")
async def alerts(_who: Admin, monitor: MonitorDep) -> Any:
    return [alert.as_dict() for alert in monitor.alerts.recent(500)]


@router.post("/alerts/{alert_id}/respond", response_model=AlertOut, summary="Respond to an alert")
async def respond(alert_id: str, body: AlertResponse, who: Admin, actions: Actions) -> Any:
    params = {"alert_id": alert_id, "action": body.action}
    return await _act(actions, who, "alert.respond", params)


@router.get("/blocklist", response_model=list[Blocked], summary="Blocked addresses")
async def blocklist(_who: Admin, monitor: MonitorDep) -> Any:
    return [_entry(entry) for entry in monitor.blocklist.entries()]


@router.post("/blocklist", summary="Block an address for a while")
async def block(body: Block, who: Admin, actions: Actions) -> Any:
    return await _act(actions, who, "ip.block", body.model_dump())


@router.delete("/blocklist/{ip}", summary="Unblock an address")
async def unblock(ip: str, who: Admin, actions: Actions) -> Any:
    return await _act(actions, who, "ip.unblock", {"ip": ip})


def _entry(entry: Any) -> dict[str, Any]:
    return {"ip": entry.ip, "until": entry.until, "reason": entry.reason, "by": entry.by}
