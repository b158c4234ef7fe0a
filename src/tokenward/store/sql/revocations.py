"""RevocationStore on SQL: an append-only log whose sequence number is the mirrors' cursor.

This backend only records; feeding the mirrors is `store.revocation_feed`'s job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from sqlalchemy import Select, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.records import Revocation
from tokenward.store.sql.models import RevocationRow

# SHARE ROW EXCLUSIVE conflicts with itself and with other writers but not with SELECT.
_SERIALIZE_WRITERS = text("LOCK TABLE revocations IN SHARE ROW EXCLUSIVE MODE")


class SqlRevocationStore:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Callable[[], float] = time.time
    ) -> None:
        self._sessions = sessions
        self._clock = clock

    async def revoke(self, revocation: Revocation) -> int:
        async with self._sessions.begin() as session:
            if session.get_bind().dialect.name == "postgresql":
                # A sequence hands out numbers at INSERT but transactions commit in any order:
                # a reader could see seq 8 before 7 commits, move its cursor past 7 and never
                # apply it. Serialising writers makes commit order equal seq order. (SQLite has
                # a single writer already.) Revocations are rare; readers are not blocked.
                await session.execute(_SERIALIZE_WRITERS)
            seq = await session.scalar(
                insert(RevocationRow)
                .values(
                    kind=revocation.kind,
                    value=revocation.value,
                    issued_before=revocation.issued_before,
                    expires_at=revocation.expires_at,
                    created_at=self._clock(),
                )
                .returning(RevocationRow.seq)
            )
        if not isinstance(seq, int):  # pragma: no cover - RETURNING always yields the new row
            raise TypeError(f"the database returned {seq!r} as the sequence number")
        return seq

    async def since(self, seq: int) -> Sequence[tuple[int, Revocation]]:
        return await self._entries(select(RevocationRow).where(RevocationRow.seq > seq))

    async def active(self, now: float) -> Sequence[tuple[int, Revocation]]:
        return await self._entries(select(RevocationRow).where(RevocationRow.expires_at > now))

    async def page(
        self, after: int, now: float, limit: int
    ) -> tuple[int, Sequence[tuple[int, Revocation]]]:
        async with self._sessions() as session:
            # Head first, entries bounded by it: writers commit in seq order (see revoke), so
            # every seq up to a visible head is committed and a follower that moves its cursor
            # to the head skips nothing.
            head = await session.scalar(select(func.max(RevocationRow.seq))) or 0
            rows = await session.scalars(
                select(RevocationRow)
                .where(
                    RevocationRow.seq > after,
                    RevocationRow.seq <= head,
                    RevocationRow.expires_at > now,
                )
                .order_by(RevocationRow.seq)
                .limit(limit)
            )
            return head, [
                (row.seq, Revocation(row.kind, row.value, row.issued_before, row.expires_at))
                for row in rows
            ]

    async def _entries(self, query: Select[RevocationRow]) -> list[tuple[int, Revocation]]:
        async with self._sessions() as session:
            rows = await session.scalars(query.order_by(RevocationRow.seq))
            return [
                (
                    row.seq,
                    Revocation(row.kind, row.value, row.issued_before, row.expires_at),
                )
                for row in rows
            ]
