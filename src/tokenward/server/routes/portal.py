"""/portal, the developer portal (docs/portal.md): the API catalogue built from the gateway's
routes and OpenAPI documents, and the developer's own apps: register one (pending an
operator's approval), reveal its secret once, rotate it, see its usage.

Developers sign in with their account at the server's own sign-in page (with their second
factor, if they have one); the pages use the browser session cookie. Every form carries the
browser's double-submit CSRF token and must come from this origin. Revealing or rotating a
secret needs a sign-in within the last ten minutes, like /account. Every page is no-store.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.responses import Response

from tokenward.oauth.errors import OAuthError
from tokenward.oauth.interaction import InteractionSealer
from tokenward.oauth.sessions import ActiveSession, SessionManager
from tokenward.server.console import origin_of, same_origin
from tokenward.server.dependencies import Factors, Interactions, Pages, Parts, Sessions
from tokenward.server.pages import Browser
from tokenward.server.portal_chart import usage_chart
from tokenward.server.routes.account import RECENT, gate
from tokenward.server.signin import form_pairs, single
from tokenward.services.portal import KINDS, DeveloperApps, PortalError
from tokenward.services.second_factors import SecondFactors

router = APIRouter(prefix="/portal", include_in_schema=False)
PORTAL_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HOME = "/portal"


async def _portal(parts: Parts) -> DeveloperApps:
    if parts.portal is None:  # the router is mounted only with a portal; fail closed anyway
        raise HTTPException(status_code=404)
    return parts.portal


Portal = Annotated[DeveloperApps, Depends(_portal)]


class _Pages:
    """The request's signed-in developer and the portal's page rendering."""

    def __init__(
        self,
        browser: Browser,
        interactions: InteractionSealer,
        sessions: SessionManager,
        factors: SecondFactors,
        portal: DeveloperApps,
    ) -> None:
        self.browser = browser
        self.interactions = interactions
        self.sessions = sessions
        self.factors = factors
        self.portal = portal
        self.origin = ""

    async def developer(
        self, request: Request, *, recent: int | None = None
    ) -> ActiveSession | Response:
        """The signed-in developer, or the sign-in (or second factor) page."""
        session = await self.sessions.current(self.browser.session_of(request))
        stop = await gate(
            session,
            request,
            self.browser,
            self.interactions,
            self.sessions,
            self.factors,
            next_page=HOME,
            recent=recent,
        )
        if stop is not None or session is None:
            return stop or self.browser.message("Sign in", "Sign in first.", 401)
        return session

    def page(
        self,
        request: Request,
        template: str,
        session: ActiveSession,
        status: int = 200,
        **context: Any,
    ) -> Response:
        csrf = self.browser.csrf(request)
        response = self.browser.page(
            f"portal/{template}",
            status,
            csrf,
            csrf_token=csrf,
            developer=session.user.username,
            catalogue=self.portal.catalogue,
            **context,
        )
        response.headers["content-security-policy"] = PORTAL_CSP
        response.headers["referrer-policy"] = "same-origin"  # our own posts carry an Origin
        return response

    async def checked_form(self, request: Request) -> list[tuple[str, str]] | None:
        """The form's pairs when it came from this origin with this browser's CSRF token."""
        if not same_origin(request, self.origin):
            return None
        try:
            pairs = await form_pairs(request)
            field = single(pairs, "csrf")
        except OAuthError:
            return None
        return pairs if self.browser.csrf_ok(request, field) else None

    def refused(self) -> Response:
        return self.browser.message(
            "The form was refused",
            "It expired or did not come from this portal; reload the page and try again.",
            403,
        )


async def _pages(
    parts: Parts,
    browser: Pages,
    interactions: Interactions,
    sessions: Sessions,
    factors: Factors,
    portal: Portal,
) -> _Pages:
    pages = _Pages(browser, interactions, sessions, factors, portal)
    pages.origin = origin_of(parts.settings.issuer)
    return pages


PortalPages = Annotated[_Pages, Depends(_pages)]


@router.get("")
@router.get("/")
async def catalogue(request: Request, pages: PortalPages) -> Response:
    who = await pages.developer(request)
    if isinstance(who, Response):
        return who
    return pages.page(request, "catalogue.html", who, section="apis")


@router.get("/apis/{name}")
async def api(request: Request, name: str, pages: PortalPages) -> Response:
    who = await pages.developer(request)
    if isinstance(who, Response):
        return who
    found = pages.portal.catalogue.named(name[:128])
    if found is None:
        return pages.page(request, "missing.html", who, 404, section="apis")
    return pages.page(request, "api.html", who, section="apis", api=found)


async def _apps_page(
    request: Request,
    pages: _Pages,
    who: ActiveSession,
    status: int = 200,
    **extra: Any,
) -> Response:
    apps = await pages.portal.of(who.user.user_id)
    return pages.page(
        request,
        "apps.html",
        who,
        status,
        section="apps",
        apps=apps,
        kinds=KINDS,
        max_apps=pages.portal.settings.max_apps,
        **extra,
    )


@router.get("/apps")
async def apps(request: Request, pages: PortalPages) -> Response:
    who = await pages.developer(request)
    if isinstance(who, Response):
        return who
    return await _apps_page(request, pages, who)


@router.post("/apps")
async def register(request: Request, pages: PortalPages) -> Response:
    who = await pages.developer(request)
    if isinstance(who, Response):
        return who
    pairs = await pages.checked_form(request)
    if pairs is None:
        return pages.refused()
    try:
        app = await pages.portal.register(
            who.user.user_id,
            name=(single(pairs, "name") or "")[:1000],
            kind=(single(pairs, "kind") or "")[:32],
            apis=[value[:128] for key, value in pairs if key == "api"],
            redirect_uris=(single(pairs, "redirect_uris") or "")[:12_000].split(),
        )
    except (PortalError, OAuthError) as exc:
        message = str(exc) if isinstance(exc, PortalError) else exc.description
        return await _apps_page(request, pages, who, 400, error=message)
    return pages.browser.redirect(f"{HOME}/apps/{app.client_id}", 303)


async def _app_page(
    request: Request,
    pages: _Pages,
    who: ActiveSession,
    client_id: str,
    status: int = 200,
    **extra: Any,
) -> Response:
    app = await pages.portal.get(who.user.user_id, client_id)
    if app is None:  # another developer's app looks exactly like a missing one
        return pages.page(request, "missing.html", who, 404, section="apps")
    chart = usage_chart(pages.portal.usage(app.client_id))
    return pages.page(
        request, "app.html", who, status, section="apps", app=app, chart=chart, **extra
    )


@router.get("/apps/{client_id}")
async def app(request: Request, client_id: str, pages: PortalPages) -> Response:
    who = await pages.developer(request)
    if isinstance(who, Response):
        return who
    return await _app_page(request, pages, who, client_id[:128])


@router.post("/apps/{client_id}/secret")
async def secret(request: Request, client_id: str, pages: PortalPages) -> Response:
    """`op=reveal`: the approved app's first secret; `op=rotate`: a new one. Shown once."""
    who = await pages.developer(request, recent=RECENT)
    if isinstance(who, Response):
        return who
    pairs = await pages.checked_form(request)
    if pairs is None:
        return pages.refused()
    client_id = client_id[:128]
    owner = who.user.user_id
    op = single(pairs, "op") if sum(key == "op" for key, _ in pairs) == 1 else None
    act = {"reveal": pages.portal.reveal_secret, "rotate": pages.portal.rotate_secret}.get(op or "")
    if act is None:
        return await _app_page(request, pages, who, client_id, 400, error="Unknown operation.")
    try:
        shown = await act(owner, client_id)
    except PortalError as exc:
        return await _app_page(request, pages, who, client_id, 400, error=str(exc))
    notice = (
        "Copy the secret now: it is not shown again."
        if op == "reveal"
        else "Secret rotated: the old one no longer works. Copy the new one now."
    )
    return await _app_page(request, pages, who, client_id, notice=notice, secret=shown)
