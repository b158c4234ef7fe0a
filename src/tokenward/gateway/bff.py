"""Browser mode (backend for frontend): the gateway signs the user in with the authorization
code flow + PKCE, keeps the tokens server-side and hands the browser only an opaque session
cookie (HttpOnly, Secure, SameSite=Lax, `__Host-` prefixed). JavaScript never sees a token.

- `login_path`: starts the flow (state + PKCE S256 verifier kept here, bound to the browser by
  a short-lived HttpOnly cookie), redirects to the issuer's authorization endpoint.
- `callback_path`: checks state against that cookie, redeems the code at the token endpoint,
  creates the session, sets the session cookie and a CSRF cookie, redirects to `return_to`.
- routes with `auth: bff`: the session's access token is used as if the browser had sent it
  (validated like any bearer token), refreshed here shortly before it expires (one refresh per
  session at a time). Unsafe methods must pass the CSRF check: an `Origin` from
  `allowed_origins` and an `X-CSRF-Token` header equal to the CSRF cookie (double submit).
- `logout_path` (POST, CSRF-checked): revokes the refresh token, ends the session.

Sessions are kept in memory, keyed by a SHA-256 of the cookie value.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import structlog
from starlette.types import Scope

from tokenward.gateway.model import BffSettings
from tokenward.gateway.policy import Denied

log = structlog.get_logger(__name__)
Headers = list[tuple[bytes, bytes]]
LOGIN_TTL = 600.0
REFRESH_AHEAD = 30.0  # refresh this long before the access token expires
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


@dataclass
class Session:
    access_token: str
    refresh_token: str | None
    access_expires_at: float
    csrf: str
    ends_at: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class Endpoints:
    authorization: str
    token: str
    revocation: str | None


class Bff:
    def __init__(
        self,
        settings: BffSettings,
        endpoints: Endpoints,
        client_secret: str,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.endpoints = endpoints
        self._auth = httpx.BasicAuth(settings.client_id, client_secret)
        self._clock = clock
        self._transport = transport
        self._sessions: dict[str, Session] = {}
        self._logins: dict[str, tuple[str, str, float]] = {}  # state -> verifier, return_to, exp
        prefix = "__Host-" if settings.secure_cookies else ""
        self.session_cookie = f"{prefix}tw_session"
        self.csrf_cookie = f"{prefix}tw_csrf"
        self.login_cookie = f"{prefix}tw_login"
        self.paths = {
            settings.login_path: self._login,
            settings.callback_path: self._callback,
            settings.logout_path: self._logout,
        }

    @property
    def cookie_names(self) -> tuple[str, ...]:
        """Cookies the upstream never sees."""
        return (self.session_cookie, self.csrf_cookie, self.login_cookie)

    # --- the flow's own endpoints ----------------------------------------------------------
    async def endpoint(self, scope: Scope, cookies: dict[str, str]) -> tuple[int, Headers]:
        handler = self.paths[scope["path"]]
        return await handler(scope, cookies)

    async def _login(self, scope: Scope, cookies: dict[str, str]) -> tuple[int, Headers]:
        query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
        return_to = query.get("return_to", "/")
        # Only a local path: an open redirect here would hand users to any site after login.
        if not return_to.startswith("/") or return_to.startswith("//") or "\\" in return_to:
            return_to = "/"
        state, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        now = self._clock()
        self._logins = {k: v for k, v in self._logins.items() if v[2] > now}
        self._logins[state] = (verifier, return_to, now + LOGIN_TTL)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        params = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": self.settings.redirect_uri,
            "scope": " ".join(self.settings.scopes),
            "state": state,
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
        location = f"{self.endpoints.authorization}?{urlencode(params)}"
        cookie = self._cookie(self.login_cookie, state, int(LOGIN_TTL), http_only=True)
        return 302, [(b"location", location.encode("latin-1")), cookie]

    async def _callback(self, scope: Scope, cookies: dict[str, str]) -> tuple[int, Headers]:
        query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
        state = query.get("state", "")
        expected = cookies.get(self.login_cookie, "")
        pending = self._logins.pop(state, None) if state else None
        # The state must be ours, unexpired, and issued to this very browser (login cookie).
        if (
            pending is None
            or pending[2] <= self._clock()
            or not hmac.compare_digest(state.encode(), expected.encode())
        ):
            raise Denied(400, "bff_state", "the sign-in could not be matched to this browser")
        if "code" not in query:
            raise Denied(400, "bff_denied", "the sign-in was not completed")
        verifier, return_to, _ = pending
        tokens = await self._token_request(
            {
                "grant_type": "authorization_code",
                "code": query["code"],
                "redirect_uri": self.settings.redirect_uri,
                "code_verifier": verifier,
            }
        )
        session_id, session = self._new_session(tokens)
        headers = [
            (b"location", return_to.encode("latin-1")),
            self._cookie(self.session_cookie, session_id, int(self.settings.session_ttl), True),
            self._cookie(self.csrf_cookie, session.csrf, int(self.settings.session_ttl), False),
            self._cookie(self.login_cookie, "", 0, http_only=True),
        ]
        return 302, headers

    async def _logout(self, scope: Scope, cookies: dict[str, str]) -> tuple[int, Headers]:
        if scope["method"] != "POST":
            raise Denied(405, "method_not_allowed", "sign out with POST")
        session = self._session(cookies)
        self.check_csrf(scope, cookies, session)
        self._sessions.pop(_digest(cookies[self.session_cookie]), None)
        revocation = self.endpoints.revocation
        if session.refresh_token and revocation:
            await self._revoke(revocation, session.refresh_token)
        return 204, [
            self._cookie(self.session_cookie, "", 0, http_only=True),
            self._cookie(self.csrf_cookie, "", 0, http_only=False),
        ]

    # --- protected routes -------------------------------------------------------------------
    async def authorization(self, scope: Scope, cookies: dict[str, str]) -> str:
        """The Authorization value to validate for this browser request (CSRF checked)."""
        session = self._session(cookies)
        if scope["method"] not in SAFE_METHODS:
            self.check_csrf(scope, cookies, session)
        if self._clock() >= session.access_expires_at - REFRESH_AHEAD:
            await self._refresh(cookies[self.session_cookie], session)
        return "Bearer " + session.access_token

    def check_csrf(self, scope: Scope, cookies: dict[str, str], session: Session) -> None:
        headers = scope["headers"]
        origin = next((v for n, v in headers if n == b"origin"), b"").decode("latin-1")
        sent = next((v for n, v in headers if n == b"x-csrf-token"), b"").decode("latin-1")
        cookie = cookies.get(self.csrf_cookie, "")
        if origin.rstrip("/") not in self.settings.allowed_origins:
            raise Denied(403, "csrf", "cross-site request refused (Origin)")
        if not (
            sent
            and hmac.compare_digest(sent.encode(), cookie.encode())
            and hmac.compare_digest(sent.encode(), session.csrf.encode())
        ):
            raise Denied(403, "csrf", "cross-site request refused (CSRF token)")

    def _session(self, cookies: dict[str, str]) -> Session:
        value = cookies.get(self.session_cookie)
        session = self._sessions.get(_digest(value)) if value else None
        if session is None or session.ends_at <= self._clock():
            raise Denied(401, "no_session", "sign in first")
        return session

    async def _refresh(self, cookie: str, session: Session) -> None:
        async with session.lock:  # one refresh per session; the others wait and reuse it
            if self._clock() < session.access_expires_at - REFRESH_AHEAD:
                return
            if session.refresh_token is None:
                self._sessions.pop(_digest(cookie), None)
                raise Denied(401, "session_expired", "the session expired; sign in again")
            try:
                tokens = await self._token_request(
                    {"grant_type": "refresh_token", "refresh_token": session.refresh_token}
                )
            except Denied:
                self._sessions.pop(_digest(cookie), None)
                raise Denied(401, "session_expired", "the session expired; sign in again") from None
            session.access_token = tokens["access_token"]
            session.refresh_token = tokens.get("refresh_token", session.refresh_token)
            session.access_expires_at = self._clock() + float(tokens.get("expires_in", 300))

    # --- talking to the issuer ----------------------------------------------------------------
    async def _token_request(self, form: dict[str, str]) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(transport=self._transport, timeout=10) as client:
                response = await client.post(self.endpoints.token, data=form, auth=self._auth)
        except httpx.HTTPError as exc:
            log.warning("bff_token_unreachable", error=type(exc).__name__)
            raise Denied(502, "bff_issuer", "the sign-in service is unreachable") from None
        body = (
            response.json()
            if response.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        if response.status_code != 200 or not isinstance(body.get("access_token"), str):
            # Never log the body: it may hold tokens. The error code is enough.
            log.warning("bff_token_refused", status=response.status_code, error=body.get("error"))
            raise Denied(401, "bff_token", "the sign-in could not be completed")
        return dict(body)

    async def _revoke(self, endpoint: str, token: str) -> None:
        form = {"token": token, "token_type_hint": "refresh_token"}
        try:
            async with httpx.AsyncClient(transport=self._transport, timeout=10) as client:
                await client.post(endpoint, data=form, auth=self._auth)
        except httpx.HTTPError as exc:  # the session is gone here either way
            log.warning("bff_revoke_failed", error=type(exc).__name__)

    def _new_session(self, tokens: dict[str, Any]) -> tuple[str, Session]:
        now = self._clock()
        self._sessions = {k: s for k, s in self._sessions.items() if s.ends_at > now}
        session_id = secrets.token_urlsafe(32)
        session = Session(
            access_token=tokens["access_token"],
            refresh_token=tokens.get("refresh_token"),
            access_expires_at=now + float(tokens.get("expires_in", 300)),
            csrf=secrets.token_urlsafe(32),
            ends_at=now + self.settings.session_ttl,
        )
        self._sessions[_digest(session_id)] = session
        return session_id, session

    def _cookie(self, name: str, value: str, max_age: int, http_only: bool) -> tuple[bytes, bytes]:
        parts = [f"{name}={value}", "Path=/", f"Max-Age={max_age}"]
        # Lax: sent on top-level navigation back from the issuer (the callback needs it);
        # unsafe methods are covered by the CSRF check, not by SameSite alone.
        parts.append("SameSite=Lax")
        if self.settings.secure_cookies:
            parts.append("Secure")
        if http_only:
            parts.append("HttpOnly")
        return b"set-cookie", "; ".join(parts).encode("latin-1")


def parse_cookies(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for name, value in headers:
        if name == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:
                continue  # a malformed cookie header is ignored, not a 500
    return {key: morsel.value for key, morsel in jar.items()}


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()
