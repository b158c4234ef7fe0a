"""A remote JWKS (RFC 7517 §5) cached in memory, so a resource server can trust an issuer it
shares no memory with. Refetches when older than its max-age, and once on an unknown `kid`, never
more often than `min_interval` (an attacker sending random kids must not turn us into a flood).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable

import httpx
import structlog

from tokenward.core.errors import JoseError
from tokenward.tokens.jwk import VerificationKey, key_set_from_jwks
from tokenward.tokens.key_sources import StaticKeySource

log = structlog.get_logger(__name__)
MAX_JWKS_BYTES = 256 * 1024
_MAX_AGE = re.compile(r"max-age=(\d+)")


class RemoteJwks:
    def __init__(
        self,
        url: str,
        *,
        max_age: float = 300.0,
        min_interval: float = 30.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
        sync_transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self._max_age = max_age
        self._min_interval = min_interval
        self._timeout = timeout
        self._clock = clock
        self._transport = transport
        self._sync_transport = sync_transport
        self._keys = StaticKeySource({})
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self._sync_lock = threading.Lock()

    def get(self, kid: str | None) -> VerificationKey | None:
        return self._keys.get(kid)

    def values(self) -> list[VerificationKey]:
        return self._keys.values()

    def _due(self, unknown_kid: bool) -> bool:
        now = self._clock()
        if self._attempted_at is not None and now - self._attempted_at < self._min_interval:
            return False
        return unknown_kid or self._fetched_at is None or now >= self._expires_at

    async def refresh(self, *, unknown_kid: bool) -> bool:
        before = self._keys
        if unknown_kid and self._lock.locked():
            # A fetch is under way (cold start, rotation): its keys may be the ones this token
            # needs, so wait for it instead of failing the token.
            async with self._lock:
                return self._keys is not before
        if not self._due(unknown_kid):
            return False
        async with self._lock:  # single flight: concurrent misses share one fetch
            if not self._due(unknown_kid):
                return False
            self._attempted_at = self._clock()
            try:
                async with httpx.AsyncClient(
                    transport=self._transport, timeout=self._timeout
                ) as client:
                    response = await client.get(self.url, headers={"accept": "application/json"})
            except httpx.HTTPError as exc:
                log.warning("jwks_fetch_failed", url=self.url, error=type(exc).__name__)
                return False
            return self._install(response)

    def refresh_sync(self, *, unknown_kid: bool) -> bool:
        before = self._keys
        if unknown_kid and self._sync_lock.locked():
            with self._sync_lock:  # as in `refresh`: share the fetch under way
                return self._keys is not before
        if not self._due(unknown_kid):
            return False
        with self._sync_lock:
            if not self._due(unknown_kid):
                return False
            self._attempted_at = self._clock()
            try:
                with httpx.Client(transport=self._sync_transport, timeout=self._timeout) as client:
                    response = client.get(self.url, headers={"accept": "application/json"})
            except httpx.HTTPError as exc:
                log.warning("jwks_fetch_failed", url=self.url, error=type(exc).__name__)
                return False
            return self._install(response)

    def _install(self, response: httpx.Response) -> bool:
        if response.status_code != 200 or len(response.content) > MAX_JWKS_BYTES:
            log.warning("jwks_fetch_refused", url=self.url, status=response.status_code)
            return False
        try:
            keys = key_set_from_jwks(json.loads(response.content))
        except (ValueError, RecursionError, JoseError) as exc:  # deep nesting: RecursionError
            # Keep the keys we had: a broken or unsafe key set must not lock everyone out.
            log.warning("jwks_rejected", url=self.url, reason=str(exc))
            return False
        now = self._clock()
        self._keys = StaticKeySource(keys)
        self._fetched_at = now
        self._expires_at = now + self._cache_lifetime(response)
        return True

    def _cache_lifetime(self, response: httpx.Response) -> float:
        match = _MAX_AGE.search(response.headers.get("cache-control", ""))
        if match is None:
            return self._max_age
        # The server may shorten our cache, never lengthen it past our own max-age.
        return max(self._min_interval, min(float(match.group(1)), self._max_age))
