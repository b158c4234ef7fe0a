"""`TokenAuth`: an `httpx.Auth` that keeps a client's requests authorized without being asked.

Per request: the token as `Bearer`, or for a DPoP-bound token as `DPoP` with a fresh proof that
carries `ath` and the origin's latest nonce (RFC 9449 §7.1). Before a request, a token expiring
within `skew` seconds is renewed; after a `401 invalid_token` the token is renewed once and the
request retried once; after a `401 use_dpop_nonce` (§9) the request is retried once with the
new nonce; a `401 insufficient_user_authentication` (RFC 9470) raises `StepUpRequired` with
the acr_values and max_age the API asked for, or, with `step_up=True` on an interactive source
(`AuthorizationCodePKCE`), signs the user in again asking for them and retries the request
once (a second challenge raises). Renewal is single flight: one lock per mode (a
`threading.Lock` for `httpx.Client`, an `asyncio.Lock` for `httpx.AsyncClient`), and whoever
gets it second finds the work done.
Rotated refresh tokens go to the store at once and replace their predecessor everywhere.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncGenerator, Callable, Generator
from enum import Enum

import httpx

from tokenward.client.discovery import is_loopback
from tokenward.client.errors import (
    ClientError,
    InsecureTransportError,
    LoginRequired,
    OAuthResponseError,
    ServerUnreachable,
    StepUpRequired,
    StoreError,
    safe_text,
)
from tokenward.client.loopback import AuthorizationCodePKCE
from tokenward.client.nonces import NonceCache
from tokenward.client.storage import MemoryStore, TokenStore
from tokenward.client.token_source import TokenSource
from tokenward.client.tokens import TokenSet

log = logging.getLogger(__name__)
DEFAULT_SKEW = 30.0
# RFC 9110 §11.2 auth-param; a quoted value is consumed whole, so `error=` inside one is not seen.
_AUTH_PARAM = re.compile(r"""([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)""")


def challenge_errors(response: httpx.Response) -> set[str]:
    """The `error` values of every challenge in the response's WWW-Authenticate headers."""
    found = set()
    for header in response.headers.get_list("www-authenticate"):
        for name, value in _AUTH_PARAM.findall(header):
            if name.lower() == "error":
                found.add(value.strip('"'))
    return found


MAX_ACR_VALUES = 256


def step_up_of(response: httpx.Response) -> StepUpRequired | None:
    """RFC 9470 §3: the `insufficient_user_authentication` challenge, with what it asks for."""
    for header in response.headers.get_list("www-authenticate"):
        params = {name.lower(): value.strip('"') for name, value in _AUTH_PARAM.findall(header)}
        if params.get("error") != "insufficient_user_authentication":
            continue
        acr = safe_text(params.get("acr_values", ""))[:MAX_ACR_VALUES] or None
        age = params.get("max_age", "")
        max_age = int(age) if age.isdigit() and len(age) <= 10 else None
        return StepUpRequired(acr, max_age, params.get("error_description", ""))
    return None


def _step_up_required(response: httpx.Response) -> StepUpRequired:
    challenge = step_up_of(response)
    if challenge is None:  # only called for a response `_retry_for` found a challenge in
        raise StepUpRequired(None, None)
    return challenge


def _identity(tokens: TokenSet) -> tuple[str, str | None]:
    return tokens.access_token, tokens.refresh_token


class _Retry(Enum):
    NONCE = "nonce"
    REFRESH = "refresh"
    STEP_UP = "step_up"


class TokenAuth(httpx.Auth):
    requires_request_body = True  # so a refused request can be sent again, body and all

    def __init__(
        self,
        source: TokenSource,
        *,
        store: TokenStore | None = None,
        store_key: str | None = None,
        tokens: TokenSet | None = None,
        skew: float = DEFAULT_SKEW,
        clock: Callable[[], float] | None = None,
        allow_insecure_http: bool = False,
        step_up: bool = False,
    ) -> None:
        """`step_up`: on an RFC 9470 challenge, sign in again (the source's browser sign-in,
        with the challenge's acr_values and max_age) and retry once. Only a source that can
        ask the user, `AuthorizationCodePKCE`; others always raise `StepUpRequired`."""
        if step_up and not isinstance(source, AuthorizationCodePKCE):
            raise ValueError("step_up=True needs an interactive source (AuthorizationCodePKCE)")
        self._interactive = (
            source if step_up and isinstance(source, AuthorizationCodePKCE) else None
        )
        self.source = source
        self.store: TokenStore = store if store is not None else MemoryStore()
        self.store_key = store_key or source.store_key
        self.skew = skew
        self._clock = clock or source.clock
        self._allow_http = allow_insecure_http
        self._nonces = NonceCache()
        self._state = threading.Lock()  # guards _tokens; never held while waiting on anything
        self._tokens: TokenSet | None = None
        self._synced: tuple[str, str | None] | None = None  # what the store held when last seen
        self._sync_lock = threading.Lock()
        self._async_locks: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        if tokens is not None:
            self._keep(tokens, renewed=False)

    def __repr__(self) -> str:
        return f"TokenAuth(source={self.source!r}, store={self.store!r}, skew={self.skew!r})"

    # --- the current tokens, outside of requests --------------------------------------------
    def token(self) -> TokenSet:
        """A token set good for at least `skew` more seconds, renewed if it had to be."""
        tokens = self._current()
        if tokens is not None and not self._stale(tokens):
            return tokens
        with self._sync_lock:
            return self._renew_sync(tokens, proactive=True)

    async def atoken(self) -> TokenSet:
        tokens = self._current()
        if tokens is not None and not self._stale(tokens):
            return tokens
        async with self._async_lock():
            return await self._renew_async(tokens, proactive=True)

    # --- httpx.Auth ----------------------------------------------------------------------
    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        tokens = self.token()
        done: set[_Retry] = set()
        while True:
            response = yield self._authorized(request, tokens)
            retry = self._retry_for(response, tokens, done)
            if retry is None:
                return
            done.add(retry)
            if retry is _Retry.REFRESH:
                with self._sync_lock:
                    tokens = self._renew_sync(tokens, proactive=False)
            elif retry is _Retry.STEP_UP and self._interactive is not None:
                challenge = _step_up_required(response)
                with self._sync_lock:  # one sign-in for concurrent requests, not one each
                    tokens = self._stepped_up(tokens) or self._keep(
                        self._interactive.login(
                            acr_values=challenge.acr_values, max_age=challenge.max_age
                        )
                    )

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        tokens = await self.atoken()
        done: set[_Retry] = set()
        while True:
            response = yield self._authorized(request, tokens)
            retry = self._retry_for(response, tokens, done)
            if retry is None:
                return
            done.add(retry)
            if retry is _Retry.REFRESH:
                async with self._async_lock():
                    tokens = await self._renew_async(tokens, proactive=False)
            elif retry is _Retry.STEP_UP and self._interactive is not None:
                challenge = _step_up_required(response)
                async with self._async_lock():
                    tokens = self._stepped_up(tokens) or self._keep(
                        await self._interactive.alogin(
                            acr_values=challenge.acr_values, max_age=challenge.max_age
                        )
                    )

    def _authorized(self, request: httpx.Request, tokens: TokenSet) -> httpx.Request:
        url = request.url
        if url.scheme != "https" and not is_loopback(str(url)) and not self._allow_http:
            raise InsecureTransportError("refusing to send a token over plain http off this host")
        if not tokens.is_dpop:
            request.headers["authorization"] = f"Bearer {tokens.access_token}"
            return request
        if tokens.dpop_key is None:
            raise LoginRequired("the DPoP key these tokens are bound to is lost")
        request.headers["authorization"] = f"DPoP {tokens.access_token}"
        request.headers["dpop"] = tokens.dpop_key.proof(
            request.method, str(url), nonce=self._nonces.get(url), access_token=tokens.access_token
        )
        return request

    def _retry_for(
        self, response: httpx.Response, tokens: TokenSet, done: set[_Retry]
    ) -> _Retry | None:
        fresh_nonce = self._nonces.remember(response)
        if response.status_code != 401:
            return None
        step_up = step_up_of(response)
        if step_up is not None:
            if self._interactive is not None and _Retry.STEP_UP not in done:
                return _Retry.STEP_UP  # a new sign-in, asking for what the API wants
            raise step_up  # a new token from the same sign-in would be refused the same way
        errors = challenge_errors(response)
        if "use_dpop_nonce" in errors and tokens.is_dpop and fresh_nonce:
            return None if _Retry.NONCE in done else _Retry.NONCE
        if "invalid_token" in errors and _Retry.REFRESH not in done:
            return _Retry.REFRESH
        return None

    def _stepped_up(self, refused: TokenSet) -> TokenSet | None:
        """Tokens from a sign-in another request made while we waited for the lock."""
        current = self._reload()
        if current is not None and current.access_token != refused.access_token:
            return current
        return None

    # --- renewal (callers hold the mode's lock) -------------------------------------------
    def _renew_sync(self, stale: TokenSet | None, *, proactive: bool) -> TokenSet:
        ready, current = self._settled(stale, proactive)
        if ready is not None:
            return ready
        try:
            newer = self.source.refresh(current) if current else self.source.fetch()
        except LoginRequired:
            self._forget(current)
            raise
        except (ServerUnreachable, OAuthResponseError) as exc:
            return self._fallback(current, exc, proactive)
        return self._keep(newer)

    async def _renew_async(self, stale: TokenSet | None, *, proactive: bool) -> TokenSet:
        ready, current = self._settled(stale, proactive)
        if ready is not None:
            return ready
        try:
            newer = await (self.source.arefresh(current) if current else self.source.afetch())
        except LoginRequired:
            self._forget(current)
            raise
        except (ServerUnreachable, OAuthResponseError) as exc:
            return self._fallback(current, exc, proactive)
        return self._keep(newer)

    def _settled(
        self, stale: TokenSet | None, proactive: bool
    ) -> tuple[TokenSet | None, TokenSet | None]:
        """(a set to use without renewing, or None; the newest set to renew from).

        Whoever held the lock before us may have renewed already, here or, through a shared
        store, in another process: the store is read again so a spent refresh token is never
        presented when its successor exists.
        """
        current = self._reload()
        if current is None:
            return None, None
        if proactive and not self._stale(current):
            return current, current
        if not proactive and stale is not None and current.access_token != stale.access_token:
            return current, current
        return None, current

    def _fallback(self, current: TokenSet | None, exc: Exception, proactive: bool) -> TokenSet:
        """A renewal ahead of expiry that failed for a passing reason keeps the old token."""
        passing = isinstance(exc, ServerUnreachable) or (
            isinstance(exc, OAuthResponseError) and exc.status_code >= 500
        )
        alive = current is not None and not current.expires_within(0.0, self._clock())
        if proactive and passing and alive and current is not None:
            log.warning("token renewal failed (%s); using the current token", type(exc).__name__)
            return current
        raise exc

    # --- state -----------------------------------------------------------------------------
    def _stale(self, tokens: TokenSet) -> bool:
        return tokens.expires_within(self.skew, self._clock())

    def _current(self) -> TokenSet | None:
        with self._state:
            if self._tokens is not None:
                return self._tokens
        return self._reload()

    def _reload(self) -> TokenSet | None:
        """The newest set: the store's if someone else wrote it since we last looked, else ours
        (which is newer than the store's when a save failed: never go back to a spent one)."""
        stored = self.store.load(self.store_key)
        with self._state:
            if stored is not None and _identity(stored) != self._synced:
                self._tokens = stored
                self._synced = _identity(stored)
            return self._tokens

    def _keep(self, tokens: TokenSet, *, renewed: bool = True) -> TokenSet:
        with self._state:
            self._tokens = tokens  # first in memory: this process goes on with the newest
        try:
            self.store.save(self.store_key, tokens)
            with self._state:
                self._synced = _identity(tokens)
        except StoreError as exc:
            log.warning("renewed tokens could not be stored: %s", exc)
        if renewed:
            log.info("tokens renewed (%s, expires at %s)", tokens.token_type, tokens.expires_at)
        return tokens

    def _forget(self, refused: TokenSet | None) -> None:
        """The grant is gone: drop its tokens, unless the store already holds newer ones."""
        with self._state:
            self._tokens = None
        try:
            stored = self.store.load(self.store_key)
            if stored is None or refused is None or stored.refresh_token == refused.refresh_token:
                self.store.delete(self.store_key)
        except ClientError as exc:
            log.warning("refused tokens could not be removed: %s", exc)

    def _async_lock(self) -> asyncio.Lock:
        """One lock per event loop: an asyncio.Lock must not be shared across loops."""
        loop = asyncio.get_running_loop()
        with self._state:
            if self._async_locks is None or self._async_locks[0] is not loop:
                self._async_locks = (loop, asyncio.Lock())
            return self._async_locks[1]
