"""The issuer's signing keys (its `jwks_uri`, OIDC Discovery §3), for checking ID tokens.

Fetched on first need and kept for `ttl` seconds (shortened, never lengthened, by the
response's `Cache-Control: max-age`); an unknown `kid` refetches once, but never more often than
every `min_interval` seconds, so a stream of forged kids cannot make us hammer the issuer. The
document is bounded (256 KiB, 64 keys, `tokens.jwk`'s strict parsing) and the request by the
`Http` timeout. Symmetric keys are never taken from it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

import httpx

from tokenward.client._flow import Flow, send
from tokenward.client.errors import IdTokenError
from tokenward.core.errors import JoseError
from tokenward.tokens.jwk import VerificationKey, key_set_from_jwks
from tokenward.tokens.jws import loads_object

MAX_JWKS_BYTES = 256 * 1024
DEFAULT_TTL = 300.0
MIN_INTERVAL = 30.0
_MAX_AGE = re.compile(r"max-age=(\d{1,9})")

KeySet = dict[str | None, VerificationKey]


class IssuerKeys:
    """One issuer's JWKS, cached; shared by the sync and async flows of one token source."""

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        min_interval: float = MIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._min_interval = min_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._url: str | None = None
        self._expires_at = 0.0
        self._fetched_at: float | None = None

    def __repr__(self) -> str:
        return f"IssuerKeys(url={self._url!r})"

    def flow(self, url: str, kid: str | None, *, unknown_kid: bool = False) -> Flow[KeySet]:
        """The key set from `url`: the cached one while fresh and (for an unknown `kid`) while
        a refetch would come too soon after the last."""
        with self._lock:
            now = self._clock()
            fresh = self._keys is not None and self._url == url and now < self._expires_at
            recent = self._fetched_at is not None and now - self._fetched_at < self._min_interval
            if fresh and self._keys is not None and (not unknown_kid or recent):
                return self._keys
        request = httpx.Request("GET", url, headers={"accept": "application/json"})
        response = yield from send(request)
        keys = _parse(response)
        with self._lock:
            now = self._clock()
            self._keys, self._url, self._fetched_at = keys, url, now
            self._expires_at = now + self._lifetime(response)
        return keys

    def _lifetime(self, response: httpx.Response) -> float:
        match = _MAX_AGE.search(response.headers.get("cache-control", ""))
        if match is None:
            return self._ttl
        return max(self._min_interval, min(float(match.group(1)), self._ttl))


def _parse(response: httpx.Response) -> KeySet:
    if response.status_code != 200:
        raise IdTokenError(
            f"the issuer's key set could not be fetched (HTTP {response.status_code})"
        )
    if len(response.content) > MAX_JWKS_BYTES:
        raise IdTokenError("the issuer's key set is too large")
    try:
        return key_set_from_jwks(loads_object(response.content))
    except JoseError as exc:
        raise IdTokenError(f"the issuer's key set is refused: {str(exc)[:80]}") from None
