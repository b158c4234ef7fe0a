"""KeyStore on SQL: the keyring's keys, private halves sealed before they arrive here."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.records import SigningChoice, StoredKey
from tokenward.store.sql.models import SigningChoiceRow, SigningKeyRow, upsert


class SqlKeyStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def load_all(self) -> Sequence[StoredKey]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(SigningKeyRow).order_by(SigningKeyRow.created_at, SigningKeyRow.kid)
            )
            return [_record(row) for row in rows]

    async def save(self, keys: Sequence[StoredKey]) -> None:
        """Upsert by kid in one statement and one transaction: a rotation lands whole or not."""
        # The last record of a kid wins, as in memory; PostgreSQL refuses to upsert a row twice
        # in one statement, so duplicates are folded here.
        latest = {key.kid: _values(key) for key in keys}
        if not latest:
            return
        async with self._sessions.begin() as session:
            await session.execute(upsert(session, SigningKeyRow, list(latest.values()), "kid"))

    async def load_choices(self) -> Sequence[SigningChoice]:
        async with self._sessions() as session:
            rows = await session.scalars(select(SigningChoiceRow))
            return [
                SigningChoice(row.audience, row.alg, row.previous, row.switch_at) for row in rows
            ]

    async def save_choices(self, choices: Sequence[SigningChoice]) -> None:
        latest = {
            choice.audience: {
                "audience": choice.audience,
                "alg": choice.alg,
                "previous": choice.previous,
                "switch_at": choice.switch_at,
            }
            for choice in choices
        }
        if not latest:
            return
        async with self._sessions.begin() as session:
            await session.execute(
                upsert(session, SigningChoiceRow, list(latest.values()), "audience")
            )


def _values(key: StoredKey) -> dict[str, object]:
    return {
        "kid": key.kid,
        "alg": key.alg,
        "state": key.state,
        "created_at": key.created_at,
        "activated_at": key.activated_at,
        "retiring_at": key.retiring_at,
        "retired_at": key.retired_at,
        "sealed_private": key.sealed_private,
    }


def _record(row: SigningKeyRow) -> StoredKey:
    return StoredKey(
        kid=row.kid,
        alg=row.alg,
        state=row.state,
        created_at=row.created_at,
        activated_at=row.activated_at,
        retiring_at=row.retiring_at,
        retired_at=row.retired_at,
        sealed_private=bytes(row.sealed_private),  # asyncpg may hand back a memoryview
    )
