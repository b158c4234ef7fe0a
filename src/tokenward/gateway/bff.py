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

Sessions live behind the `SessionStore` port (gateway/bff_store.py): this process's memory, or
Redis shared by every gateway. The store holds them sealed (gateway/bff_seal.py): its key and
the record's AES-GCM key are both derived from the cookie, which only the browser has.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import structlog
from starlette.types import Scope

from tokenward.core.ratelimits import RatePolicy
from tokenward.gateway.bff_seal import PendingLogin, Sealed, SessionRecord, new_secret
from tokenward.gateway.bff_stepup import LOOP_WINDOW, step_up_from_query
from tokenward.gateway.bff_store import MemorySessionStore, SessionStore
from tokenward.gateway.model import BffSettings
from tokenward.gateway.policy import Denied

log = structlog.get_logger(__name__)
Headers = list[tuple[bytes, bytes]]
LOGIN_TTL = 600.0
# /login is unauthenticated and each call stores a pending sign-in for LOGIN_TTL: one address
# may start this many per minute (counted where the gateway's rate limits are: Redis when shared).
LOGIN_RATE = RatePolicy("bff-login", 30, 60.0, "ip")
REFRESH_AHEAD = 30.0  # refresh this long before the access token expires (at most half its life)
TOKEN_TIMEOUT = 10.0  # seconds for one call to the issuer
# The refresh lock outlives the holder's token request, so it is never taken over while the
# holder may still spend the refresh token; a waiter gives up after `refresh_wait` (503).
LOCK_TTL = TOKEN_TIMEOUT + 5.0
REFRESH_WAIT = 5.0
REFRESH_POLL = 0.05  # seconds between a waiter's looks at the lock holder's result
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


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
        store: SessionStore | None = None,
        refresh_wait: float = REFRESH_WAIT,
    ) -> None:
        """`store`: where sessions live (default: this process's memory)."""
        self.settings = settings
        self.endpoints = endpoints
        self._auth = httpx.BasicAuth(settings.client_id, client_secret)
        self._clock = clock
        self._transport = transport
        self.store: SessionStore = store if store is not None else MemorySessionStore(clock)
        self._refresh_wait = refresh_wait
        prefix = "__Host-" if settings.secure_cookies else ""
        self.session_cookie = f"{prefix}tw_session"
        self.csrf_cookie = f"{prefix}tw_csrf"
        self.login_cookie = f"{prefix}tw_login"
        self.step_up_cookie = f"{prefix}tw_stepup"  # loop protection (gateway/bff_stepup.py)
        self.paths = {
            settings.login_path: self._login,
            settings.callback_path: self._callback,
            settings.logout_path: self._logout,
        }

    @property
    def cookie_names(self) -> tuple[str, ...]:
        """Cookies the upstream never sees."""
        return (self.session_cookie, self.csrf_cookie, self.login_cookie, self.step_up_cookie)

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
        # RFC 9470 §4: a step-up asks the issuer for these; it honours both (max_age makes an
        # older sign-in authenticate again, OIDC Core §3.1.2.1), so no prompt=login is added.
        step_up = step_up_from_query(query)
        state, verifier = new_secret(), secrets.token_urlsafe(48)
        sealed = Sealed(state)
        marker = step_up.marker() if step_up is not None else ""
        pending = PendingLogin(verifier, return_to, self._clock() + LOGIN_TTL, marker)
        await self.store.put_login(sealed.key, sealed.seal(pending), LOGIN_TTL)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        params = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": self.settings.redirect_uri,
            "scope": " ".join(self.settings.scopes),
            "state": state,
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
            **(step_up.params() if step_up is not None else {}),
        }
        location = f"{self.endpoints.authorization}?{urlencode(params)}"
        cookie = self._cookie(self.login_cookie, state, int(LOGIN_TTL), http_only=True)
        return 302, [(b"location", location.encode("latin-1")), cookie]

    async def _callback(self, scope: Scope, cookies: dict[str, str]) -> tuple[int, Headers]:
        query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
        state = query.get("state", "")
        expected = cookies.get(self.login_cookie, "")
        sealed = Sealed.of(state)
        # The state must be issued to this very browser (login cookie) before it is taken, so
        # a callback URL lured into another browser does not even spend the real one's sign-in;
        # then ours and unexpired, taken once (a replay, here or at another gateway, finds none).
        pending = None
        if sealed is not None and hmac.compare_digest(state.encode(), expected.encode()):
            pending = sealed.pending(await self.store.take_login(sealed.key))
        if pending is None or pending.expires_at <= self._clock():
            raise Denied(400, "bff_state", "the sign-in could not be matched to this browser")
        if "code" not in query:
            raise Denied(400, "bff_denied", "the sign-in was not completed")
        tokens = await self._token_request(
            {
                "grant_type": "authorization_code",
                "code": query["code"],
                "redirect_uri": self.settings.redirect_uri,
                "code_verifier": pending.verifier,
            }
        )
        await self._retire(cookies)
        cookie, record = await self._new_session(tokens)
        max_age = int(self.settings.session_ttl)
        headers = [
            (b"location", pending.return_to.encode("latin-1")),
            self._cookie(self.session_cookie, cookie, max_age, True),
            self._cookie(self.csrf_cookie, record.csrf, max_age, False),
            self._cookie(self.login_cookie, "", 0, http_only=True),
        ]
        if pending.step_up:  # the same demand again soon means the sign-in fell short
            headers.append(self._cookie(self.step_up_cookie, pending.step_up, LOOP_WINDOW, True))
        return 302, headers

    async def _retire(self, cookies: dict[str, str]) -> None:
        """A new sign-in replaces the browser's session (a step-up's stronger one): the old
        record is forgotten and its refresh token revoked, not left to its TTL."""
        sealed = Sealed.of(cookies.get(self.session_cookie))
        if sealed is None:
            return
        record = sealed.session(await self.store.load(sealed.key, None))
        await self.store.delete(sealed.key)
        revocation = self.endpoints.revocation
        if record is not None and record.refresh_token and revocation:
            await self._revoke(revocation, record.refresh_token)

    async def _logout(self, scope: Scope, cookies: dict[str, str]) -> tuple[int, Headers]:
        if scope["method"] != "POST":
            raise Denied(405, "method_not_allowed", "sign out with POST")
        sealed, record = await self._session(cookies)
        self.check_csrf(scope, cookies, record)
        await self.store.delete(sealed.key)
        revocation = self.endpoints.revocation
        if record.refresh_token and revocation:
            await self._revoke(revocation, record.refresh_token)
        return 204, [
            self._cookie(self.session_cookie, "", 0, http_only=True),
            self._cookie(self.csrf_cookie, "", 0, http_only=False),
        ]

    # --- protected routes -------------------------------------------------------------------
    async def authorization(self, scope: Scope, cookies: dict[str, str]) -> str:
        """The Authorization value to validate for this browser request (CSRF checked)."""
        sealed, record = await self._session(cookies)
        if scope["method"] not in SAFE_METHODS:
            self.check_csrf(scope, cookies, record)
        if self._due(record):
            record = await self._refresh(sealed)
        return "Bearer " + record.access_token

    def check_csrf(self, scope: Scope, cookies: dict[str, str], record: SessionRecord) -> None:
        headers = scope["headers"]
        origin = next((v for n, v in headers if n == b"origin"), b"").decode("latin-1")
        sent = next((v for n, v in headers if n == b"x-csrf-token"), b"").decode("latin-1")
        cookie = cookies.get(self.csrf_cookie, "")
        if origin.rstrip("/") not in self.settings.allowed_origins:
            raise Denied(403, "csrf", "cross-site request refused (Origin)")
        if not (
            sent
            and hmac.compare_digest(sent.encode(), cookie.encode())
            and hmac.compare_digest(sent.encode(), record.csrf.encode())
        ):
            raise Denied(403, "csrf", "cross-site request refused (CSRF token)")

    async def _session(self, cookies: dict[str, str]) -> tuple[Sealed, SessionRecord]:
        sealed = Sealed.of(cookies.get(self.session_cookie))
        if sealed is None:
            raise Denied(401, "no_session", "sign in first")
        return sealed, await self._load(sealed)

    async def _load(self, sealed: Sealed) -> SessionRecord:
        """The session's current record; each read counts as activity (the idle timeout)."""
        record = sealed.session(await self.store.load(sealed.key, self.settings.idle_timeout))
        if record is None:
            raise Denied(401, "no_session", "sign in first")
        if record.ends_at <= self._clock():
            await self.store.delete(sealed.key)
            raise Denied(401, "no_session", "sign in first")
        return record

    def _due(self, record: SessionRecord) -> bool:
        return self._clock() >= record.access_expires_at - record.refresh_ahead

    def _ttl(self, record: SessionRecord) -> float:
        left = record.ends_at - self._clock()
        idle = self.settings.idle_timeout
        return min(left, idle) if idle is not None else left

    async def _refresh(self, sealed: Sealed) -> SessionRecord:
        """One refresh per session across every gateway sharing the store: the lock holder
        spends the (rotating) refresh token; the others wait for its result and reuse it."""
        owner = secrets.token_hex(16)
        give_up = time.monotonic() + self._refresh_wait
        while True:
            if await self.store.lock(sealed.key, owner, LOCK_TTL):
                try:
                    record = await self._load(sealed)  # refreshed meanwhile by the last holder?
                    return await self._rotate(sealed, record) if self._due(record) else record
                finally:
                    await self.store.unlock(sealed.key, owner)
            await asyncio.sleep(REFRESH_POLL)  # another request (or gateway) is refreshing
            record = await self._load(sealed)
            if not self._due(record):
                return record
            if time.monotonic() >= give_up:
                raise Denied(
                    503,
                    "bff_refresh_busy",
                    "the session is being refreshed; retry",
                    [(b"retry-after", b"1")],
                )

    async def _rotate(self, sealed: Sealed, record: SessionRecord) -> SessionRecord:
        if record.refresh_token is None:
            await self.store.delete(sealed.key)
            raise Denied(401, "session_expired", "the session expired; sign in again")
        try:
            tokens = await self._token_request(
                {"grant_type": "refresh_token", "refresh_token": record.refresh_token}
            )
        except Denied as exc:
            if exc.status >= 500:  # the issuer is unreachable: the refresh token is unspent
                raise
            await self.store.delete(sealed.key)
            raise Denied(401, "session_expired", "the session expired; sign in again") from None
        lifetime = float(tokens.get("expires_in", 300))
        fresh = replace(
            record,
            access_token=tokens["access_token"],
            refresh_token=tokens.get("refresh_token", record.refresh_token),
            access_expires_at=self._clock() + lifetime,
            refresh_ahead=min(REFRESH_AHEAD, lifetime / 2),
        )
        if not await self.store.replace(sealed.key, sealed.seal(fresh), self._ttl(fresh)):
            # Signed out meanwhile (maybe at another gateway, whose logout revoked the token
            # this refresh spent): the new tokens belong to no session, so none may stay live.
            await self._revoke_unclaimed(fresh)
            raise Denied(401, "no_session", "sign in first")
        return fresh

    async def _revoke_unclaimed(self, fresh: SessionRecord) -> None:
        revocation = self.endpoints.revocation
        if revocation is None:
            log.warning("bff_unclaimed_tokens_unrevoked", reason="no revocation endpoint")
            return
        if fresh.refresh_token:
            await self._revoke(revocation, fresh.refresh_token)
        # Access tokens may be revocable too (RFC 7009 §2: optional); a refusal is harmless.
        await self._revoke(revocation, fresh.access_token, "access_token")

    # --- talking to the issuer ----------------------------------------------------------------
    async def _token_request(self, form: dict[str, str]) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(
                transport=self._transport, timeout=TOKEN_TIMEOUT
            ) as client:
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

    async def _revoke(self, endpoint: str, token: str, hint: str = "refresh_token") -> None:
        form = {"token": token, "token_type_hint": hint}
        try:
            async with httpx.AsyncClient(
                transport=self._transport, timeout=TOKEN_TIMEOUT
            ) as client:
                await client.post(endpoint, data=form, auth=self._auth)
        except httpx.HTTPError as exc:  # the session is gone here either way
            log.warning("bff_revoke_failed", error=type(exc).__name__)

    async def _new_session(self, tokens: dict[str, Any]) -> tuple[str, SessionRecord]:
        now = self._clock()
        cookie = new_secret()
        lifetime = float(tokens.get("expires_in", 300))
        record = SessionRecord(
            access_token=tokens["access_token"],
            refresh_token=tokens.get("refresh_token"),
            access_expires_at=now + lifetime,
            refresh_ahead=min(REFRESH_AHEAD, lifetime / 2),
            csrf=secrets.token_urlsafe(32),
            ends_at=now + self.settings.session_ttl,
        )
        sealed = Sealed(cookie)
        await self.store.create(sealed.key, sealed.seal(record), self._ttl(record))
        return cookie, record

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
