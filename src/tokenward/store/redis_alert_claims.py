"""Which authorization server raises an alert, when several watch the same shared windows.

Scaled out, every server counts in the same Redis windows and each batch of events reaches one
of them, so once a token is over a limit, the next event at *any* server finds it over again.
Each server's `AlertLog` deduplicates only its own alerts: without a claim shared by all, every
server would raise the alert once, run its response once more and send the webhook again. The
first server to claim (detector, target) for the cooldown raises the alert; the others drop
the finding (the alert, its occurrences and its responses live at the first server).
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis


class RedisAlertClaims:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def claim(self, detector: str, key: str, seconds: float) -> bool:
        """True for the first caller within `seconds` (raise the alert); False for the rest.
        Raises on Redis errors (the caller decides how to fail)."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]  # keys hold jtis and addresses
        won = await self._redis.set(
            f"{self._prefix}{detector}:{digest}", b"1", nx=True, px=max(1, int(seconds * 1000))
        )
        return bool(won)
