"""The admin console under /admin: server-rendered pages, a session cookie of its own, and
every state change a POST form guarded by double-submit CSRF and an Origin check, then audited.

Cookies: `tw_admin` (the session secret) and `tw_admin_csrf` (a token only this server issues),
both HttpOnly, SameSite=Strict, Path=/; over https they are `__Host-` prefixed and Secure. Pages
allow scripts and styles from this origin only (the chart library is served from /admin/static,
no CDN).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from tokenward.core.assurance import LEVELS, MFA, PHR, TOTP
from tokenward.monitor.pipeline import Monitor
from tokenward.oauth.errors import OAuthError
from tokenward.oauth.interaction import InteractionSealer
from tokenward.oauth.mtls import SUBJECT_FIELDS
from tokenward.oauth.sessions import ActiveSession, SessionManager
from tokenward.oauth.token_endpoint import NO_STORE
from tokenward.server.console import ConsolePages
from tokenward.server.dependencies import (
    Actions,
    Clock,
    Console,
    Factors,
    Interactions,
    MonitorDep,
    Queries,
    Sessions,
    SignInDep,
)
from tokenward.server.edge import JSONResponse, client_ip
from tokenward.server.signin import attempt_sign_in, single
from tokenward.server.steps import passkey_signin_fields
from tokenward.services.admin_actions import ActionError
from tokenward.services.console import ConsoleQueries
from tokenward.services.passkeys import MAX_CREDENTIAL_JSON, PasskeyError
from tokenward.services.recovery_codes import looks_like_recovery_code
from tokenward.services.second_factors import SecondFactors
from tokenward.services.views import is_admin

STATIC = Path(__file__).resolve().parents[1] / "static" / "admin"
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# One form per section; the `op` field picks the action, the other fields are its parameters.
SECTION_OPS: dict[str, dict[str, str]] = {
    "clients": {
        "create": "client.create",
        "disable": "client.disable",
        "enable": "client.enable",
        "rotate": "client.rotate_secret",
        "approve": "client.approve",
        "reject": "client.reject",
        "keys": "client.set_keys",
        "min_acr": "client.set_min_acr",
    },
    "users": {
        "disable": "user.disable",
        "enable": "user.enable",
        "logout": "user.logout",
        "reset_factors": "user.reset_factors",
    },
    "sessions": {"revoke": "session.revoke", "revoke_grant": "grant.revoke"},
    "keys": {"rotate": "key.rotate"},
    "alerts": {"respond": "alert.respond", "block": "ip.block", "unblock": "ip.unblock"},
}
LIST_FIELDS = ("grant_types", "redirect_uris", "post_logout_redirect_uris")
router = APIRouter(prefix="/admin", include_in_schema=False)
CONSOLE_PASSKEY = "console-passkey"  # the sealed interaction of the console's passkey form
NOT_ADMIN = "This account may not use the admin console."


@functools.cache
def _assets() -> dict[str, bytes]:
    """The console's scripts and styles, read once."""
    return {p.name: p.read_bytes() for p in STATIC.iterdir() if p.suffix in STATIC_TYPES}


def _audit_login(monitor: Monitor, username: str, error: str | None = None) -> None:
    if monitor.audit is None:
        return
    details = {} if error is None else {"error": error}  # a success line carries no error field
    monitor.audit.admin_action(f"user:{username}", "console.login", "console", **details)


# --- sign-in -------------------------------------------------------------------------------
@router.get("")
@router.get("/")
async def home(request: Request, console: Console) -> Response:
    signed_in = await console.admin(request)
    return console.browser.redirect("/admin/dashboard" if signed_in else "/admin/login")


def _login_page(
    request: Request,
    console: ConsolePages,
    interactions: InteractionSealer,
    factors: SecondFactors,
    status: int = 200,
    *,
    username: str = "",
    error: str | None = None,
) -> Response:
    """The sign-in form: a password (and a code), or a passkey alone (POST /admin/login/passkey),
    with the sign-in pages' passkey form and script (server/steps.py)."""
    token = console.token(request)
    passkey = passkey_signin_fields({}, token, interactions, factors, kind=CONSOLE_PASSKEY)
    return console.page(
        request, "login.html", status, token=token, username=username, error=error, **passkey
    )


@router.get("/login")
async def login_form(
    request: Request, console: Console, interactions: Interactions, factors: Factors
) -> Response:
    return _login_page(request, console, interactions, factors)


@router.post("/login")
async def login(
    request: Request,
    console: Console,
    sign_in: SignInDep,
    sessions: Sessions,
    monitor: MonitorDep,
    factors: Factors,
    interactions: Interactions,
) -> Response:
    page = functools.partial(_login_page, request, console, interactions, factors)
    pairs, problem = await console.checked_form(request)
    if pairs is None:
        return page(403, error=problem)
    attempt = await attempt_sign_in(sign_in, request, pairs)
    username = next((v for k, v in pairs if k == "username"), "")[:256]
    if attempt.session is None or attempt.cookie_secret is None:
        _audit_login(monitor, username, "failed")
        return page(attempt.status, username=username, error=attempt.error)
    if not is_admin(attempt.session.user):
        await sessions.end(attempt.session.record.session_id)
        _audit_login(monitor, username, "no role")
        return page(403, username=username, error=NOT_ADMIN)
    raised, refusal = await _second_factor(request, pairs, attempt.session, sessions, factors)
    if refusal is not None:
        sign_in.report_failure(client_ip(request) or "unknown", username, "wrong_second_factor")
        await sessions.end(attempt.session.record.session_id)
        _audit_login(monitor, username, "second factor")
        return page(401, username=username, error=refusal)
    _audit_login(monitor, username)
    response = console.see_other("/admin/dashboard")
    cookie = raised or attempt.cookie_secret
    console.cookie(response, console.session_cookie, cookie, None)
    return response


async def _second_factor(
    request: Request,
    pairs: list[tuple[str, str]],
    session: ActiveSession,
    sessions: SessionManager,
    factors: SecondFactors,
) -> tuple[str | None, str | None]:
    """An admin who set up a second factor signs in to the console with it: the form's code
    (an authenticator app's or a recovery code). (the raised session's cookie secret, or None
    when the account has no second factor; the refusal to show, or None)."""
    user = session.user
    methods = await factors.catalogue.methods(user.user_id)
    if not methods:
        return None, None
    if TOTP not in methods:  # passkeys only: the passkey is the sign-in, not the password
        return None, "This account signs in with a passkey: use Sign in with a passkey."
    code = (single(pairs, "code") or "")[:64]
    ip = client_ip(request) or "unknown"
    if looks_like_recovery_code(code):
        check = await factors.recovery.use_throttled(user.user_id, user.username, code, ip)
    else:
        check = await factors.totp.verify(user.user_id, user.username, code, ip)
    if not check.ok:
        return None, check.error or "The code is not right."
    started = await sessions.start_for(user.user_id, MFA, replacing=session.record.session_id)
    if started is None:
        return None, "This account may not use the admin console."
    return started[0], None


@router.post("/login/passkey")
async def login_passkey(
    request: Request,
    console: Console,
    sign_in: SignInDep,
    sessions: Sessions,
    monitor: MonitorDep,
    factors: Factors,
    interactions: Interactions,
) -> Response:
    """A passkey alone (usernameless, with user verification: phishing-resistant), as on the
    sign-in pages (routes/factors.py); the credential names the user, who must be an admin."""
    page = functools.partial(_login_page, request, console, interactions, factors)
    pairs, problem = await console.checked_form(request)
    if pairs is None:
        return page(403, error=problem)
    try:
        state = await interactions.open(
            CONSOLE_PASSKEY, single(pairs, "interaction"), request.cookies.get(console.csrf_cookie)
        )
    except OAuthError as exc:
        return page(400, error=f"The passkey was not accepted: {exc.description}.")
    credential = (single(pairs, "credential") or "")[:MAX_CREDENTIAL_JSON]
    try:
        user_id = await factors.passkeys.authenticate(credential, str(state.get("challenge", "")))
    except PasskeyError as exc:
        sign_in.report_failure(client_ip(request) or "unknown", "", "wrong_second_factor")
        _audit_login(monitor, "", "passkey")  # no username: the passkey named nobody we know
        return page(401, error=f"The passkey was not accepted: {exc}.")
    started = await sessions.start_for(user_id, PHR)
    if started is None:
        return page(401, error="The passkey was not accepted: this account is disabled.")
    secret, session = started
    username = session.user.username
    if not is_admin(session.user):
        await sessions.end(session.record.session_id)
        _audit_login(monitor, username, "no role")
        return page(403, error=NOT_ADMIN)
    _audit_login(monitor, username)
    response = console.see_other("/admin/dashboard")
    console.cookie(response, console.session_cookie, secret, None)
    return response


@router.post("/logout")
async def logout(request: Request, console: Console, sessions: Sessions) -> Response:
    session = await console.admin(request)
    pairs, _problem = await console.checked_form(request)
    if session is not None and pairs is not None:
        await sessions.end(session.record.session_id)
    response = console.see_other("/admin/login")
    response.delete_cookie(
        console.session_cookie, path="/", secure=console.secure, httponly=True, samesite="strict"
    )
    return response


@router.get("/usage.json", name="admin_usage")
async def usage(request: Request, console: Console, monitor: MonitorDep, clock: Clock) -> Response:
    if await console.admin(request) is None:
        return JSONResponse({"error": "sign in"}, status_code=401, headers=NO_STORE)
    body = {"usage": monitor.stats.snapshot(clock()), "health": monitor.health()}
    return JSONResponse(body, headers=NO_STORE)


@router.get("/static/{name}")
async def static(name: str) -> Response:
    body = _assets().get(name)
    if body is None:
        return Response(status_code=404)
    media = STATIC_TYPES[Path(name).suffix]
    return Response(
        body,
        media_type=media,
        headers={"cache-control": "max-age=300", "x-content-type-options": "nosniff"},
    )


# --- pages ---------------------------------------------------------------------------------
async def _section_context(
    section: str, queries: ConsoleQueries, monitor: Monitor, clock: Callable[[], float]
) -> dict[str, Any]:
    if section == "clients":
        # The RFC 8705 subject fields, named once: the form's inputs and the table's column.
        return {
            "clients": await queries.clients(),
            "levels": LEVELS,
            "tls_subject_fields": SUBJECT_FIELDS,
        }
    if section == "users":
        return {"users": await queries.users()}
    if section == "sessions":
        return {"sessions": await queries.sessions(), "grants": await queries.grants()}
    if section == "keys":
        return {"keys": queries.keys()}
    if section == "alerts":
        return {
            "alerts": [a.as_dict() for a in monitor.alerts.recent(200)],
            "blocked": monitor.blocklist.entries(),
            "risk": monitor.risk.rows(100) if monitor.risk is not None else None,
        }
    return {
        "usage": monitor.stats.snapshot(clock()),
        "alerts": [a.as_dict() for a in monitor.alerts.recent(8)],
        "health": monitor.health(),
    }


class _Section:
    """One console page, rendered for the signed-in admin (else to the sign-in page)."""

    def __init__(
        self,
        console: ConsolePages,
        queries: ConsoleQueries,
        monitor: Monitor,
        clock: Callable[[], float],
    ) -> None:
        self.console = console
        self._queries = queries
        self._monitor = monitor
        self._clock = clock

    async def render(
        self, request: Request, section: str, status: int = 200, **extra: Any
    ) -> Response:
        session = await self.console.admin(request)
        if session is None:
            return self.console.see_other("/admin/login")
        context = await _section_context(section, self._queries, self._monitor, self._clock)
        return self.console.page(
            request,
            f"{section}.html",
            status,
            section=section,
            admin=session.user.username,
            now=self._clock(),
            **context,
            **extra,
        )


def _section(console: Console, queries: Queries, monitor: MonitorDep, clock: Clock) -> _Section:
    return _Section(console, queries, monitor, clock)


SectionPage = Annotated[_Section, Depends(_section)]


@router.get("/{section}")
async def show(request: Request, section: str, page: SectionPage) -> Response:
    if section not in SECTION_OPS and section != "dashboard":
        return page.console.browser.message("Not found", "There is no such console page.", 404)
    return await page.render(request, section)


def _params(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """The form's fields; the list fields (repeated, blanks dropped) as lists."""
    params: dict[str, Any] = {k: v for k, v in pairs if k not in LIST_FIELDS}
    for name in LIST_FIELDS:
        params[name] = [v.strip() for k, v in pairs if k == name and v.strip()]
    return params


@router.post("/{section}")
async def act(
    request: Request,
    section: str,
    page: SectionPage,
    actions: Actions,
) -> Response:
    console = page.console
    session = await console.admin(request)
    ops = SECTION_OPS.get(section)
    if session is None or ops is None:
        return console.browser.message("Sign in again", "Your console session ended.", 401)
    pairs, problem = await console.checked_form(request)
    if pairs is None:
        return await page.render(request, section, 403, error=problem)
    params = _params(pairs)
    action = ops.get(str(params.pop("op", "")))
    if action is None:
        return await page.render(request, section, 400, error="Unknown operation.")
    try:
        result = await actions.perform(f"user:{session.user.username}", "console", action, params)
    except ActionError as exc:
        return await page.render(request, section, 400, error=str(exc))
    return await page.render(request, section, notice=_notice(action), result=result)


def _notice(action: str) -> str:
    return {
        "client.create": "Client created. Copy the secret now: it is not shown again.",
        "client.rotate_secret": "Secret rotated. Copy the new secret now: it is not shown again.",
        "client.set_keys": "Client keys replaced.",
        "client.set_min_acr": "The client's minimum sign-in is changed; its next sign-ins ask "
        "for it.",
        "client.approve": "App approved: its developer can now reveal its secret in the portal.",
        "client.reject": "App rejected: it gets no tokens.",
        "client.disable": "Client disabled; its tokens are revoked.",
        "client.enable": "Client enabled.",
        "user.disable": "User disabled, signed out everywhere, tokens revoked.",
        "user.enable": "User enabled.",
        "user.logout": "User signed out everywhere; every token issued so far is revoked.",
        "user.reset_factors": "Second factors removed and the user signed out everywhere, "
        "every token revoked: they sign in by password and set up new ones at /account.",
        "session.revoke": "Session ended; its tokens are revoked.",
        "grant.revoke": "Consent withdrawn; the user's tokens are revoked.",
        "key.rotate": "Keys rotated.",
        "alert.respond": "Response carried out.",
        "ip.block": "Address blocked.",
        "ip.unblock": "Address unblocked.",
    }.get(action, "Done.")
