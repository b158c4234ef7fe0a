"""SessionParticipants contract: which clients took part in a session, found by session and by
user until they expire, on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.store.conftest import SQL, open_engine
from tokenward.core.ports import SessionParticipants
from tokenward.core.records import SessionParticipant
from tokenward.store.memory_participants import MemorySessionParticipants
from tokenward.store.sql import SqlSessionParticipants, session_factory

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", *SQL])
async def participants(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SessionParticipants]:
    if request.param == "memory":
        yield MemorySessionParticipants()
        return
    async with open_engine(request.param, tmp_path) as engine:
        yield SqlSessionParticipants(session_factory(engine))


async def test_found_by_session_and_by_user(participants: SessionParticipants) -> None:
    await participants.add(SessionParticipant("s1", "alice", "web", 2000.0))
    await participants.add(SessionParticipant("s1", "alice", "tv", 2000.0))
    await participants.add(SessionParticipant("s2", "alice", "web", 2000.0))
    await participants.add(SessionParticipant("s3", "bob", "web", 2000.0))

    in_s1 = await participants.of_session("s1", 1000.0)
    of_alice = await participants.of_user("alice", 1000.0)

    assert sorted(row.client_id for row in in_s1) == ["tv", "web"]
    assert sorted((row.session_id, row.client_id) for row in of_alice) == [
        ("s1", "tv"),
        ("s1", "web"),
        ("s2", "web"),
    ]
    assert await participants.of_session("unknown", 1000.0) == []


async def test_adding_again_keeps_the_later_expiry(participants: SessionParticipants) -> None:
    await participants.add(SessionParticipant("s1", "alice", "web", 3000.0))
    await participants.add(SessionParticipant("s1", "alice", "web", 1500.0))

    [row] = await participants.of_session("s1", 2000.0)

    assert row == SessionParticipant("s1", "alice", "web", 3000.0)


async def test_expired_ones_are_not_found_and_are_purged(
    participants: SessionParticipants,
) -> None:
    await participants.add(SessionParticipant("s1", "alice", "web", 1000.0))
    await participants.add(SessionParticipant("s1", "alice", "tv", 5000.0))

    assert [row.client_id for row in await participants.of_session("s1", 2000.0)] == ["tv"]
    assert await participants.purge(2000.0) == 1
    assert await participants.purge(2000.0) == 0
    assert [row.client_id for row in await participants.of_user("alice", 0.0)] == ["tv"]
