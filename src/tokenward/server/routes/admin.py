"""The admin console under /admin: server-rendered pages, a session cookie of its own, and
every state change a POST form guarded by double-submit CSRF and an Origin check, then audited.

Cookies: `tw_admin` (the session secret) and `tw_admin_csrf` (a token only this server issues),
both HttpOnly, SameSite=Strict, Path=/; over https they are `__Host-` prefixed and Secure. Pages
allow scripts and styles from this origin only (the chart library is served from /admin/static,
no CDN).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from tokenward import admin as actions
from tokenward.deploy.wiring import Services
from tokenward.oauth.errors import OAuthError
from tokenward.oauth.token_endpoint import NO_STORE
from tokenward.server.edge import JSONResponse
from tokenward.server.pages import Browser, cookie_name
from tokenward.server.routes.admin_support import (
    ADMIN_COOKIE,
    ADMIN_CSRF_COOKIE,
    ADMIN_CSRF_PURPOSE,
    CONSOLE_CSP,
    ActionError,
    console_admin,
    list_clients,
    list_grants,
    list_keys,
    list_sessions,
    list_users,
    origin_of,
    perform,
    same_origin,
)
from tokenward.server.signin import attempt_sign_in, form_pairs

STATIC = Path(__file__).resolve().parents[1] / "static" / "admin"
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# One form per section; the `op` field picks the action, the other fields are its parameters.
SECTION_OPS: dict[str, dict[str, str]] = {
    "clients": {
        "create": "client.create",
        "disable": "client.disable",
        "enable": "client.enable",
        "rotate": "client.rotate_secret",
    },
    "users": {"disable": "user.disable", "enable": "user.enable", "logout": "user.logout"},
    "sessions": {"revoke": "session.revoke", "revoke_grant": "grant.revoke"},
    "keys": {"rotate": "key.rotate"},
    "alerts": {"respond": "alert.respond", "block": "ip.block", "unblock": "ip.unblock"},
}
LIST_FIELDS = ("grant_types", "redirect_uris", "post_logout_redirect_uris")


def router(services: Services) -> APIRouter:
    api = APIRouter(prefix="/admin", include_in_schema=False)
    browser = Browser(services.settings.issuer, services.csrf)
    origin = origin_of(services.settings.issuer)
    secure = browser.secure
    session_cookie = cookie_name(ADMIN_COOKIE, secure)
    csrf_cookie = cookie_name(ADMIN_CSRF_COOKIE, secure)
    assets = {p.name: p.read_bytes() for p in STATIC.iterdir() if p.suffix in STATIC_TYPES}

    def cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",  # `__Host-` requires it
            secure=secure,
            httponly=True,
            samesite="strict",
        )

    def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
        csrf = services.csrf.issue(request.cookies.get(csrf_cookie), ADMIN_CSRF_PURPOSE)
        response = browser.page(f"admin/{template}", status, csrf=None, csrf_token=csrf, **context)
        response.headers["content-security-policy"] = CONSOLE_CSP
        # Not no-referrer: under it, browsers send `Origin: null` on our own form posts.
        response.headers["referrer-policy"] = "same-origin"
        cookie(response, csrf_cookie, csrf, 8 * 3600)
        return response

    async def checked_form(request: Request) -> tuple[list[tuple[str, str]] | None, str | None]:
        """The form pairs when Origin and CSRF are right; else (None, why)."""
        if not same_origin(request, origin):
            return None, "The request did not come from this console (Origin check)."
        try:
            pairs = await form_pairs(request)
        except OAuthError as exc:
            return None, exc.description
        field = next((v for k, v in pairs if k == "csrf"), None)
        if not services.csrf.matches(request.cookies.get(csrf_cookie), field, ADMIN_CSRF_PURPOSE):
            return None, "The form expired or was not sent by this console; reload and retry."
        return pairs, None

    # --- sign-in ---------------------------------------------------------------------------
    @api.get("")
    @api.get("/")
    async def home(request: Request) -> Response:
        signed_in = await console_admin(services, request)
        return browser.redirect("/admin/dashboard" if signed_in else "/admin/login")

    @api.get("/login")
    async def login_form(request: Request) -> Response:
        return page(request, "login.html", username="", error=None)

    @api.post("/login")
    async def login(request: Request) -> Response:
        pairs, problem = await checked_form(request)
        if pairs is None:
            return page(request, "login.html", 403, username="", error=problem)
        attempt = await attempt_sign_in(services, request, pairs)
        username = next((v for k, v in pairs if k == "username"), "")[:256]
        audit = services.monitor.audit
        if attempt.session is None or attempt.cookie_secret is None:
            if audit is not None:
                audit.admin_action(f"user:{username}", "console.login", "console", error="failed")
            return page(
                request, "login.html", attempt.status, username=username, error=attempt.error
            )
        if not actions.is_admin(attempt.session.user):
            await services.sessions.end(attempt.session.record.session_id)
            if audit is not None:
                audit.admin_action(f"user:{username}", "console.login", "console", error="no role")
            return page(
                request,
                "login.html",
                403,
                username=username,
                error="This account may not use the admin console.",
            )
        if audit is not None:
            audit.admin_action(f"user:{username}", "console.login", "console")
        response = browser.redirect("/admin/dashboard")
        response.status_code = 303
        cookie(response, session_cookie, attempt.cookie_secret, None)
        return response

    @api.post("/logout")
    async def logout(request: Request) -> Response:
        session = await console_admin(services, request)
        pairs, _problem = await checked_form(request)
        if session is not None and pairs is not None:
            await services.sessions.end(session.record.session_id)
        response = browser.redirect("/admin/login")
        response.status_code = 303
        response.delete_cookie(
            session_cookie, path="/", secure=secure, httponly=True, samesite="strict"
        )
        return response

    @api.get("/usage.json", name="admin_usage")
    async def usage(request: Request) -> Response:
        if await console_admin(services, request) is None:
            return JSONResponse({"error": "sign in"}, status_code=401, headers=NO_STORE)
        body = {
            "usage": services.monitor.stats.snapshot(services.clock()),
            "health": services.monitor.health(),
        }
        return JSONResponse(body, headers=NO_STORE)

    @api.get("/static/{name}")
    async def static(name: str) -> Response:
        body = assets.get(name)
        if body is None:
            return Response(status_code=404)
        media = STATIC_TYPES[Path(name).suffix]
        return Response(
            body,
            media_type=media,
            headers={"cache-control": "max-age=300", "x-content-type-options": "nosniff"},
        )

    # --- pages -----------------------------------------------------------------------------
    async def section_context(section: str) -> dict[str, Any]:
        if section == "clients":
            return {"clients": await list_clients(services)}
        if section == "users":
            return {"users": await list_users(services)}
        if section == "sessions":
            return {
                "sessions": await list_sessions(services),
                "grants": await list_grants(services),
            }
        if section == "keys":
            return {"keys": list_keys(services)}
        if section == "alerts":
            return {
                "alerts": [a.as_dict() for a in services.monitor.alerts.recent(200)],
                "blocked": services.monitor.blocklist.entries(),
            }
        return {
            "usage": services.monitor.stats.snapshot(services.clock()),
            "alerts": [a.as_dict() for a in services.monitor.alerts.recent(8)],
            "health": services.monitor.health(),
        }

    async def render(request: Request, section: str, status: int = 200, **extra: Any) -> Response:
        session = await console_admin(services, request)
        if session is None:
            response = browser.redirect("/admin/login")
            response.status_code = 303
            return response
        context = await section_context(section)
        return page(
            request,
            f"{section}.html",
            status,
            section=section,
            admin=session.user.username,
            now=services.clock(),
            **context,
            **extra,
        )

    @api.get("/{section}")
    async def show(request: Request, section: str) -> Response:
        if section not in SECTION_OPS and section != "dashboard":
            return browser.message("Not found", "There is no such console page.", 404)
        return await render(request, section)

    @api.post("/{section}")
    async def act(request: Request, section: str) -> Response:
        session = await console_admin(services, request)
        ops = SECTION_OPS.get(section)
        if session is None or ops is None:
            return browser.message("Sign in again", "Your console session ended.", 401)
        pairs, problem = await checked_form(request)
        if pairs is None:
            return await render(request, section, 403, error=problem)
        params: dict[str, Any] = {k: v for k, v in pairs if k not in LIST_FIELDS}
        for name in LIST_FIELDS:
            params[name] = [v.strip() for k, v in pairs if k == name and v.strip()]
        action = ops.get(str(params.pop("op", "")))
        if action is None:
            return await render(request, section, 400, error="Unknown operation.")
        try:
            result = await perform(
                services, f"user:{session.user.username}", "console", action, params
            )
        except ActionError as exc:
            return await render(request, section, 400, error=str(exc))
        return await render(request, section, notice=_notice(action), result=result)

    return api


def _notice(action: str) -> str:
    return {
        "client.create": "Client created. Copy the secret now: it is not shown again.",
        "client.rotate_secret": "Secret rotated. Copy the new secret now: it is not shown again.",
        "client.disable": "Client disabled; its tokens are revoked.",
        "client.enable": "Client enabled.",
        "user.disable": "User disabled, signed out everywhere, tokens revoked.",
        "user.enable": "User enabled.",
        "user.logout": "User signed out everywhere; every token issued so far is revoked.",
        "session.revoke": "Session ended; its tokens are revoked.",
        "grant.revoke": "Consent withdrawn; the user's tokens are revoked.",
        "key.rotate": "Keys rotated.",
        "alert.respond": "Response carried out.",
        "ip.block": "Address blocked.",
        "ip.unblock": "Address unblocked.",
    }.get(action, "Done.")
