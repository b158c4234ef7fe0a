"""DeviceStore on SQL: RFC 8628 device authorizations by device-code digest, and by the
normalised user code (a UNIQUE column, so a lookup is one index probe).

`decide` is one conditional UPDATE (pending and unexpired). `poll` reads and writes the row in
one transaction holding its write lock (SELECT ... FOR NO KEY UPDATE on PostgreSQL, BEGIN
IMMEDIATE on SQLite), so concurrent polls run one after another and exactly one of them sees an
approved record: the one that marks it consumed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.ports import Conflict
from tokenward.core.records import DeviceRecord
from tokenward.store.sql.models import (
    DeviceRow,
    dump_strings,
    load_strings,
    lock_for_writing,
    upsert,
)

# Every this many saves (per process) also deletes requests that expired over PURGE_AFTER ago:
# until then a late poll still gets "expired_token" rather than "invalid_grant".
PURGE_EVERY = 1024
PURGE_AFTER = 86400.0


class SqlDeviceStore:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Callable[[], float] = time.time
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._saves = 0

    async def save(self, record: DeviceRecord) -> None:
        """Insert or replace by device digest; a user code another request holds raises
        `Conflict` (the caller may draw a new one)."""
        self._saves += 1
        try:
            async with self._sessions.begin() as session:
                if self._saves % PURGE_EVERY == 0:  # first, so expired requests free their codes
                    cutoff = self._clock() - PURGE_AFTER
                    await session.execute(delete(DeviceRow).where(DeviceRow.expires_at <= cutoff))
                await session.execute(
                    upsert(session, DeviceRow, [_values(record)], "device_digest")
                )
        except IntegrityError as error:
            raise Conflict(f"user code {record.user_code!r} is in use") from error

    async def by_user_code(self, user_code: str) -> DeviceRecord | None:
        async with self._sessions() as session:
            row = await session.scalar(select(DeviceRow).where(DeviceRow.user_code == user_code))
            return None if row is None else _record(row)

    async def decide(
        self,
        user_code: str,
        approved: bool,
        user_id: str,
        session_id: str,
        auth_time: float,
        now: float,
        *,
        acr: str | None,
    ) -> bool:
        async with self._sessions.begin() as session:
            decided = await session.scalar(
                update(DeviceRow)
                .where(
                    DeviceRow.user_code == user_code,
                    DeviceRow.status == "pending",
                    DeviceRow.expires_at > now,
                )
                .values(
                    status="approved" if approved else "denied",
                    user_id=user_id,
                    session_id=session_id,
                    auth_time=auth_time,
                    acr=acr,
                )
                .returning(DeviceRow.device_digest)
                .execution_options(synchronize_session=False)
            )
            return decided is not None

    async def poll(self, device_digest: str, now: float) -> tuple[DeviceRecord | None, bool]:
        async with self._sessions.begin() as session:
            await lock_for_writing(session)
            row = await session.scalar(
                select(DeviceRow)
                .where(DeviceRow.device_digest == device_digest)
                .with_for_update(key_share=True)
            )
            if row is None:
                return None, False
            record = _record(row)  # as it was: what this poll answers from
            values, too_fast = polled(record, now)
            await session.execute(
                update(DeviceRow)
                .where(DeviceRow.device_digest == device_digest)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            return record, too_fast


def polled(record: DeviceRecord, now: float) -> tuple[dict[str, Any], bool]:
    """What a poll at `now` changes on the row (column: value), and whether it came too fast."""
    values: dict[str, Any] = {"last_poll_at": now}
    too_fast = False
    if record.status == "approved":
        values["status"] = "consumed"
    elif record.last_poll_at is not None and now - record.last_poll_at < record.interval:
        too_fast = True
        values["poll_interval"] = record.interval + 5  # RFC 8628 §3.5
    return values, too_fast


def _values(record: DeviceRecord) -> dict[str, Any]:
    return {
        "device_digest": record.device_digest,
        "user_code": record.user_code,
        "client_id": record.client_id,
        "scopes": dump_strings(record.scopes, sort=True),
        "audience": dump_strings(record.audience),
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "poll_interval": record.interval,
        "status": record.status,
        "last_poll_at": record.last_poll_at,
        "user_id": record.user_id,
        "session_id": record.session_id,
        "auth_time": record.auth_time,
        "acr": record.acr,
        "acr_values": record.acr_values,
    }


def _record(row: DeviceRow) -> DeviceRecord:
    return DeviceRecord(
        device_digest=row.device_digest,
        user_code=row.user_code,
        client_id=row.client_id,
        scopes=frozenset(load_strings(row.scopes)),
        audience=load_strings(row.audience),
        created_at=row.created_at,
        expires_at=row.expires_at,
        interval=row.poll_interval,
        status=row.status,
        last_poll_at=row.last_poll_at,
        user_id=row.user_id,
        session_id=row.session_id,
        auth_time=row.auth_time,
        acr=row.acr,
        acr_values=row.acr_values,
    )
