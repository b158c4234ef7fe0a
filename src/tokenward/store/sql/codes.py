"""CodeStore on SQL: authorization codes by digest, each usable exactly once.

`consume` is one conditional UPDATE (... WHERE consumed_at IS NULL RETURNING ...): of any number
of concurrent exchanges the database lets exactly one match, on PostgreSQL (a second UPDATE waits
for the first's row lock, then re-checks the condition and matches nothing) and on SQLite (one
writer at a time). A replay and the winner's `redeem` meet the same way on the code row: each is
an UPDATE of it, so the second waits for the first to commit and sees what it wrote.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.records import CodeRecord, FamilyRecord, MintedToken, RefreshRecord
from tokenward.store.sql import grants as sql_grants
from tokenward.store.sql.grants import insert_family
from tokenward.store.sql.group_commit import GroupCommit, write
from tokenward.store.sql.models import CodeRow, dump_strings, load_strings, upsert

# Every this many saves (per process) also deletes codes that expired over PURGE_AFTER ago: kept
# that long so a late replay is still recognised as one (and revokes what the code minted).
PURGE_EVERY = 1024
PURGE_AFTER = 86400.0


class SqlCodeStore:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Callable[[], float] = time.time,
        *,
        group: GroupCommit | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._group = group  # SQLite: uses and redemptions share commits
        self._saves = 0
        self._redeems = 0

    async def save(self, code: CodeRecord) -> None:
        self._saves += 1
        async with self._sessions.begin() as session:
            await session.execute(upsert(session, CodeRow, [code_values(code)], "digest"))
            if self._saves % PURGE_EVERY == 0:
                cutoff = self._clock() - PURGE_AFTER
                await session.execute(delete(CodeRow).where(CodeRow.expires_at <= cutoff))

    async def peek(self, digest: str) -> CodeRecord | None:
        async with self._sessions() as session:
            row = await session.scalar(select(CodeRow).where(CodeRow.digest == digest))
            return None if row is None else _record(row)

    async def consume(self, digest: str, now: float) -> tuple[CodeRecord | None, bool]:
        return await write(
            self._sessions, self._group, lambda session: _consume(session, digest, now)
        )

    async def redeem(
        self, digest: str, minted: MintedToken, grant: tuple[FamilyRecord, RefreshRecord] | None
    ) -> bool:
        return await write(
            self._sessions,
            self._group,
            lambda session: self._redeem(session, digest, minted, grant),
        )

    async def exchange(
        self,
        digest: str,
        now: float,
        minted: MintedToken,
        grant: tuple[FamilyRecord, RefreshRecord] | None,
    ) -> tuple[bool, CodeRecord | None]:
        async def work(session: AsyncSession) -> tuple[bool, CodeRecord | None]:
            record, first_use = await _consume(session, digest, now)
            if not first_use:
                return False, record
            # Consumed by this transaction, which holds the row: the redeem below matches.
            await self._redeem(session, digest, minted, grant)
            return True, None

        return await write(self._sessions, self._group, work)

    async def _redeem(
        self,
        session: AsyncSession,
        digest: str,
        minted: MintedToken,
        grant: tuple[FamilyRecord, RefreshRecord] | None,
    ) -> bool:
        # The row lock this UPDATE takes (PostgreSQL; SQLite has one writer) is held until the
        # family below is committed too, so a replay reads both or neither.
        recorded = await session.scalar(
            update(CodeRow)
            .where(
                CodeRow.digest == digest,
                CodeRow.consumed_at.is_not(None),
                CodeRow.replayed_at.is_(None),
                CodeRow.access_jti.is_(None),
            )
            .values(
                family_id=grant[0].family_id if grant else None,
                access_jti=minted.jti,
                access_exp=minted.expires_at,
            )
            .returning(CodeRow.digest)
            .execution_options(synchronize_session=False)
        )
        if recorded is None:
            return False
        if grant is not None:
            await insert_family(session, grant[0], grant[1], minted)
            self._redeems += 1  # most families start here: they purge as creates do
            if self._redeems % sql_grants.PURGE_EVERY == 0:
                await sql_grants.purge_families(session, self._clock())
        return True


async def _consume(
    session: AsyncSession, digest: str, now: float
) -> tuple[CodeRecord | None, bool]:
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
    # A replay: mark the code (under its row lock) and read what the first exchange recorded.
    # A redeem that has not committed yet waits for this mark and refuses.
    replayed = await session.scalar(
        update(CodeRow)
        .where(CodeRow.digest == digest)
        .values(replayed_at=func.coalesce(CodeRow.replayed_at, now))
        .returning(CodeRow)
        .execution_options(synchronize_session=False)
    )
    return (None if replayed is None else _record(replayed)), False


def code_values(code: CodeRecord) -> dict[str, Any]:
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
        "replayed_at": code.replayed_at,
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
        replayed_at=row.replayed_at,
    )
