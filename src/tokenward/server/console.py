"""What the admin console's pages share: who the admin is, its cookies, CSRF and Origin checks.

An admin is a user with the role `tokenward:admin` (services/users.py, `set_admin`) signed in
to the console, or a bearer token carrying the scope `tokenward:admin` whose subject is such a
user or a client (client credentials) registered with that scope (services/admin_access.py).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from starlette.responses import Response

from tokenward.oauth.csrf import CsrfTokens
from tokenward.oauth.errors import OAuthError
from tokenward.oauth.sessions import ActiveSession, SessionManager
from tokenward.server.pages import Browser, cookie_name
from tokenward.server.signin import form_pairs
from tokenward.services.views import is_admin

ADMIN_COOKIE = "tw_admin"
ADMIN_CSRF_COOKIE = "tw_admin_csrf"
ADMIN_CSRF_PURPOSE = "admin"  # a CSRF token of the sign-in pages is none for the console
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


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


class ConsolePages:
    """The console's cookies (named after the issuer: `__Host-` and Secure over https), its
    pages, and the checks every form post passes."""

    def __init__(self, issuer: str, csrf: CsrfTokens, sessions: SessionManager) -> None:
        self.browser = Browser(issuer, csrf)
        self.origin = origin_of(issuer)
        self.secure = self.browser.secure
        self.session_cookie = cookie_name(ADMIN_COOKIE, self.secure)
        self.csrf_cookie = cookie_name(ADMIN_CSRF_COOKIE, self.secure)
        self._csrf = csrf
        self._sessions = sessions

    async def admin(self, request: Request) -> ActiveSession | None:
        """The signed-in console user, if they still hold the admin role."""
        session = await self._sessions.current(request.cookies.get(self.session_cookie))
        return session if session is not None and is_admin(session.user) else None

    def cookie(self, response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",  # `__Host-` requires it
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    def token(self, request: Request) -> str:
        """The CSRF token the next page carries (the browser's own while it is young)."""
        return self._csrf.issue(request.cookies.get(self.csrf_cookie), ADMIN_CSRF_PURPOSE)

    def page(
        self,
        request: Request,
        template: str,
        status: int = 200,
        *,
        token: str | None = None,
        **context: Any,
    ) -> Response:
        """`token`: the CSRF token from `token(request)` when the page also sealed state to
        it (its passkey form); else one is issued here."""
        csrf = token or self.token(request)
        response = self.browser.page(
            f"admin/{template}", status, csrf=None, csrf_token=csrf, **context
        )
        response.headers["content-security-policy"] = CONSOLE_CSP
        # Not no-referrer: under it, browsers send `Origin: null` on our own form posts.
        response.headers["referrer-policy"] = "same-origin"
        self.cookie(response, self.csrf_cookie, csrf, 8 * 3600)
        return response

    def see_other(self, location: str) -> Response:
        response = self.browser.redirect(location)
        response.status_code = 303
        return response

    async def checked_form(
        self, request: Request
    ) -> tuple[list[tuple[str, str]] | None, str | None]:
        """The form pairs when Origin and CSRF are right; else (None, why)."""
        if not same_origin(request, self.origin):
            return None, "The request did not come from this console (Origin check)."
        try:
            pairs = await form_pairs(request)
        except OAuthError as exc:
            return None, exc.description
        field = next((v for k, v in pairs if k == "csrf"), None)
        cookie = request.cookies.get(self.csrf_cookie)
        if not self._csrf.matches(cookie, field, ADMIN_CSRF_PURPOSE):
            return None, "The form expired or was not sent by this console; reload and retry."
        return pairs, None
