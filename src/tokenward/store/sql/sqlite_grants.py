"""GrantStore, CodeStore and UserStore.get on SQLite, the token endpoint's path in one thread hop.

The same statements as store/sql/grants.py and store/sql/codes.py -- rotation is a conditional
UPDATE ... WHERE rotated_at IS NULL checked through RETURNING, a reuse revokes the family, a code
is consumed by one conditional UPDATE -- written as plain SQL on the schema of store/sql/models.py
and run by a `SqliteWriter` (store/sql/sqlite_writer.py): a whole rotation, use or redemption is
one synchronous call inside a group-committed BEGIN IMMEDIATE transaction, so it reads and writes
under SQLite's one write lock. Everything else these stores do is inherited unchanged.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.records import (
    CodeRecord,
    FamilyRecord,
    MintedToken,
    RefreshRecord,
    RotationOutcome,
    UserRecord,
)
from tokenward.core.rotation import ended, within_grace
from tokenward.store.sql import codes as sql_codes
from tokenward.store.sql import grants as sql_grants
from tokenward.store.sql.codes import SqlCodeStore
from tokenward.store.sql.grant_rows import (
    CODE,
    TOKEN,
    code_of,
    family_of,
    joined_query,
    token_of,
    user_of,
    user_query,
)
from tokenward.store.sql.grants import SqlGrantStore
from tokenward.store.sql.sqlite_writer import SqliteWriter
from tokenward.store.sql.users import SqlUserStore

Rotation = tuple[str, FamilyRecord | None, RefreshRecord | None]

# Column names from grant_rows; every value is bound.
_JOINED = joined_query("?")
_CODE_COLUMNS = ", ".join(CODE)
_SAVE_CODE = (
    f"INSERT INTO authorization_codes ({_CODE_COLUMNS})"  # noqa: S608
    f" VALUES ({', '.join(f':{column}' for column in CODE)})"
    " ON CONFLICT (digest) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in CODE if column != "digest")
)
_USER = user_query("?")
# An exchange uses the code and records what it minted in one UPDATE (as pg_grants does): an
# unconsumed code has no replay mark and nothing recorded on it, so `consumed_at IS NULL` is
# the whole condition of redeem's three.
_USE = (
    "UPDATE authorization_codes SET consumed_at = ?, family_id = ?, access_jti = ?,"
    " access_exp = ? WHERE digest = ? AND consumed_at IS NULL RETURNING digest"
)
_MARK_REPLAY = (
    "UPDATE authorization_codes SET replayed_at = coalesce(replayed_at, ?)"  # noqa: S608
    f" WHERE digest = ? RETURNING {_CODE_COLUMNS}"
)


class SqliteGrantStore(SqlGrantStore):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        writer: SqliteWriter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(sessions, clock)
        self._writer = writer

    async def rotate(
        self,
        digest: str,
        successor: RefreshRecord,
        now: float,
        grace: float,
        minted: MintedToken | None = None,
    ) -> Rotation:
        def work(connection: sqlite3.Connection) -> Rotation:
            return rotate(connection, digest, successor, now, grace, minted)

        return await self._writer.write(work)

    async def lookup(self, digest: str) -> tuple[RefreshRecord, FamilyRecord] | None:
        return await self._writer.read(lambda connection: joined(connection, digest))

    async def add_minted(self, family_id: str, token: MintedToken) -> None:
        await self._writer.write(lambda connection: add_minted(connection, family_id, token))


class SqliteCodeStore(SqlCodeStore):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        writer: SqliteWriter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(sessions, clock)
        self._writer = writer

    async def save(self, code: CodeRecord) -> None:
        """As SqlCodeStore.save (insert or replace by digest), in the writer's batch."""
        self._saves += 1
        purge = self._saves % sql_codes.PURGE_EVERY == 0
        cutoff = self._clock() - sql_codes.PURGE_AFTER
        values = sql_codes.code_values(code)

        def work(connection: sqlite3.Connection) -> None:
            connection.execute(_SAVE_CODE, values)
            if purge:
                connection.execute(
                    "DELETE FROM authorization_codes WHERE expires_at <= ?", (cutoff,)
                )

        await self._writer.write(work)

    async def consume(self, digest: str, now: float) -> tuple[CodeRecord | None, bool]:
        return await self._writer.write(lambda connection: consume(connection, digest, now))

    async def peek(self, digest: str) -> CodeRecord | None:
        return await self._writer.read(lambda connection: peek(connection, digest))

    async def redeem(
        self, digest: str, minted: MintedToken, grant: tuple[FamilyRecord, RefreshRecord] | None
    ) -> bool:
        return await self._writer.write(
            lambda connection: self._redeem_here(connection, digest, minted, grant)
        )

    async def exchange(
        self,
        digest: str,
        now: float,
        minted: MintedToken,
        grant: tuple[FamilyRecord, RefreshRecord] | None,
    ) -> tuple[bool, CodeRecord | None]:
        def work(connection: sqlite3.Connection) -> tuple[bool, CodeRecord | None]:
            family_id = grant[0].family_id if grant else None
            used = connection.execute(
                _USE, (now, family_id, minted.jti, minted.expires_at, digest)
            ).fetchone()
            if used is None:  # used before (or never issued): a replay, marked
                return False, mark_replay(connection, digest, now)
            if grant is not None:
                start_family(connection, grant, minted)
                self._purge_now_and_then(connection)
            return True, None

        return await self._writer.write(work)

    def _redeem_here(
        self,
        connection: sqlite3.Connection,
        digest: str,
        minted: MintedToken,
        grant: tuple[FamilyRecord, RefreshRecord] | None,
    ) -> bool:
        redeemed = redeem(connection, digest, minted, grant)
        if redeemed and grant is not None:
            self._purge_now_and_then(connection)
        return redeemed

    def _purge_now_and_then(self, connection: sqlite3.Connection) -> None:
        self._redeems += 1  # most families start here: they purge as creates do
        if self._redeems % sql_grants.PURGE_EVERY == 0:
            purge_families(connection, self._clock())


def joined(
    connection: sqlite3.Connection, digest: str
) -> tuple[RefreshRecord, FamilyRecord] | None:
    """The token and its family, in one SELECT."""
    row = connection.execute(_JOINED, (digest,)).fetchone()
    if row is None:
        return None
    return token_of(row[: len(TOKEN)]), family_of(row[len(TOKEN) :])


def rotate(
    connection: sqlite3.Connection,
    digest: str,
    successor: RefreshRecord,
    now: float,
    grace: float,
    minted: MintedToken | None,
) -> Rotation:
    """As SqlGrantStore.rotate, inside the writer's transaction (the write lock is held)."""
    found = joined(connection, digest)
    if found is None:
        return RotationOutcome.INVALID, None, None
    token, family = found
    if ended(family, token, now):
        return RotationOutcome.INVALID, family, token
    outcome, token = _rotate_locked(connection, token, successor, now, grace)
    if minted is not None and outcome in RotationOutcome.DELIVERED:
        add_minted(connection, family.family_id, minted)
    return outcome, family, token


def _rotate_locked(
    connection: sqlite3.Connection,
    token: RefreshRecord,
    successor: RefreshRecord,
    now: float,
    grace: float,
) -> tuple[str, RefreshRecord]:
    if token.rotated_at is None:
        rotated = connection.execute(
            "UPDATE refresh_tokens SET rotated_at = ?, successor_digest = ?"
            " WHERE digest = ? AND rotated_at IS NULL RETURNING digest",
            (now, successor.digest, token.digest),
        ).fetchone()
        if rotated is not None:
            # A plain INSERT: a clash fails the whole rotation rather than overwrite a token.
            _insert(connection, "refresh_tokens", sql_grants.token_values(successor))
            return RotationOutcome.ROTATED, token
        # Someone else rotated it first (impossible while the write lock is held).
        again = connection.execute(
            f"SELECT {', '.join(TOKEN)} FROM refresh_tokens WHERE digest = ?",  # noqa: S608
            (token.digest,),
        ).fetchone()
        token = token if again is None else token_of(again)
    following = connection.execute(
        "SELECT rotated_at FROM refresh_tokens WHERE digest = ?", (token.successor_digest or "",)
    ).fetchone()
    current = following is not None and following[0] is None
    if within_grace(token, current, now, grace):
        return RotationOutcome.GRACE, token
    connection.execute(
        "UPDATE grant_families SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL",
        (now, token.family_id),
    )
    return RotationOutcome.REUSED, token


def add_minted(connection: sqlite3.Connection, family_id: str, token: MintedToken) -> None:
    """Record `token` on the family, forgetting its tokens that expired long before it."""
    connection.execute(
        "DELETE FROM minted_tokens WHERE family_id = ? AND expires_at <= ?",
        (family_id, token.expires_at - sql_grants.MINTED_HORIZON),
    )
    _upsert_minted(connection, family_id, token)


def _upsert_minted(connection: sqlite3.Connection, family_id: str, token: MintedToken) -> None:
    connection.execute(
        "INSERT INTO minted_tokens (family_id, jti, expires_at) VALUES (?, ?, ?)"
        " ON CONFLICT (family_id, jti) DO UPDATE SET expires_at = excluded.expires_at",
        (family_id, token.jti, token.expires_at),
    )


def peek(connection: sqlite3.Connection, digest: str) -> CodeRecord | None:
    row = connection.execute(
        f"SELECT {_CODE_COLUMNS} FROM authorization_codes WHERE digest = ?",  # noqa: S608
        (digest,),
    ).fetchone()
    return None if row is None else code_of(row)


def consume(
    connection: sqlite3.Connection, digest: str, now: float
) -> tuple[CodeRecord | None, bool]:
    """As SqlCodeStore.consume: one conditional UPDATE decides the single use."""
    first = connection.execute(
        f"UPDATE authorization_codes SET consumed_at = ?"  # noqa: S608
        f" WHERE digest = ? AND consumed_at IS NULL RETURNING {_CODE_COLUMNS}",
        (now, digest),
    ).fetchone()
    if first is not None:
        # The record as it was before this use, as the memory backend returns it.
        return replace(code_of(first), consumed_at=None), True
    return mark_replay(connection, digest, now), False


def mark_replay(connection: sqlite3.Connection, digest: str, now: float) -> CodeRecord | None:
    """Mark a used code as replayed (the first mark stays); the code as it stands."""
    replayed = connection.execute(_MARK_REPLAY, (now, digest)).fetchone()
    return None if replayed is None else code_of(replayed)


def redeem(
    connection: sqlite3.Connection,
    digest: str,
    minted: MintedToken,
    grant: tuple[FamilyRecord, RefreshRecord] | None,
) -> bool:
    """As SqlCodeStore.redeem: what the exchange minted, recorded on the consumed code unless a
    replay marked it first, with the new family, in the writer's transaction."""
    recorded = connection.execute(
        "UPDATE authorization_codes SET family_id = ?, access_jti = ?, access_exp = ?"
        " WHERE digest = ? AND consumed_at IS NOT NULL AND replayed_at IS NULL"
        " AND access_jti IS NULL RETURNING digest",
        (grant[0].family_id if grant else None, minted.jti, minted.expires_at, digest),
    ).fetchone()
    if recorded is None:
        return False
    if grant is not None:
        start_family(connection, grant, minted)
    return True


def start_family(
    connection: sqlite3.Connection,
    grant: tuple[FamilyRecord, RefreshRecord],
    minted: MintedToken,
) -> None:
    """The family a code starts, its first refresh token and the access token minted with it."""
    family, first = grant
    _insert(connection, "grant_families", sql_grants.family_values(family))
    _insert(connection, "refresh_tokens", sql_grants.token_values(first))
    connection.execute(
        "INSERT INTO minted_tokens (family_id, jti, expires_at) VALUES (?, ?, ?)",
        (family.family_id, minted.jti, minted.expires_at),
    )


def purge_families(connection: sqlite3.Connection, now: float) -> None:
    """As grants.purge_families (refresh tokens go with their family, ON DELETE CASCADE)."""
    connection.execute(
        "DELETE FROM grant_families WHERE expires_at <= ?", (now - sql_grants.PURGE_AFTER,)
    )
    connection.execute("DELETE FROM minted_tokens WHERE expires_at <= ?", (now,))


def _insert(connection: sqlite3.Connection, table: str, values: Mapping[str, Any]) -> None:
    names = ", ".join(values)
    marks = ", ".join(f":{name}" for name in values)
    connection.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", values)  # noqa: S608


class SqliteUserStore(SqlUserStore):
    """`get` (read on every refresh and code exchange) in one hop to the writer's reader
    thread; everything else inherited unchanged."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], writer: SqliteWriter) -> None:
        super().__init__(sessions)
        self._writer = writer

    async def get(self, user_id: str) -> UserRecord | None:
        row = await self._writer.read(
            lambda connection: connection.execute(_USER, (user_id,)).fetchone()
        )
        return None if row is None else user_of(row)
