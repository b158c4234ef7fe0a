"""GrantStore on SQL: grant families, their refresh tokens, and the access tokens they minted.

`rotate` must be atomic: of N concurrent rotations of one token exactly one may rotate it, and a
reuse must see every rotation that committed before it. Each rotation is one transaction that
first takes the family's write lock -- SELECT ... FOR NO KEY UPDATE on the family row in
PostgreSQL (under READ COMMITTED the next reader waits, then reads what the winner committed),
BEGIN IMMEDIATE on SQLite -- so rotations, reuse revocations and `revoke_family` of one family
run one after another, and a family revoked by a concurrent reuse is never rotated afterwards.
The rotation itself is still a conditional UPDATE ... WHERE rotated_at IS NULL, checked through
RETURNING, so even without the lock no two callers could both rotate one token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.dml import Insert

from tokenward.core.records import FamilyRecord, MintedToken, RefreshRecord, RotationOutcome
from tokenward.core.rotation import ended, within_grace
from tokenward.store.sql.engine import reading
from tokenward.store.sql.group_commit import GroupCommit, write
from tokenward.store.sql.models import (
    FamilyRow,
    MintedTokenRow,
    RefreshTokenRow,
    dump_strings,
    load_strings,
    lock_for_writing,
)

# Every this many creates (per process) also deletes families that ended over PURGE_AFTER ago
# (their refresh tokens go with them, ON DELETE CASCADE) and minted tokens that have expired.
PURGE_EVERY = 1024
PURGE_AFTER = 86400.0
# add_minted forgets a family's minted tokens that expired this long before the new one does,
# exactly as the memory backend does.
MINTED_HORIZON = 86400.0


class SqlGrantStore:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Callable[[], float] = time.time,
        *,
        group: GroupCommit | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._group = group  # SQLite: rotations and minted tokens share commits
        self._creates = 0

    async def create(self, family: FamilyRecord, first: RefreshRecord) -> None:
        self._creates += 1
        async with self._sessions.begin() as session:
            await insert_family(session, family, first)
            if self._creates % PURGE_EVERY == 0:
                await purge_families(session, self._clock())

    async def rotate(
        self,
        digest: str,
        successor: RefreshRecord,
        now: float,
        grace: float,
        minted: MintedToken | None = None,
    ) -> tuple[str, FamilyRecord | None, RefreshRecord | None]:
        # SQLite: the whole rotation is one writer's turn (BEGIN IMMEDIATE, by `write`), and
        # the access token it answers with is recorded in it: one commit per refresh.
        async def work(
            session: AsyncSession,
        ) -> tuple[str, FamilyRecord | None, RefreshRecord | None]:
            found = await _locked(session, digest)
            if found is None:
                return RotationOutcome.INVALID, None, None
            token, family = found
            if ended(family, token, now):
                return RotationOutcome.INVALID, family, token
            outcome, token = await _rotate_locked(session, token, successor, now, grace)
            if minted is not None and outcome in RotationOutcome.DELIVERED:
                await _add_minted_in(session, family.family_id, minted)
            return outcome, family, token

        return await write(self._sessions, self._group, work)

    async def lookup(self, digest: str) -> tuple[RefreshRecord, FamilyRecord] | None:
        async with self._sessions() as session:
            await reading(session)
            return await _joined(session, digest)

    async def revoke_family(self, family_id: str, now: float) -> Sequence[MintedToken]:
        async with self._sessions.begin() as session:
            # Conditional: revoking again keeps the first revoked_at (idempotent).
            await session.execute(
                update(FamilyRow)
                .where(FamilyRow.family_id == family_id, FamilyRow.revoked_at.is_(None))
                .values(revoked_at=now)
                .execution_options(synchronize_session=False)
            )
            rows = await session.scalars(
                select(MintedTokenRow)
                .where(MintedTokenRow.family_id == family_id, MintedTokenRow.expires_at > now)
                .order_by(MintedTokenRow.expires_at, MintedTokenRow.jti)
            )
            return [MintedToken(row.jti, row.expires_at) for row in rows]

    async def add_minted(self, family_id: str, token: MintedToken) -> None:
        async def work(session: AsyncSession) -> None:
            await _add_minted_in(session, family_id, token)

        await write(self._sessions, self._group, work)

    async def family_of(self, jti: str) -> str | None:
        async with self._sessions() as session:
            found: str | None = await session.scalar(
                select(MintedTokenRow.family_id).where(MintedTokenRow.jti == jti).limit(1)
            )
            return found

    async def link(self, family_id: str, token: MintedToken) -> bool:
        """Under the family's write lock, as `revoke_family` takes it (its UPDATE on PostgreSQL,
        BEGIN IMMEDIATE on SQLite): a revocation committed first is seen here; one that comes
        after finds the token among the family's minted ones."""
        async with self._sessions.begin() as session:
            await lock_for_writing(session)
            revoked_at = await session.execute(
                select(FamilyRow.revoked_at)
                .where(FamilyRow.family_id == family_id)
                .with_for_update(key_share=True)
            )
            row = revoked_at.first()
            if row is None or row.revoked_at is not None:
                return False
            values = {"family_id": family_id, "jti": token.jti, "expires_at": token.expires_at}
            await session.execute(_add_minted(session, values))
            return True


async def insert_family(
    session: AsyncSession,
    family: FamilyRecord,
    first: RefreshRecord,
    minted: MintedToken | None = None,
) -> None:
    """A new family, its first refresh token and its first access token, in the caller's
    transaction. Plain INSERTs: ids are random, and a clash must fail rather than reset one."""
    await session.execute(insert(FamilyRow).values(family_values(family)))
    await session.execute(insert(RefreshTokenRow).values(token_values(first)))
    if minted is not None:
        values = {"family_id": family.family_id, "jti": minted.jti, "expires_at": minted.expires_at}
        await session.execute(insert(MintedTokenRow).values(values))


async def purge_families(session: AsyncSession, now: float) -> None:
    """Families that ended over PURGE_AFTER ago (their refresh tokens go with them, ON DELETE
    CASCADE) and minted tokens that have expired: run by whatever creates families."""
    await session.execute(delete(FamilyRow).where(FamilyRow.expires_at <= now - PURGE_AFTER))
    await session.execute(delete(MintedTokenRow).where(MintedTokenRow.expires_at <= now))


async def _add_minted_in(session: AsyncSession, family_id: str, token: MintedToken) -> None:
    """Record `token` on the family, forgetting its tokens that expired long before it."""
    await session.execute(
        delete(MintedTokenRow).where(
            MintedTokenRow.family_id == family_id,
            MintedTokenRow.expires_at <= token.expires_at - MINTED_HORIZON,
        )
    )
    values = {"family_id": family_id, "jti": token.jti, "expires_at": token.expires_at}
    await session.execute(_add_minted(session, values))


async def _joined(session: AsyncSession, digest: str) -> tuple[RefreshRecord, FamilyRecord] | None:
    """The token and its family, in one SELECT."""
    found = (
        await session.execute(
            select(RefreshTokenRow, FamilyRow)
            .join(FamilyRow, FamilyRow.family_id == RefreshTokenRow.family_id)
            .where(RefreshTokenRow.digest == digest)
            .execution_options(populate_existing=True)
        )
    ).first()
    return None if found is None else (_token(found[0]), _family(found[1]))


async def _locked(session: AsyncSession, digest: str) -> tuple[RefreshRecord, FamilyRecord] | None:
    """The token and its family, with the family's row lock held (PostgreSQL)."""
    if session.get_bind().dialect.name == "sqlite":
        # BEGIN IMMEDIATE (by `write`) already holds the database's only write lock, so one
        # read sees everything every earlier writer committed: no row lock to wait for first.
        return await _joined(session, digest)
    family_id = await session.scalar(
        select(RefreshTokenRow.family_id).where(RefreshTokenRow.digest == digest)
    )
    if family_id is None:
        return None
    # Wait for, then hold, the family's row lock; the token is read only after it, so what it
    # says is what the previous holder committed (READ COMMITTED: a new snapshot per statement).
    family = await session.scalar(
        select(FamilyRow).where(FamilyRow.family_id == family_id).with_for_update(key_share=True)
    )
    token = await session.scalar(select(RefreshTokenRow).where(RefreshTokenRow.digest == digest))
    if family is None or token is None:  # purged between the reads
        return None
    return _token(token), _family(family)


async def _rotate_locked(
    session: AsyncSession, token: RefreshRecord, successor: RefreshRecord, now: float, grace: float
) -> tuple[str, RefreshRecord]:
    """Rotate a live token of a live family, or judge a repeat: (outcome, the token as read)."""
    if token.rotated_at is None:
        rotated = await session.scalar(
            update(RefreshTokenRow)
            .where(RefreshTokenRow.digest == token.digest, RefreshTokenRow.rotated_at.is_(None))
            .values(rotated_at=now, successor_digest=successor.digest)
            .returning(RefreshTokenRow.digest)
            .execution_options(synchronize_session=False)
        )
        if rotated is not None:
            # A plain INSERT: a clash fails the whole rotation rather than overwrite a token.
            await session.execute(insert(RefreshTokenRow).values(token_values(successor)))
            return RotationOutcome.ROTATED, token
        # Someone else rotated it first (impossible while the family lock is held): judge the
        # repeat against what they committed.
        again = await session.scalar(
            select(RefreshTokenRow)
            .where(RefreshTokenRow.digest == token.digest)
            .execution_options(populate_existing=True)
        )
        token = token if again is None else _token(again)
    following = (
        await session.execute(
            select(RefreshTokenRow.rotated_at).where(
                RefreshTokenRow.digest == (token.successor_digest or "")
            )
        )
    ).first()
    current = following is not None and following.rotated_at is None
    if within_grace(token, current, now, grace):
        return RotationOutcome.GRACE, token
    await session.execute(
        update(FamilyRow)
        .where(FamilyRow.family_id == token.family_id, FamilyRow.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return RotationOutcome.REUSED, token


def _add_minted(session: AsyncSession, values: dict[str, Any]) -> Insert:
    """Insert, or on a repeated (family_id, jti) take the new expiry: one atomic statement."""
    keys = ["family_id", "jti"]
    if session.get_bind().dialect.name == "postgresql":
        pg = postgresql.insert(MintedTokenRow).values(values)
        return pg.on_conflict_do_update(
            index_elements=keys, set_={"expires_at": pg.excluded.expires_at}
        )
    lite = sqlite.insert(MintedTokenRow).values(values)
    return lite.on_conflict_do_update(
        index_elements=keys, set_={"expires_at": lite.excluded.expires_at}
    )


def family_values(family: FamilyRecord) -> dict[str, Any]:
    return {
        "family_id": family.family_id,
        "client_id": family.client_id,
        "user_id": family.user_id,
        "scopes": dump_strings(family.scopes, sort=True),
        "audience": dump_strings(family.audience),
        "created_at": family.created_at,
        "expires_at": family.expires_at,
        "session_id": family.session_id,
        "auth_time": family.auth_time,
        "acr": family.acr,
        "dpop_jkt": family.dpop_jkt,
        "revoked_at": family.revoked_at,
    }


def _family(row: FamilyRow) -> FamilyRecord:
    return FamilyRecord(
        family_id=row.family_id,
        client_id=row.client_id,
        user_id=row.user_id,
        scopes=frozenset(load_strings(row.scopes)),
        audience=load_strings(row.audience),
        created_at=row.created_at,
        expires_at=row.expires_at,
        session_id=row.session_id,
        auth_time=row.auth_time,
        acr=row.acr,
        dpop_jkt=row.dpop_jkt,
        revoked_at=row.revoked_at,
    )


def token_values(token: RefreshRecord) -> dict[str, Any]:
    return {
        "digest": token.digest,
        "family_id": token.family_id,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "rotated_at": token.rotated_at,
        "successor_digest": token.successor_digest,
    }


def _token(row: RefreshTokenRow) -> RefreshRecord:
    return RefreshRecord(
        digest=row.digest,
        family_id=row.family_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        rotated_at=row.rotated_at,
        successor_digest=row.successor_digest,
    )
