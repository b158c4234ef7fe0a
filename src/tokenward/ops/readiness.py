"""/readyz: can this node serve? Database, Redis, signing keys and the revocation mirror.

Each check is bounded by `CHECK_TIMEOUT` and answers a fixed word ("ok", "timeout",
"unreachable", ...), never an exception's text: a driver's message can hold a connection URL with
its password. Probes from several load balancers share one run per `CACHE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tokenward.core.revocation_mirror import RevocationMirror
from tokenward.ops.metrics import ServerMetrics
from tokenward.store.errors import STORAGE_ERRORS
from tokenward.tokens.keyring import Keyring, KeyRotationError

CHECK_TIMEOUT = 1.0
CACHE_SECONDS = 1.0
OK = "ok"
Check = Callable[[], Awaitable[str]]


class Readiness:
    def __init__(
        self, checks: dict[str, Check], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.checks = checks
        self._clock = clock
        self._lock = asyncio.Lock()
        self._last: tuple[float, dict[str, str]] | None = None

    async def run(self) -> tuple[bool, dict[str, str]]:
        """(ready, per-check status); concurrent callers share one run."""
        async with self._lock:
            last = self._last
            if last is None or self._clock() - last[0] >= CACHE_SECONDS:
                names = list(self.checks)
                answers = await asyncio.gather(*(_bounded(self.checks[n]) for n in names))
                last = self._last = (self._clock(), dict(zip(names, answers, strict=True)))
        results = dict(last[1])
        return all(status == OK for status in results.values()), results


async def _bounded(check: Check) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return await check()
    except TimeoutError:
        return "timeout"


def database_check(engine: AsyncEngine, metrics: ServerMetrics) -> Check:
    async def check() -> str:
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except STORAGE_ERRORS as exc:
            metrics.storage_error(exc)
            return "unreachable"
        return OK

    return check


def redis_check(redis: Redis, metrics: ServerMetrics) -> Check:
    async def check() -> str:
        try:
            await redis.ping()
        except STORAGE_ERRORS as exc:
            metrics.storage_error(exc)
            return "unreachable"
        return OK

    return check


def signing_key_check(keyrings: list[Keyring]) -> Check:
    async def check() -> str:
        try:
            for keyring in keyrings:
                keyring.active()
        except KeyRotationError:
            return "no_active_key"
        return OK

    return check


def revocation_check(mirror: RevocationMirror, clock: Callable[[], float]) -> Check:
    """Stale exactly when validators would answer 503 (never, with revocation_fail_open)."""

    async def check() -> str:
        return OK if clock() <= mirror.fresh_until else "stale"

    return check
