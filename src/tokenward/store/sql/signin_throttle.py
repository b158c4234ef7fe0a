"""`SignInThrottle` on SQL: one allowance for every process on the database (the workers of
`tokenward serve --workers N` on SQLite, or nodes on PostgreSQL without Redis), kept across
restarts.

An attempt is a row per key (pair, address, username), counted in one transaction: the
attempt's rows are written first, then each key's recent rows are read. On SQLite the first
write takes the database's one write lock, so the read sees every committed attempt and none
can commit in between; on PostgreSQL an advisory lock per key (taken in one order, so two
attempts never wait on each other in a cycle) does the same. A refused attempt deletes its
rows again before it commits: exactly the allowance passes, however many race.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.throttle import Attempt, Limit, SignInLimits, seconds, throttle_keys
from tokenward.store.sql.models import SignInFailureRow

PURGE_EVERY = 256  # calls per process between deletions of rows past the longest window
LOCK_SPACE = 0x5349474E  # "SIGN": the advisory locks' first key, apart from the migrations'


class SqlSignInThrottle:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Callable[[], float] = time.time,
        limits: SignInLimits | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        limits = limits or SignInLimits()
        self._limits = (limits.pair, limits.ip, limits.user)
        self._longest = max(limit.window for limit in self._limits)
        self._calls = 0

    async def attempt(self, username: str, ip: str) -> Attempt:
        keys = throttle_keys(username, ip)
        ticket = secrets.token_hex(8)
        now = self._clock()
        self._calls += 1
        async with self._sessions.begin() as session:
            if session.get_bind().dialect.name == "postgresql":
                for key in sorted(keys):
                    lock = func.pg_advisory_xact_lock(LOCK_SPACE, func.hashtext(key))
                    await session.execute(select(lock))
            rows = [{"key": key, "ticket": ticket, "at": now} for key in keys]
            await session.execute(insert(SignInFailureRow), rows)
            waits = [
                await self._retry_after(session, key, limit, ticket, now)
                for key, limit in zip(keys, self._limits, strict=True)
            ]
            if max(waits) > 0:
                await session.execute(
                    delete(SignInFailureRow).where(SignInFailureRow.ticket == ticket)
                )
                return Attempt(username, ip, "", seconds(max(waits)))
            if self._calls % PURGE_EVERY == 0:
                await session.execute(
                    delete(SignInFailureRow).where(SignInFailureRow.at <= now - self._longest)
                )
        return Attempt(username, ip, ticket)

    @staticmethod
    async def _retry_after(
        session: AsyncSession, key: str, limit: Limit, ticket: str, now: float
    ) -> float:
        """Seconds until the oldest of the key's newest `limit` failures leaves the window
        (0: fewer than `limit` within it, not counting this attempt)."""
        recent = (
            await session.scalars(
                select(SignInFailureRow.at)
                .where(
                    SignInFailureRow.key == key,
                    SignInFailureRow.at > now - limit.window,
                    SignInFailureRow.ticket != ticket,
                )
                .order_by(SignInFailureRow.at.desc())
                .limit(limit.failures)
            )
        ).all()
        if len(recent) < limit.failures:
            return 0.0
        return recent[-1] + limit.window - now

    async def forgive(self, attempt: Attempt) -> None:
        await self._take_back(attempt, clear_pair=False)

    async def succeeded(self, attempt: Attempt) -> None:
        await self._take_back(attempt, clear_pair=True)

    async def _take_back(self, attempt: Attempt, *, clear_pair: bool) -> None:
        if attempt.wait is not None:
            return  # refused: nothing was counted
        pair, _ip, _user = throttle_keys(attempt.username, attempt.ip)
        mine = SignInFailureRow.ticket == attempt.ticket
        async with self._sessions.begin() as session:
            await session.execute(delete(SignInFailureRow).where(mine))
            if clear_pair:
                await session.execute(delete(SignInFailureRow).where(SignInFailureRow.key == pair))
