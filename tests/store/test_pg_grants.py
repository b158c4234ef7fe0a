"""PgGrantStore's rotation where READ COMMITTED bites (store/sql/pg_grants.py): a rotation that
waited for its family's lock read the token before that wait, so what the lock's previous
holder did to the token is not in what it read. The conditional UPDATE decides all the same."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.store.conftest import open_engine
from tokenward.core.records import FamilyRecord, MintedToken, RefreshRecord, RotationOutcome
from tokenward.store.sql import PgGrantStore, session_factory
from tokenward.store.sql.pg_driver import driver

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

NOW = 1_800_000_000.0


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with open_engine("postgres", tmp_path) as engine:
        yield engine


async def _waiting_for_a_lock(engine: AsyncEngine, within: float = 10.0) -> None:
    """Until a rotation of this test's schema waits on a row lock."""
    deadline = time.monotonic() + within
    async with driver(engine) as connection:
        while time.monotonic() < deadline:
            waiting = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%FOR NO KEY UPDATE OF f%'"
                " AND pid IN (SELECT pid FROM pg_locks WHERE relation = "
                "'grant_families'::regclass)"
            )
            if waiting:
                return
            await asyncio.sleep(0.01)
    raise AssertionError("no rotation came to wait for the family's lock")


@pytest.mark.parametrize("grace", [0.0, 60.0])
async def test_a_rotation_that_waited_for_the_lock_sees_the_rotation_made_meanwhile(
    engine: AsyncEngine, grace: float
) -> None:
    grants = PgGrantStore(session_factory(engine), engine, lambda: NOW)
    family = FamilyRecord("f1", "c1", "u1", frozenset({"read"}), (), NOW, NOW + 3600)
    await grants.create(family, RefreshRecord("d1", "f1", NOW, NOW + 3600))
    async with driver(engine) as holder:
        lock = holder.transaction()
        await lock.start()
        await holder.execute(
            "SELECT 1 FROM grant_families WHERE family_id = 'f1' FOR NO KEY UPDATE"
        )
        late = asyncio.ensure_future(
            grants.rotate(
                "d1",
                RefreshRecord("d2-late", "f1", NOW + 1, NOW + 3600),
                NOW + 1,
                grace,
                MintedToken("jti-late", NOW + 901),
            )
        )
        await _waiting_for_a_lock(engine)
        # The lock's holder rotates d1 first, as a concurrent request would.
        await holder.execute(
            "UPDATE refresh_tokens SET rotated_at = $1, successor_digest = 'd2'"
            " WHERE digest = 'd1'",
            NOW + 0.5,
        )
        await holder.execute(
            "INSERT INTO refresh_tokens (digest, family_id, created_at, expires_at)"
            " VALUES ('d2', 'f1', $1, $2)",
            NOW + 0.5,
            NOW + 3600,
        )
        await lock.commit()
    outcome, _family, token = await late
    # A repeat of the rotated token: forgiven within a grace, else reuse (the family revoked).
    assert outcome == (RotationOutcome.GRACE if grace else RotationOutcome.REUSED)
    assert token is not None
    assert token.successor_digest == "d2"
    assert await grants.lookup("d2-late") is None  # no second successor
    current = await grants.lookup("d2")
    assert current is not None
    assert (current[1].revoked_at is not None) == (not grace)
    async with driver(engine) as connection:
        minted = await connection.fetch("SELECT jti FROM minted_tokens WHERE family_id = 'f1'")
    # What a grace hands out again is recorded; a reuse answers nothing and records nothing.
    assert [row["jti"] for row in minted] == (["jti-late"] if grace else [])
