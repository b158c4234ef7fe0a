"""The latest DPoP nonce each server gave us (RFC 9449 §8.2 for authorization servers, §9 for
resources). Any response may carry a fresh one, so every response is looked at, and the next
proof to that origin carries it: only a server that rotated its nonce costs a retry."""

from __future__ import annotations

import threading

import httpx

MAX_NONCE = 512


def origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"


class NonceCache:
    def __init__(self) -> None:
        self._nonces: dict[str, str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"NonceCache(origins={len(self._nonces)})"

    def get(self, url: httpx.URL) -> str | None:
        key = origin(url)
        with self._lock:
            return self._nonces.get(key)

    def remember(self, response: httpx.Response) -> str | None:
        """The response's nonce, now the one for its origin; None when it has none."""
        nonce: str | None = response.headers.get("dpop-nonce")
        # RFC 9449 §8.1: nonce = 1*NQCHAR; anything else is ignored, not echoed into a proof.
        if (
            not nonce
            or len(nonce) > MAX_NONCE
            or not all("!" <= ch <= "~" and ch not in '"\\' for ch in nonce)
        ):
            return None
        with self._lock:
            self._nonces[origin(response.request.url)] = nonce
        return nonce
