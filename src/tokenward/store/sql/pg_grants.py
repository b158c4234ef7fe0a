"""The token endpoint's reads, rotations and code exchanges on PostgreSQL, on the pooled asyncpg
connection.

The same statements and locking as store/sql/grants.py's PostgreSQL path, written as SQL for
asyncpg (store/sql/pg_driver.py) instead of built by the ORM: a rotation locks its family's row
(`FOR NO KEY UPDATE`, which revoke_family's UPDATE also takes), reads the token after the lock
(READ COMMITTED: a new snapshot per statement, so it sees what the previous holder committed),
rotates it with a conditional UPDATE checked through RETURNING, and records the access token it
answers with, all in one transaction. Lookups are single statements outside a transaction.
Everything else these stores do is inherited unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tokenward.core.claims import AccessToken
from tokenward.core.records import (
    CodeRecord,
    DeviceRecord,
    FamilyRecord,
    MintedToken,
    RefreshRecord,
    RotationOutcome,
    UserRecord,
)
from tokenward.core.rotation import ended, within_grace
from tokenward.store.sql import grants as sql_grants
from tokenward.store.sql.access_tokens import SqlAccessTokenStore, token_of
from tokenward.store.sql.codes import SqlCodeStore
from tokenward.store.sql.devices import SqlDeviceStore, polled
from tokenward.store.sql.grant_rows import (
    CODE,
    FAMILY,
    TOKEN,
    code_of,
    device_of,
    device_query,
    family_of,
    joined_query,
    user_of,
    user_query,
)
from tokenward.store.sql.grant_rows import token_of as refresh_of
from tokenward.store.sql.grants import SqlGrantStore
from tokenward.store.sql.pg_driver import driver
from tokenward.store.sql.users import SqlUserStore

Rotation = tuple[str, FamilyRecord | None, RefreshRecord | None]

_JOINED = joined_query("$1")
_USER = user_query("$1")
_TOKEN_BY_DIGEST = f"SELECT {', '.join(TOKEN)} FROM refresh_tokens WHERE digest = $1"  # noqa: S608
# The token `$1` and its family, the family's row locked for this transaction. Under READ
# COMMITTED a wait for that lock ends with the family's row as its holder committed it, but the
# token's columns as the statement first read them: the rotation's own conditional UPDATE
# (rotated_at IS NULL) decides, and a token found rotated after all is read again.
_LOCKED_JOINED = joined_query("$1") + " FOR NO KEY UPDATE OF f"
_ROTATE = (
    "UPDATE refresh_tokens SET rotated_at = $1, successor_digest = $2"
    " WHERE digest = $3 AND rotated_at IS NULL RETURNING digest"
)
# The common rotation in one round trip: the conditional UPDATE, and only if it matched, the
# successor's INSERT (a plain one: a clash fails the whole rotation rather than overwrite a
# token) and the access token recorded on the family, its long-expired ones forgotten (never
# the one being recorded: one statement must not both delete and update a row).
_ROTATE_AND_RECORD = (
    "WITH rotated AS (" + _ROTATE + "),"  # noqa: S608 - names from grant_rows, values bound
    f" successor AS (INSERT INTO refresh_tokens ({', '.join(TOKEN)})"
    # Parameters in a SELECT list take no type from the target column: cast where not text.
    " SELECT $2, $4, $5::float8, $6::float8, $7::float8, $8 FROM rotated),"
    " forgotten AS (DELETE FROM minted_tokens WHERE family_id = $9 AND expires_at <= $10"
    " AND jti <> $11 AND EXISTS (SELECT 1 FROM rotated)),"
    " recorded AS (INSERT INTO minted_tokens (family_id, jti, expires_at)"
    " SELECT $9, $11, $12::float8 FROM rotated"
    " ON CONFLICT (family_id, jti) DO UPDATE SET expires_at = excluded.expires_at)"
    " SELECT count(*) FROM rotated"
)

_INSERT_TOKEN = (
    f"INSERT INTO refresh_tokens ({', '.join(TOKEN)})"  # noqa: S608
    " VALUES ($1, $2, $3, $4, $5, $6)"
)
_SUCCESSOR_ROTATED_AT = "SELECT rotated_at FROM refresh_tokens WHERE digest = $1"
_REVOKE_FAMILY = (
    "UPDATE grant_families SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL"
)
_FORGET_MINTED = "DELETE FROM minted_tokens WHERE family_id = $1 AND expires_at <= $2"
_ADD_MINTED = (
    "INSERT INTO minted_tokens (family_id, jti, expires_at) VALUES ($1, $2, $3)"
    " ON CONFLICT (family_id, jti) DO UPDATE SET expires_at = excluded.expires_at"
)
_ACCESS_TOKEN = "SELECT token FROM access_tokens WHERE digest = $1 AND expires_at > $2"
_DEVICE_EXISTS = "SELECT 1 FROM device_codes WHERE device_digest = $1"
_DEVICE_LOCKED = device_query("$1") + " FOR NO KEY UPDATE"
_CODE_COLUMNS = ", ".join(CODE)
_PEEK = f"SELECT {_CODE_COLUMNS} FROM authorization_codes WHERE digest = $1"  # noqa: S608
_CONSUME = (
    "UPDATE authorization_codes SET consumed_at = $1"  # noqa: S608 - names from grant_rows
    f" WHERE digest = $2 AND consumed_at IS NULL RETURNING {_CODE_COLUMNS}"
)
_MARK_REPLAY = (
    "UPDATE authorization_codes SET replayed_at = coalesce(replayed_at, $1)"  # noqa: S608
    f" WHERE digest = $2 RETURNING {_CODE_COLUMNS}"
)
_REDEEM = (
    "UPDATE authorization_codes SET family_id = $1, access_jti = $2, access_exp = $3"
    " WHERE digest = $4 AND consumed_at IS NOT NULL AND replayed_at IS NULL"
    " AND access_jti IS NULL RETURNING digest"
)
_INSERT_FAMILY = (
    f"INSERT INTO grant_families ({', '.join(FAMILY)})"  # noqa: S608
    f" VALUES ({', '.join(f'${n}' for n in range(1, len(FAMILY) + 1))})"
)
_INSERT_MINTED = "INSERT INTO minted_tokens (family_id, jti, expires_at) VALUES ($1, $2, $3)"
# Columns stored as double precision. A parameter in a SELECT list takes no type from the
# column it goes to, so these are cast.
_FLOATS = frozenset(
    ("created_at", "expires_at", "auth_time", "revoked_at", "rotated_at", "access_exp")
)


def _bound(columns: tuple[str, ...], first: int) -> str:
    """The SELECT list binding `columns` to $first, $first + 1, ..."""
    return ", ".join(
        f"${first + n}::float8" if column in _FLOATS else f"${first + n}"
        for n, column in enumerate(columns)
    )


# An exchange's single use and what it minted, in one conditional UPDATE: the code is used and
# the access token recorded on it together (as `consume` then `redeem` in one transaction did).
_USE = (
    "UPDATE authorization_codes SET consumed_at = $1, family_id = $2, access_jti = $3,"
    " access_exp = $4 WHERE digest = $5 AND consumed_at IS NULL RETURNING digest"
)
# ... and, only if it matched, the new family, its first refresh token and the access token
# recorded on the family: the whole exchange in one statement, so one round trip.
_USE_AND_START = (
    f"WITH used AS ({_USE}),"  # noqa: S608 - names from grant_rows, values bound
    f" family AS (INSERT INTO grant_families ({', '.join(FAMILY)})"
    f" SELECT {_bound(FAMILY, 6)} FROM used),"
    f" first AS (INSERT INTO refresh_tokens ({', '.join(TOKEN)})"
    f" SELECT {_bound(TOKEN, 6 + len(FAMILY))} FROM used),"
    " minted AS (INSERT INTO minted_tokens (family_id, jti, expires_at)"
    " SELECT $2, $3, $4 FROM used)"
    " SELECT count(*) FROM used"
)


class PgGrantStore(SqlGrantStore):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        engine: AsyncEngine,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(sessions, clock)
        self._engine = engine

    async def lookup(self, digest: str) -> tuple[RefreshRecord, FamilyRecord] | None:
        async with driver(self._engine) as connection:
            row = await connection.fetchrow(_JOINED, digest)
        if row is None:
            return None
        return refresh_of(row[: len(TOKEN)]), family_of(row[len(TOKEN) :])

    async def rotate(
        self,
        digest: str,
        successor: RefreshRecord,
        now: float,
        grace: float,
        minted: MintedToken | None = None,
    ) -> Rotation:
        async with driver(self._engine) as connection, connection.transaction():
            return await _rotate(connection, digest, successor, now, grace, minted)

    async def add_minted(self, family_id: str, token: MintedToken) -> None:
        async with driver(self._engine) as connection, connection.transaction():
            await _add_minted(connection, family_id, token)


async def _rotate(
    connection: Any,
    digest: str,
    successor: RefreshRecord,
    now: float,
    grace: float,
    minted: MintedToken | None,
) -> Rotation:
    """As SqlGrantStore.rotate on PostgreSQL, in the caller's transaction: in the common case
    (the token current, the family live) three round trips and the COMMIT."""
    locked = await connection.fetchrow(_LOCKED_JOINED, digest)
    if locked is None:
        return RotationOutcome.INVALID, None, None
    token, family = refresh_of(locked[: len(TOKEN)]), family_of(locked[len(TOKEN) :])
    if ended(family, token, now):
        return RotationOutcome.INVALID, family, token
    if token.rotated_at is None and minted is not None:
        rotated = await connection.fetchval(
            _ROTATE_AND_RECORD,
            *(now, successor.digest, token.digest, successor.family_id),
            *(successor.created_at, successor.expires_at),
            *(successor.rotated_at, successor.successor_digest, family.family_id),
            *(minted.expires_at - sql_grants.MINTED_HORIZON, minted.jti, minted.expires_at),
        )
        if rotated:
            return RotationOutcome.ROTATED, family, token
        # Rotated by the lock's previous holder: the token's columns above predate that.
        again = await connection.fetchrow(_TOKEN_BY_DIGEST, digest)
        token = token if again is None else refresh_of(again)
    outcome, token = await _rotate_locked(connection, token, successor, now, grace)
    if minted is not None and outcome in RotationOutcome.DELIVERED:
        await _add_minted(connection, family.family_id, minted)
    return outcome, family, token


async def _rotate_locked(
    connection: Any, token: RefreshRecord, successor: RefreshRecord, now: float, grace: float
) -> tuple[str, RefreshRecord]:
    if token.rotated_at is None:
        rotated = await connection.fetchval(_ROTATE, now, successor.digest, token.digest)
        if rotated is not None:
            # A plain INSERT: a clash fails the whole rotation rather than overwrite a token.
            await _insert_token(connection, successor)
            return RotationOutcome.ROTATED, token
        # Someone else rotated it first (impossible while the family lock is held).
        again = await connection.fetchrow(_TOKEN_BY_DIGEST, token.digest)
        token = token if again is None else refresh_of(again)
    following = await connection.fetchrow(_SUCCESSOR_ROTATED_AT, token.successor_digest or "")
    current = following is not None and following[0] is None
    if within_grace(token, current, now, grace):
        return RotationOutcome.GRACE, token
    await connection.execute(_REVOKE_FAMILY, now, token.family_id)
    return RotationOutcome.REUSED, token


async def _insert_token(connection: Any, token: RefreshRecord) -> None:
    """A plain INSERT: a clash fails the transaction rather than overwrite a token."""
    await connection.execute(
        _INSERT_TOKEN,
        token.digest,
        token.family_id,
        token.created_at,
        token.expires_at,
        token.rotated_at,
        token.successor_digest,
    )


async def _add_minted(connection: Any, family_id: str, token: MintedToken) -> None:
    """Record `token` on the family, forgetting its tokens that expired long before it."""
    await connection.execute(
        _FORGET_MINTED, family_id, token.expires_at - sql_grants.MINTED_HORIZON
    )
    await connection.execute(_ADD_MINTED, family_id, token.jti, token.expires_at)


class PgCodeStore(SqlCodeStore):
    """An authorization code's single use and what its exchange minted, as SqlCodeStore does on
    PostgreSQL: `consume` is one conditional UPDATE (of concurrent exchanges exactly one
    matches; the others wait for its row lock, then match nothing), and the winner records its
    tokens and new family under that same lock, so a replay reads both or neither. `exchange`,
    the token endpoint's path, is all of that in one statement."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        engine: AsyncEngine,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(sessions, clock)
        self._engine = engine

    async def peek(self, digest: str) -> CodeRecord | None:
        async with driver(self._engine) as connection:
            row = await connection.fetchrow(_PEEK, digest)
        return None if row is None else code_of(row)

    async def consume(self, digest: str, now: float) -> tuple[CodeRecord | None, bool]:
        async with driver(self._engine) as connection, connection.transaction():
            return await _consume(connection, digest, now)

    async def redeem(
        self, digest: str, minted: MintedToken, grant: tuple[FamilyRecord, RefreshRecord] | None
    ) -> bool:
        async with driver(self._engine) as connection, connection.transaction():
            return await self._redeem_in(connection, digest, minted, grant)

    async def exchange(
        self,
        digest: str,
        now: float,
        minted: MintedToken,
        grant: tuple[FamilyRecord, RefreshRecord] | None,
    ) -> tuple[bool, CodeRecord | None]:
        """One statement uses the code, records what was minted and starts the family (no
        transaction around it: a single statement is atomic); if the code was used before,
        a second marks the replay and reads what the first exchange recorded."""
        async with driver(self._engine) as connection:
            if grant is None:
                used = await connection.fetchval(
                    _USE, now, None, minted.jti, minted.expires_at, digest
                )
            else:
                family, first = grant
                family_values = sql_grants.family_values(family)
                token_values = sql_grants.token_values(first)
                used = await connection.fetchval(
                    _USE_AND_START,
                    *(now, family.family_id, minted.jti, minted.expires_at, digest),
                    *(family_values[column] for column in FAMILY),
                    *(token_values[column] for column in TOKEN),
                )
            if used:
                if grant is not None:
                    self._redeems += 1  # most families start here: they purge as creates do
                    if self._redeems % sql_grants.PURGE_EVERY == 0:
                        async with connection.transaction():
                            await _purge_families(connection, self._clock())
                return True, None
            replayed = await connection.fetchrow(_MARK_REPLAY, now, digest)
            return False, None if replayed is None else code_of(replayed)

    async def _redeem_in(
        self,
        connection: Any,
        digest: str,
        minted: MintedToken,
        grant: tuple[FamilyRecord, RefreshRecord] | None,
    ) -> bool:
        family_id = grant[0].family_id if grant else None
        recorded = await connection.fetchval(
            _REDEEM, family_id, minted.jti, minted.expires_at, digest
        )
        if recorded is None:
            return False
        if grant is not None:
            family, first = grant
            values = sql_grants.family_values(family)
            await connection.execute(_INSERT_FAMILY, *(values[column] for column in FAMILY))
            await _insert_token(connection, first)
            await connection.execute(
                _INSERT_MINTED, family.family_id, minted.jti, minted.expires_at
            )
            self._redeems += 1  # most families start here: they purge as creates do
            if self._redeems % sql_grants.PURGE_EVERY == 0:
                await _purge_families(connection, self._clock())
        return True


async def _consume(connection: Any, digest: str, now: float) -> tuple[CodeRecord | None, bool]:
    first = await connection.fetchrow(_CONSUME, now, digest)
    if first is not None:
        # The record as it was before this use, as the memory backend returns it.
        return replace(code_of(first), consumed_at=None), True
    # A replay: mark the code (under its row lock) and read what the first exchange recorded.
    replayed = await connection.fetchrow(_MARK_REPLAY, now, digest)
    return (None if replayed is None else code_of(replayed)), False


async def _purge_families(connection: Any, now: float) -> None:
    """As grants.purge_families (refresh tokens go with their family, ON DELETE CASCADE)."""
    await connection.execute(
        "DELETE FROM grant_families WHERE expires_at <= $1", now - sql_grants.PURGE_AFTER
    )
    await connection.execute("DELETE FROM minted_tokens WHERE expires_at <= $1", now)


class PgDeviceStore(SqlDeviceStore):
    """`poll` on the driver: a device code nobody issued costs one autocommit read and takes no
    row lock; a real one is read under its row lock and updated in one transaction, as
    SqlDeviceStore does. Everything else inherited."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        engine: AsyncEngine,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(sessions, clock)
        self._engine = engine

    async def poll(self, device_digest: str, now: float) -> tuple[DeviceRecord | None, bool]:
        async with driver(self._engine) as connection:
            if await connection.fetchval(_DEVICE_EXISTS, device_digest) is None:
                return None, False
            async with connection.transaction():
                row = await connection.fetchrow(_DEVICE_LOCKED, device_digest)
                if row is None:  # purged since the read above
                    return None, False
                record = device_of(row)  # as it was: what this poll answers from
                values, too_fast = polled(record, now)
                assignments = ", ".join(
                    f"{column} = ${n}" for n, column in enumerate(values, start=2)
                )
                await connection.execute(
                    f"UPDATE device_codes SET {assignments} WHERE device_digest = $1",  # noqa: S608
                    device_digest,
                    *values.values(),
                )
                return record, too_fast


class PgUserStore(SqlUserStore):
    """`get` (read on every refresh and code exchange) on the driver; the rest inherited."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine) -> None:
        super().__init__(sessions)
        self._engine = engine

    async def get(self, user_id: str) -> UserRecord | None:
        async with driver(self._engine) as connection:
            row = await connection.fetchrow(_USER, user_id)
        return None if row is None else user_of(row)


class PgAccessTokenStore(SqlAccessTokenStore):
    """`get` (every opaque token introspected or presented that no cache holds) on the
    driver; the rest inherited."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        engine: AsyncEngine,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(sessions, clock)
        self._engine = engine

    async def get(self, digest: str) -> AccessToken | None:
        async with driver(self._engine) as connection:
            document = await connection.fetchval(_ACCESS_TOKEN, digest, self._clock())
        if document is None:
            return None
        # asyncpg hands a JSON column over as its text (no codec is set on the connection).
        return token_of(orjson.loads(document) if isinstance(document, str) else document)
