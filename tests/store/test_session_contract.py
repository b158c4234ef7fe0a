"""SessionStore contract: browser logins by id, by secret digest and by user; ending is
idempotent and keeps the first end time."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from tests.store.conftest import Flows, count_rows
from tokenward.core.ports import Conflict
from tokenward.core.records import SessionRecord
from tokenward.store.sql import sessions as sql_sessions

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000.0


def login(session_id: str, user_id: str = "u1", **changes: object) -> SessionRecord:
    record = SessionRecord(
        session_id=session_id,
        secret_digest=f"secret-of-{session_id}",
        user_id=user_id,
        auth_time=NOW - 0.25,
        expires_at=NOW + 3600.5,
    )
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


async def test_an_unknown_session_is_none_everywhere(flows: Flows) -> None:
    assert await flows.sessions.get("s0") is None
    assert await flows.sessions.by_secret("nothing") is None
    assert await flows.sessions.end("s0", NOW) is None
    assert list(await flows.sessions.for_user("u1")) == []


async def test_every_field_round_trips_by_id_and_by_secret(flows: Flows) -> None:
    full = login("s1", acr="urn:mace:incommon:iap:silver", ended_at=NOW + 0.123456)
    bare = login("s2", user_id="u2")
    await flows.sessions.put(full)
    await flows.sessions.put(bare)

    assert await flows.sessions.get("s1") == full
    assert await flows.sessions.by_secret("secret-of-s1") == full
    assert await flows.sessions.get("s2") == bare
    assert await flows.sessions.by_secret("secret-of-s2") == bare
    assert await flows.sessions.by_secret("secret-of-s") is None


async def test_put_replaces_by_session_id(flows: Flows) -> None:
    await flows.sessions.put(login("s1"))
    renewed = login("s1", secret_digest="rotated-secret", expires_at=NOW + 7200, acr="mfa")

    await flows.sessions.put(renewed)

    assert await flows.sessions.get("s1") == renewed
    assert await flows.sessions.by_secret("rotated-secret") == renewed
    assert await flows.sessions.by_secret("secret-of-s1") is None


async def test_end_marks_the_session_once_and_returns_it(flows: Flows) -> None:
    await flows.sessions.put(login("s1"))

    ended = await flows.sessions.end("s1", NOW + 10)
    again = await flows.sessions.end("s1", NOW + 20)

    assert ended == login("s1", ended_at=NOW + 10)
    assert again == ended  # idempotent: the first end time stays
    assert await flows.sessions.get("s1") == ended
    assert await flows.sessions.by_secret("secret-of-s1") == ended


async def test_for_user_lists_that_users_sessions_only(flows: Flows) -> None:
    mine = [login("s1"), login("s2", auth_time=NOW + 5), login("s3", ended_at=NOW)]
    for record in [*mine, login("s4", user_id="u2")]:
        await flows.sessions.put(record)

    listed = await flows.sessions.for_user("u1")

    assert sorted(listed, key=lambda s: s.session_id) == mine
    assert list(await flows.sessions.for_user("u2")) == [login("s4", user_id="u2")]
    assert list(await flows.sessions.for_user("u3")) == []


async def test_concurrent_ends_agree_on_one_end_time(flows: Flows) -> None:
    await flows.sessions.put(login("s1"))

    ended = await asyncio.gather(*(flows.sessions.end("s1", NOW + i) for i in range(10)))

    first = {record.ended_at for record in ended if record is not None}
    assert len(first) == 1
    assert (await flows.sessions.get("s1")) == login("s1", ended_at=first.pop())


async def test_sql_refuses_a_secret_another_session_holds(sql_flows: Flows) -> None:
    await sql_flows.sessions.put(login("s1"))

    with pytest.raises(Conflict):
        await sql_flows.sessions.put(login("s2", secret_digest="secret-of-s1"))

    assert await sql_flows.sessions.get("s2") is None
    assert await sql_flows.sessions.by_secret("secret-of-s1") == login("s1")


async def test_sql_purges_sessions_long_expired(
    sql_flows: Flows, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_sessions, "PURGE_EVERY", 3)
    await sql_flows.sessions.put(login("old", expires_at=NOW + 5))
    await sql_flows.sessions.put(login("live"))
    sql_flows.clock.advance(5 + sql_sessions.PURGE_AFTER)
    assert await count_rows(sql_flows, "sessions") == 2

    await sql_flows.sessions.put(login("new", expires_at=sql_flows.clock() + 60))

    assert await count_rows(sql_flows, "sessions") == 2
    assert await sql_flows.sessions.get("old") is None
    assert await sql_flows.sessions.get("live") == login("live")
