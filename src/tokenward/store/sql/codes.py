"""CodeStore on SQL: authorization codes by digest, each usable exactly once.

`consume` is one conditional UPDATE (... WHERE consumed_at IS NULL RETURNING ...): of any number
of concurrent exchanges the database lets exactly one match, on PostgreSQL (a second UPDATE waits
for the first's row lock, then re-checks the condition and matches nothing) and on SQLite (one
writer at a time).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.store.records import CodeRecord
from tokenward.store.sql.models import CodeRow, dump_strings, load_strings, upsert

# Every this many saves (per process) also deletes codes that expired over PURGE_AFTER ago: kept
# that long so a late replay is still recognised as one (and revokes what the code minted).
PURGE_EVERY = 1024
PURGE_AFTER = 86400.0


class SqlCodeStore:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Callable[[], float] = time.time
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._saves = 0

    async def save(self, code: CodeRecord) -> None:
        self._saves += 1
        async with self._sessions.begin() as session:
            await session.execute(upsert(session, CodeRow, [_values(code)], "digest"))
            if self._saves % PURGE_EVERY == 0:
                cutoff = self._clock() - PURGE_AFTER
                await session.execute(delete(CodeRow).where(CodeRow.expires_at <= cutoff))

    async def consume(self, digest: str, now: float) -> tuple[CodeRecord | None, bool]:
        async with self._sessions.begin() as session:
            first = await session.scalar(
                update(CodeRow)
                .where(CodeRow.digest == digest, CodeRow.consumed_at.is_(None))
                .values(consumed_at=now)
                .returning(CodeRow)
                .execution_options(synchronize_session=False)
            )
            if first is not None:
                # The record as it was before this use, as the memory backend returns it.
                return replace(_record(first), consumed_at=None), True
            replayed = await session.scalar(select(CodeRow).where(CodeRow.digest == digest))
            return (None if replayed is None else _record(replayed)), False

    async def record_minted(
        self, digest: str, family_id: str | None, access_jti: str, access_exp: float
    ) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(CodeRow)
                .where(CodeRow.digest == digest)
                .values(family_id=family_id, access_jti=access_jti, access_exp=access_exp)
                .execution_options(synchronize_session=False)
            )


def _values(code: CodeRecord) -> dict[str, Any]:
    return {
        "digest": code.digest,
        "client_id": code.client_id,
        "redirect_uri": code.redirect_uri,
        "code_challenge": code.code_challenge,
        "scopes": dump_strings(code.scopes, sort=True),
        "audience": dump_strings(code.audience),
        "user_id": code.user_id,
        "session_id": code.session_id,
        "auth_time": code.auth_time,
        "expires_at": code.expires_at,
        "nonce": code.nonce,
        "acr": code.acr,
        "dpop_jkt": code.dpop_jkt,
        "redirect_uri_given": code.redirect_uri_given,
        "consumed_at": code.consumed_at,
        "family_id": code.family_id,
        "access_jti": code.access_jti,
        "access_exp": code.access_exp,
    }


def _record(row: CodeRow) -> CodeRecord:
    return CodeRecord(
        digest=row.digest,
        client_id=row.client_id,
        redirect_uri=row.redirect_uri,
        code_challenge=row.code_challenge,
        scopes=frozenset(load_strings(row.scopes)),
        audience=load_strings(row.audience),
        user_id=row.user_id,
        session_id=row.session_id,
        auth_time=row.auth_time,
        expires_at=row.expires_at,
        nonce=row.nonce,
        acr=row.acr,
        dpop_jkt=row.dpop_jkt,
        redirect_uri_given=row.redirect_uri_given,
        consumed_at=row.consumed_at,
        family_id=row.family_id,
        access_jti=row.access_jti,
        access_exp=row.access_exp,
    )
