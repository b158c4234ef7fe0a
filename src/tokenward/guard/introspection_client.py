"""An `OpaqueResolver` that asks the issuer: RFC 7662 token introspection, cached.

Active answers are cached until the token's `exp` but never longer than `max_ttl` (so a token
revoked at the issuer stops working within `max_ttl`); inactive answers for `negative_ttl`
(so a flood of made-up tokens costs the issuer one call per token per interval, not per
request). The cache key is a SHA-256 of the token: the raw credential is not kept here.

The validator keeps its own cache of admitted tokens; callers that need `max_ttl` to hold on
validator cache hits too ask `fresh()` first (the gateway does).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote_plus

import httpx
import orjson
import structlog

from tokenward.core.claims import AccessToken, access_token_from_claims
from tokenward.core.errors import JoseError, TemporarilyUnavailable

log = structlog.get_logger(__name__)
MAX_RESPONSE_BYTES = 64 * 1024


class IntrospectionResolver:
    def __init__(
        self,
        endpoint: str,
        client_id: str,
        client_secret: str,
        *,
        max_ttl: float = 300.0,
        negative_ttl: float = 5.0,
        max_entries: int = 10_000,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        sync_transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint
        # RFC 6749 §2.3.1: form-urlencode id and secret before HTTP Basic.
        self._auth = httpx.BasicAuth(_form_encode(client_id), _form_encode(client_secret))
        self._max_ttl = max_ttl
        self._negative_ttl = negative_ttl
        self._max_entries = max_entries
        self._timeout = timeout
        self._clock = clock
        self._transport = transport
        self._sync_transport = sync_transport
        self._cache: dict[str, tuple[AccessToken | None, float]] = {}
        self._lock = threading.Lock()
        self.calls = 0  # introspection requests made: for metrics and tests

    def fresh(self, token: str) -> bool:
        """True while a cached active answer for `token` may still be relied on."""
        entry = self._cache.get(_digest(token))
        return entry is not None and entry[0] is not None and self._clock() < entry[1]

    async def resolve(self, token: str) -> AccessToken | None:
        key = _digest(token)
        cached = self._cached(key)
        if cached is not None:
            return cached[0]
        self.calls += 1
        try:
            async with httpx.AsyncClient(
                transport=self._transport, timeout=self._timeout
            ) as client:
                response = await client.post(self.endpoint, data=_form(token), auth=self._auth)
        except httpx.HTTPError as exc:
            raise _unavailable(exc) from None
        return self._store(key, response)

    def resolve_sync(self, token: str) -> AccessToken | None:
        key = _digest(token)
        cached = self._cached(key)
        if cached is not None:
            return cached[0]
        self.calls += 1
        try:
            with httpx.Client(transport=self._sync_transport, timeout=self._timeout) as client:
                response = client.post(self.endpoint, data=_form(token), auth=self._auth)
        except httpx.HTTPError as exc:
            raise _unavailable(exc) from None
        return self._store(key, response)

    def _cached(self, key: str) -> tuple[AccessToken | None] | None:
        entry = self._cache.get(key)
        if entry is None or self._clock() >= entry[1]:
            return None
        return (entry[0],)

    def _store(self, key: str, response: httpx.Response) -> AccessToken | None:
        if response.status_code != 200 or len(response.content) > MAX_RESPONSE_BYTES:
            # Fail closed, but as "try again" (503), not as "your token is bad" (401).
            log.warning("introspection_failed", status=response.status_code)
            raise TemporarilyUnavailable("the access token could not be checked right now")
        token = _parse(response.content)
        now = self._clock()
        until = now + self._negative_ttl if token is None else min(token.exp, now + self._max_ttl)
        with self._lock:
            cache = self._cache
            cache.pop(key, None)
            cache[key] = (token, until)
            while len(cache) > self._max_entries:
                del cache[next(iter(cache))]  # oldest first
        return token


def _parse(content: bytes) -> AccessToken | None:
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise TemporarilyUnavailable("the introspection answer was not JSON") from None
    if not isinstance(body, dict) or body.get("active") is not True:
        return None  # RFC 7662 §2.2: anything but active=true is inactive
    try:
        return access_token_from_claims(_claims(body))
    except JoseError as exc:
        # Active but lacking what the checklist needs (sub, jti, ...): not usable here.
        log.warning("introspection_claims_unusable", reason=str(exc))
        return None


def _claims(body: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in body.items() if name not in ("active", "token_type")}


def _form(token: str) -> dict[str, str]:
    return {"token": token, "token_type_hint": "access_token"}


def _form_encode(value: str) -> str:
    return quote_plus(value, safe="")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _unavailable(exc: httpx.HTTPError) -> TemporarilyUnavailable:
    log.warning("introspection_unreachable", error=type(exc).__name__)
    return TemporarilyUnavailable("the access token could not be checked right now")
