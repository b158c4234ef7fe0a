"""Second factors on SQL. The two races that matter are settled by the database in one
statement: a TOTP step and a passkey's signature counter are compare-and-set UPDATEs, and a
recovery code is used by the DELETE that removes it."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.records import PasskeyCredential, RecoveryCode, TotpFactor
from tokenward.store.sql.models import PasskeyRow, RecoveryCodeRow, TotpFactorRow, upsert

Sessions = async_sessionmaker[AsyncSession]


def _changed(result: object) -> int:
    return result.rowcount if isinstance(result, CursorResult) else 0


class SqlTotpFactors:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def get(self, user_id: str) -> TotpFactor | None:
        async with self._sessions() as db:
            row = await db.get(TotpFactorRow, user_id)
            if row is None:
                return None
            return TotpFactor(row.user_id, row.sealed_secret, row.created_at, row.last_step)

    async def put(self, factor: TotpFactor) -> None:
        values = {
            "user_id": factor.user_id,
            "sealed_secret": factor.sealed_secret,
            "created_at": factor.created_at,
            "last_step": factor.last_step,
        }
        async with self._sessions.begin() as db:
            await db.execute(upsert(db, TotpFactorRow, [values], "user_id"))

    async def advance(self, user_id: str, step: int) -> bool:
        async with self._sessions.begin() as db:
            result = await db.execute(
                update(TotpFactorRow)
                .where(TotpFactorRow.user_id == user_id, TotpFactorRow.last_step < step)
                .values(last_step=step)
            )
            return _changed(result) == 1

    async def delete(self, user_id: str) -> bool:
        async with self._sessions.begin() as db:
            result = await db.execute(delete(TotpFactorRow).where(TotpFactorRow.user_id == user_id))
            return _changed(result) > 0


class SqlRecoveryCodes:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def replace(self, user_id: str, codes: Sequence[RecoveryCode]) -> None:
        async with self._sessions.begin() as db:
            await db.execute(delete(RecoveryCodeRow).where(RecoveryCodeRow.user_id == user_id))
            db.add_all(
                RecoveryCodeRow(
                    user_id=code.user_id,
                    code_id=code.code_id,
                    code_hash=code.code_hash,
                    created_at=code.created_at,
                )
                for code in codes
            )

    async def of_user(self, user_id: str) -> Sequence[RecoveryCode]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(RecoveryCodeRow).where(RecoveryCodeRow.user_id == user_id)
            )
            return [
                RecoveryCode(row.user_id, row.code_id, row.code_hash, row.created_at)
                for row in rows
            ]

    async def use(self, user_id: str, code_id: str) -> bool:
        async with self._sessions.begin() as db:
            result = await db.execute(
                delete(RecoveryCodeRow).where(
                    RecoveryCodeRow.user_id == user_id, RecoveryCodeRow.code_id == code_id
                )
            )
            return _changed(result) == 1


class SqlPasskeys:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def add(self, credential: PasskeyCredential) -> None:
        async with self._sessions.begin() as db:
            db.add(
                PasskeyRow(
                    credential_id=credential.credential_id,
                    user_id=credential.user_id,
                    public_key=credential.public_key,
                    sign_count=credential.sign_count,
                    created_at=credential.created_at,
                    name=credential.name,
                    last_used_at=credential.last_used_at,
                )
            )

    async def get(self, credential_id: str) -> PasskeyCredential | None:
        async with self._sessions() as db:
            row = await db.get(PasskeyRow, credential_id)
            return None if row is None else _passkey(row)

    async def of_user(self, user_id: str) -> Sequence[PasskeyCredential]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(PasskeyRow)
                .where(PasskeyRow.user_id == user_id)
                .order_by(PasskeyRow.created_at)
            )
            return [_passkey(row) for row in rows]

    async def used(self, credential_id: str, seen: int, count: int, now: float) -> bool:
        async with self._sessions.begin() as db:
            result = await db.execute(
                update(PasskeyRow)
                .where(PasskeyRow.credential_id == credential_id, PasskeyRow.sign_count == seen)
                .values(sign_count=count, last_used_at=now)
            )
            return _changed(result) == 1

    async def delete(self, user_id: str, credential_id: str) -> bool:
        async with self._sessions.begin() as db:
            result = await db.execute(
                delete(PasskeyRow).where(
                    PasskeyRow.user_id == user_id, PasskeyRow.credential_id == credential_id
                )
            )
            return _changed(result) == 1


def _passkey(row: PasskeyRow) -> PasskeyCredential:
    return PasskeyCredential(
        credential_id=row.credential_id,
        user_id=row.user_id,
        public_key=row.public_key,
        sign_count=row.sign_count,
        created_at=row.created_at,
        name=row.name,
        last_used_at=row.last_used_at,
    )
