"""PushedRequestStore on SQL: pushed authorization requests (RFC 9126) by digest, taken once.

`take` is one DELETE ... WHERE digest AND client_id RETURNING: of concurrent redemptions the
database lets exactly one delete the row (PostgreSQL: the second waits for the first's row lock,
then finds nothing; SQLite: one writer at a time). A request of another client is not touched.
A handle that matches no row is answered by a read alone: the DELETE is a write transaction,
which on SQLite takes the database's one write lock, and `/authorize` is open to anyone.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.records import PushedRequest
from tokenward.store.sql.engine import reading
from tokenward.store.sql.models import PushedRequestRow

# Every this many saves (per process) also deletes requests that expired: nobody can use them.
PURGE_EVERY = 256


class SqlPushedRequestStore:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Callable[[], float] = time.time
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._saves = 0

    async def save(self, request: PushedRequest) -> None:
        self._saves += 1
        async with self._sessions.begin() as session:
            await session.execute(
                insert(PushedRequestRow).values(
                    digest=request.digest,
                    client_id=request.client_id,
                    params=request.params,
                    expires_at=request.expires_at,
                    signed=request.signed,
                )
            )
            if self._saves % PURGE_EVERY == 0:
                await session.execute(
                    delete(PushedRequestRow).where(PushedRequestRow.expires_at <= self._clock())
                )

    async def take(self, digest: str, client_id: str, now: float) -> PushedRequest | None:
        async with self._sessions() as session:
            await reading(session)
            found = await session.scalar(
                select(PushedRequestRow.digest).where(
                    PushedRequestRow.digest == digest, PushedRequestRow.client_id == client_id
                )
            )
        if found is None:
            return None
        async with self._sessions.begin() as session:
            row = (
                await session.execute(
                    delete(PushedRequestRow)
                    .where(
                        PushedRequestRow.digest == digest,
                        PushedRequestRow.client_id == client_id,
                    )
                    .returning(
                        PushedRequestRow.digest,
                        PushedRequestRow.client_id,
                        PushedRequestRow.params,
                        PushedRequestRow.expires_at,
                        PushedRequestRow.signed,
                    )
                )
            ).one_or_none()
        if row is None or row.expires_at <= now:
            return None  # an expired request is deleted all the same
        return PushedRequest(row.digest, row.client_id, row.params, row.expires_at, row.signed)
