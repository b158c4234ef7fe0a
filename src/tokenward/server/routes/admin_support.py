"""What the admin console and the admin API share: who the admin is, CSRF and Origin checks,
the lists the pages show, and every state-changing action, each one audited.

An admin is a user with the role `tokenward:admin` (`tokenward.admin.set_admin`) signed in to
the console, or a bearer token carrying the scope `tokenward:admin` whose subject is such a user
or a client (client credentials) registered with that scope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import structlog
from fastapi import Request

from tokenward import admin
from tokenward.admin import AdminError
from tokenward.core.claims import AccessToken
from tokenward.core.records import SessionRecord
from tokenward.deploy.wiring import Services
from tokenward.monitor.alerts import without_secrets
from tokenward.monitor.responder import ResponseError
from tokenward.oauth.sessions import ActiveSession
from tokenward.server.pages import cookie_name
from tokenward.tokens.keyring import KeyRotationError

log = structlog.get_logger(__name__)
ADMIN_SCOPE = admin.ADMIN_ROLE
ADMIN_COOKIE = "tw_admin"
ADMIN_CSRF_COOKIE = "tw_admin_csrf"
ADMIN_CSRF_PURPOSE = "admin"  # a CSRF token of the sign-in pages is none for the console
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
MAX_LISTED = 500  # rows per list page


class ActionError(ValueError):
    """An action the admin must correct; the message says how."""


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(request: Request, expected: str) -> bool:
    """Origin must be ours; without Origin (older browsers), the Referer must be."""
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.lower() == expected
    referer = request.headers.get("referer")
    return referer is not None and origin_of(referer) == expected


async def console_admin(services: Services, request: Request) -> ActiveSession | None:
    name = cookie_name(ADMIN_COOKIE, services.settings.issuer.startswith("https://"))
    session = await services.sessions.current(request.cookies.get(name))
    return session if session is not None and admin.is_admin(session.user) else None


async def api_actor(services: Services, token: AccessToken) -> str | None:
    """`user:<name>` or `client:<id>` when the token's subject may administer, else None."""
    if ADMIN_SCOPE not in token.scopes:
        return None
    if token.sub == token.client_id:  # client credentials: the client acts for itself
        client = await services.stores.clients.get(token.client_id)
        ok = client is not None and not client.disabled and ADMIN_SCOPE in client.scopes
        return f"client:{token.client_id}" if ok else None
    user = await services.stores.users.get(token.sub)
    if user is None or user.disabled or not admin.is_admin(user):
        return None
    return f"user:{user.username}"


# --- lists ------------------------------------------------------------------------------------
async def list_users(services: Services) -> list[dict[str, Any]]:
    rows = []
    for user in list(await services.stores.users.list_all())[:MAX_LISTED]:
        sessions = await services.stores.sessions.for_user(user.user_id)
        rows.append(
            {
                "user_id": user.user_id,
                "username": user.username,
                "disabled": user.disabled,
                "admin": admin.is_admin(user),
                "active_sessions": sum(1 for s in sessions if _live(s, services.clock())),
            }
        )
    return rows


def _live(session: SessionRecord, now: float) -> bool:
    return session.ended_at is None and session.expires_at > now


async def list_sessions(services: Services) -> list[dict[str, Any]]:
    now = services.clock()
    rows: list[dict[str, Any]] = []
    for user in list(await services.stores.users.list_all())[:MAX_LISTED]:
        for session in await services.stores.sessions.for_user(user.user_id):
            if _live(session, now):
                rows.append(
                    {
                        "session_id": session.session_id,
                        "user_id": user.user_id,
                        "username": user.username,
                        "auth_time": session.auth_time,
                        "expires_at": session.expires_at,
                    }
                )
    return sorted(rows, key=lambda row: -row["auth_time"])[:MAX_LISTED]


async def list_grants(services: Services) -> list[dict[str, Any]]:
    """What users consented to, per client (the consent store has no listing: users by clients)."""
    clients = list(await services.stores.clients.list_all())[:MAX_LISTED]
    rows = []
    for user in list(await services.stores.users.list_all())[:MAX_LISTED]:
        for client in clients:
            scopes = await services.stores.consents.granted(user.user_id, client.client_id)
            if scopes:
                rows.append(
                    {
                        "user_id": user.user_id,
                        "username": user.username,
                        "client_id": client.client_id,
                        "scope": " ".join(sorted(scopes)),
                    }
                )
    return rows[:MAX_LISTED]


def list_keys(services: Services) -> list[dict[str, Any]]:
    return [
        {
            "kid": key.kid,
            "alg": key.alg.name,
            "state": key.state.value,
            "created_at": key.created_at,
            "activated_at": key.activated_at,
            "retiring_at": key.retiring_at,
            "retired_at": key.retired_at,
        }
        for key in services.keys.managed_keys()
    ]


async def list_clients(services: Services) -> list[dict[str, Any]]:
    clients = await services.stores.clients.list_all()
    return [admin.client_view(client) for client in list(clients)[:MAX_LISTED]]


# --- actions ----------------------------------------------------------------------------------
Action = Callable[[Services, dict[str, Any], str], Awaitable[dict[str, Any]]]


async def _create_client(services: Services, p: dict[str, Any], _actor: str) -> dict[str, Any]:
    return await admin.create_client(
        services,
        str(p.get("client_id") or "").strip(),
        grant_types=list(p.get("grant_types") or []),
        scope=str(p.get("scope") or ""),
        redirect_uris=list(p.get("redirect_uris") or []),
        post_logout_redirect_uris=list(p.get("post_logout_redirect_uris") or []),
        public=bool(p.get("public")),
        token_format=str(p.get("token_format") or "jwt"),
    )


async def _revoke_grant(services: Services, p: dict[str, Any], _actor: str) -> dict[str, Any]:
    user_id, client_id = str(p["user_id"]), str(p["client_id"])
    await services.stores.consents.withdraw(user_id, client_id)
    # Refresh families cannot be listed per client yet: the subject watermark ends them all.
    result = await admin.revoke(services, subject=user_id)
    return {"user_id": user_id, "client_id": client_id, "consent_withdrawn": True, **result}


async def _rotate_keys(services: Services, _p: dict[str, Any], _actor: str) -> dict[str, Any]:
    try:
        changed = await services.keys.rotate()
    except KeyRotationError as exc:
        raise ActionError(str(exc)) from None
    return {"changed": [{"kid": key.kid, "state": key.state.value} for key in changed]}


async def _respond(services: Services, p: dict[str, Any], actor: str) -> dict[str, Any]:
    try:
        alert = await services.monitor.respond(str(p["alert_id"]), str(p["action"]), actor)
    except KeyError:
        raise ActionError("no such alert (it may have aged out)") from None
    return alert.as_dict()


async def _block(services: Services, p: dict[str, Any], actor: str) -> dict[str, Any]:
    seconds = float(p.get("seconds") or 3600)
    if not 1 <= seconds <= 30 * 86400:
        raise ActionError("block for 1 second to 30 days")
    entry = services.monitor.blocklist.block(str(p["ip"]), seconds, "admin", actor)
    return {"ip": entry.ip, "until": entry.until}


async def _unblock(services: Services, p: dict[str, Any], _actor: str) -> dict[str, Any]:
    return {"ip": p["ip"], "unblocked": services.monitor.blocklist.unblock(str(p["ip"]))}


ACTIONS: dict[str, Action] = {
    "client.create": _create_client,
    "client.disable": lambda s, p, _a: admin.set_client_disabled(s, str(p["client_id"]), True),
    "client.enable": lambda s, p, _a: admin.set_client_disabled(s, str(p["client_id"]), False),
    "client.rotate_secret": lambda s, p, _a: admin.rotate_client_secret(s, str(p["client_id"])),
    "user.disable": lambda s, p, _a: admin.set_user_disabled(s, str(p["user_id"]), True),
    "user.enable": lambda s, p, _a: admin.set_user_disabled(s, str(p["user_id"]), False),
    "user.logout": lambda s, p, _a: admin.force_logout(s, str(p["user_id"])),
    "session.revoke": lambda s, p, _a: admin.end_session(s, str(p["session_id"])),
    "grant.revoke": _revoke_grant,
    "key.rotate": _rotate_keys,
    "token.revoke": lambda s, p, _a: admin.revoke(
        s,
        jti=p.get("jti"),
        subject=p.get("subject"),
        session=p.get("session"),
        client=p.get("client"),
    ),
    "alert.respond": _respond,
    "ip.block": _block,
    "ip.unblock": _unblock,
}


async def perform(
    services: Services, actor: str, via: str, action: str, params: dict[str, Any]
) -> dict[str, Any]:
    """Run one admin action and audit it, whether it worked or not. Raises ActionError."""
    audit = services.monitor.audit
    details = {k: v for k, v in params.items() if k not in ("password", "client_secret")}
    try:
        result = await ACTIONS[action](services, params, actor)
    except (AdminError, ActionError, ResponseError, KeyError, ValueError) as exc:
        message = str(exc) if not isinstance(exc, KeyError) else f"missing field {exc}"
        if audit is not None:
            audit.admin_action(actor, action, via, params=details, error=message)
        raise ActionError(message) from None
    if audit is not None:
        audit.admin_action(actor, action, via, params=details, result=without_secrets(result))
    else:
        log.info("admin_action", actor=actor, action=action, via=via, params=details)
    return result
