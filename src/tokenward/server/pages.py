"""HTML pages and browser cookies: templates, security headers, session and CSRF cookies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse, RedirectResponse, Response

from tokenward.oauth.csrf import CsrfTokens

SESSION_COOKIE = "tw_session"
CSRF_COOKIE = "tw_csrf"
CSRF_PURPOSE = "browser"  # the sign-in, consent, device and logout pages (the console has its own)
_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    auto_reload=False,
)
PAGE_HEADERS = {
    "cache-control": "no-store",
    "pragma": "no-cache",
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}

# The second-factor pages: the passkey script from this origin, and the QR code as a data: image.
SCRIPT_PAGE_HEADERS = {
    **PAGE_HEADERS,
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; img-src data:; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


def script_json(text: str) -> Markup:
    """JSON to put inside a <script type="application/json">: `<` escaped, so no value (a
    username) can close the element. Markup: it is escaped for its place here, which is not
    HTML's escaping (entities are not decoded inside a script element)."""
    return Markup(  # noqa: S704 - escaped above for a script element
        text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    )


def cookie_name(name: str, secure: bool) -> str:
    """`__Host-` over https (Secure, Path=/, no Domain): no sibling domain and no plain-http
    page can set or overwrite it. Over http, which the issuer allows on loopback only, the
    prefix is impossible (it requires Secure, and most clients keep no Secure cookie over
    http), so there the bare name."""
    return f"__Host-{name}" if secure else name


class Browser:
    """Cookie names and attributes follow the issuer: `__Host-` and Secure over https."""

    def __init__(self, issuer: str, csrf: CsrfTokens) -> None:
        self.secure = issuer.startswith("https://")
        self.session_cookie = cookie_name(SESSION_COOKIE, self.secure)
        self.csrf_cookie = cookie_name(CSRF_COOKIE, self.secure)
        self._csrf = csrf

    def session_of(self, request: HTTPConnection) -> str | None:
        return request.cookies.get(self.session_cookie)

    def csrf_cookie_of(self, request: HTTPConnection) -> str | None:
        return request.cookies.get(self.csrf_cookie)

    def csrf(self, request: HTTPConnection) -> str:
        """The browser's CSRF token if we issued it (several tabs share it), else a new one."""
        return self._csrf.issue(self.csrf_cookie_of(request), CSRF_PURPOSE)

    def csrf_ok(self, request: HTTPConnection, field: str | None) -> bool:
        """A form's `csrf` field equals this browser's cookie, and the cookie is one of ours."""
        return self._csrf.matches(self.csrf_cookie_of(request), field, CSRF_PURPOSE)

    def page(
        self, template: str, status: int = 200, csrf: str | None = None, **context: Any
    ) -> HTMLResponse:
        html = _TEMPLATES.get_template(template).render(**context)
        response = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
        if csrf is not None:
            self.set_cookie(response, self.csrf_cookie, csrf, max_age=3600, same_site="strict")
        return response

    def script_page(
        self, template: str, status: int = 200, csrf: str | None = None, **context: Any
    ) -> HTMLResponse:
        """A page that runs /assets/passkeys.js or shows a QR code (SCRIPT_PAGE_HEADERS)."""
        response = self.page(template, status, csrf, **context)
        response.headers["content-security-policy"] = SCRIPT_PAGE_HEADERS["content-security-policy"]
        return response

    def message(
        self, title: str, message: str, status: int = 400, *, error: bool = True
    ) -> HTMLResponse:
        return self.page("message.html", status, title=title, message=message, error=error)

    @staticmethod
    def redirect(location: str, status: int = 302) -> RedirectResponse:
        """`status`: 303 for a client under the fapi2 profile (FAPI 2.0 §5.3.2.2: a 307 would
        make the browser re-post the user's credentials to the client)."""
        headers = {"cache-control": "no-store", "pragma": "no-cache"}
        return RedirectResponse(location, status_code=status, headers=headers)

    def set_session(self, response: Response, secret: str) -> None:
        self.set_cookie(response, self.session_cookie, secret, max_age=None, same_site="lax")

    def clear_session(self, response: Response) -> None:
        response.delete_cookie(
            self.session_cookie, path="/", secure=self.secure, httponly=True, samesite="lax"
        )

    def set_cookie(
        self, response: Response, name: str, value: str, *, max_age: int | None, same_site: str
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite=same_site,  # type: ignore[arg-type]
        )
