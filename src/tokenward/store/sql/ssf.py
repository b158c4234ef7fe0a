"""Shared Signals streams and their SET queues on SQL: every node sees the same streams, and a
SET queued on one node is polled from any other."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.records import SsfStream
from tokenward.store.sql.models import (
    SetQueueRow,
    SsfStreamRow,
    dump_strings,
    load_strings,
    upsert,
)

QUEUE_CAPACITY = 10_000  # SETs per stream; past that the oldest go


class SqlSsfStreams:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def put(self, stream: SsfStream) -> None:
        values = asdict(stream)
        values["events_requested"] = dump_strings(stream.events_requested)
        values["subjects"] = dump_strings(stream.subjects)
        async with self._sessions.begin() as db:
            await db.execute(upsert(db, SsfStreamRow, [values], "stream_id"))

    async def get(self, stream_id: str) -> SsfStream | None:
        async with self._sessions() as db:
            row = await db.get(SsfStreamRow, stream_id)
            return None if row is None else _record(row)

    async def list_all(self) -> Sequence[SsfStream]:
        async with self._sessions() as db:
            rows = await db.scalars(select(SsfStreamRow).order_by(SsfStreamRow.created_at))
            return [_record(row) for row in rows]

    async def delete(self, stream_id: str) -> bool:
        async with self._sessions.begin() as db:
            result = await db.execute(
                delete(SsfStreamRow).where(SsfStreamRow.stream_id == stream_id)
            )
            return bool(getattr(result, "rowcount", 0))


def _record(row: SsfStreamRow) -> SsfStream:
    return SsfStream(
        stream_id=row.stream_id,
        owner=row.owner,
        audience=row.audience,
        events_requested=load_strings(row.events_requested),
        delivery_method=row.delivery_method,
        endpoint_url=row.endpoint_url,
        created_at=row.created_at,
        authorization_header=row.authorization_header,
        description=row.description,
        status=row.status,
        reason=row.reason,
        subjects=load_strings(row.subjects),
        verified_at=row.verified_at,
    )


class SqlSetQueue:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], capacity: int = QUEUE_CAPACITY
    ) -> None:
        self._sessions = sessions
        self._capacity = capacity

    async def enqueue(self, stream_id: str, jti: str, token: str, now: float) -> None:
        values = {"stream_id": stream_id, "jti": jti, "token": token, "created_at": now}
        keys = ["stream_id", "jti"]
        async with self._sessions.begin() as db:
            if db.get_bind().dialect.name == "postgresql":
                pg = postgresql.insert(SetQueueRow).values(values)
                await db.execute(pg.on_conflict_do_nothing(index_elements=keys))
            else:
                lite = sqlite.insert(SetQueueRow).values(values)
                await db.execute(lite.on_conflict_do_nothing(index_elements=keys))
            # Bounded: the oldest beyond capacity go (a receiver that never polls costs rows,
            # not the database).
            count = await db.scalar(select(func.count()).where(SetQueueRow.stream_id == stream_id))
            if (count or 0) > self._capacity:
                oldest = (
                    select(SetQueueRow.seq)
                    .where(SetQueueRow.stream_id == stream_id)
                    .order_by(SetQueueRow.seq)
                    .limit((count or 0) - self._capacity)
                )
                await db.execute(delete(SetQueueRow).where(SetQueueRow.seq.in_(oldest)))

    async def pending(self, stream_id: str, limit: int) -> tuple[list[tuple[str, str]], bool]:
        async with self._sessions() as db:
            rows = (
                await db.execute(
                    select(SetQueueRow.jti, SetQueueRow.token)
                    .where(SetQueueRow.stream_id == stream_id)
                    .order_by(SetQueueRow.seq)
                    .limit(limit + 1)
                )
            ).all()
        items = [(jti, token) for jti, token in rows]
        return items[:limit], len(items) > limit

    async def ack(self, stream_id: str, jtis: Sequence[str]) -> int:
        if not jtis:
            return 0
        async with self._sessions.begin() as db:
            result = await db.execute(
                delete(SetQueueRow).where(
                    SetQueueRow.stream_id == stream_id, SetQueueRow.jti.in_(list(jtis))
                )
            )
            return int(getattr(result, "rowcount", 0) or 0)

    async def clear(self, stream_id: str) -> None:
        async with self._sessions.begin() as db:
            await db.execute(delete(SetQueueRow).where(SetQueueRow.stream_id == stream_id))
