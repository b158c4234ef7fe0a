"""HTML pages and browser cookies: templates, security headers, session and CSRF cookies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response

from tokenward.oauth.interaction import new_csrf_token

SESSION_COOKIE = "tw_session"
CSRF_COOKIE = "tw_csrf"
_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    auto_reload=False,
)
PAGE_HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


class Browser:
    """Cookie attributes follow the issuer: Secure whenever it is served over https."""

    def __init__(self, issuer: str) -> None:
        self.secure = issuer.startswith("https://")

    def page(
        self, template: str, status: int = 200, csrf: str | None = None, **context: Any
    ) -> HTMLResponse:
        html = _TEMPLATES.get_template(template).render(**context)
        response = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
        if csrf is not None:
            self.set_cookie(response, CSRF_COOKIE, csrf, max_age=3600, same_site="strict")
        return response

    def message(
        self, title: str, message: str, status: int = 400, *, error: bool = True
    ) -> HTMLResponse:
        return self.page("message.html", status, title=title, message=message, error=error)

    @staticmethod
    def redirect(location: str) -> RedirectResponse:
        return RedirectResponse(location, status_code=302, headers={"cache-control": "no-store"})

    def set_session(self, response: Response, secret: str) -> None:
        self.set_cookie(response, SESSION_COOKIE, secret, max_age=None, same_site="lax")

    def clear_session(self, response: Response) -> None:
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=self.secure, httponly=True, samesite="lax"
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


def csrf_for(cookie: str | None) -> str:
    """Reuse the browser's CSRF token when it has one, so several tabs keep working."""
    return cookie if cookie and 20 <= len(cookie) <= 128 else new_csrf_token()
