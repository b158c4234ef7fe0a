"""ReplayCache contract: a key is accepted once until its marker expires -- by exactly one of
any number of concurrent callers -- and may be used again after that."""

from __future__ import annotations

import asyncio

import pytest

from tests.store.conftest import Flows, count_rows
from tokenward.store.sql import SqlReplayCache, session_factory
from tokenward.store.sql import replay as sql_replay

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000.0  # the clock fixture's start


async def test_a_key_is_accepted_once(flows: Flows) -> None:
    assert await flows.replay.first_use("dpop:j1", NOW + 60)
    assert not await flows.replay.first_use("dpop:j1", NOW + 60)
    assert not await flows.replay.first_use("dpop:j1", NOW + 3600)  # a new expiry changes nothing


async def test_keys_are_independent(flows: Flows) -> None:
    assert await flows.replay.first_use("pkjwt:client-1:j1", NOW + 60)
    assert await flows.replay.first_use("pkjwt:client-2:j1", NOW + 60)
    assert await flows.replay.first_use("pkjwt:client-1:J1", NOW + 60)  # case matters
    assert not await flows.replay.first_use("pkjwt:client-2:j1", NOW + 60)


async def test_a_marker_lasts_until_its_expiry_and_not_past_it(flows: Flows) -> None:
    assert await flows.replay.first_use("k", NOW + 60)

    flows.clock.advance(59.999)
    assert not await flows.replay.first_use("k", NOW + 120)
    flows.clock.advance(0.001)  # now == expires_at: expired
    assert await flows.replay.first_use("k", NOW + 120)  # a fresh marker, to NOW + 120
    flows.clock.advance(30)
    assert not await flows.replay.first_use("k", NOW + 300)


async def test_an_already_expired_marker_never_blocks(flows: Flows) -> None:
    assert await flows.replay.first_use("k", NOW - 1)
    assert await flows.replay.first_use("k", NOW)


async def test_long_and_unusual_keys(flows: Flows) -> None:
    long_key = "pkjwt:client:" + "j" * 20_000
    assert await flows.replay.first_use(long_key, NOW + 60)
    assert not await flows.replay.first_use(long_key, NOW + 60)
    assert await flows.replay.first_use(long_key[:-1], NOW + 60)
    assert await flows.replay.first_use("dpop:jti-ü-\u2603-'\";--", NOW + 60)
    assert not await flows.replay.first_use("dpop:jti-ü-\u2603-'\";--", NOW + 60)
    # A jti is any JSON string: "\ud800" parses to a lone surrogate, which UTF-8 cannot encode.
    assert await flows.replay.first_use("dpop:\ud800", NOW + 60)
    assert not await flows.replay.first_use("dpop:\ud800", NOW + 60)
    assert await flows.replay.first_use("dpop:\ud801", NOW + 60)  # another lone surrogate
    assert await flows.replay.first_use("dpop:?", NOW + 60)  # not what "replace" makes of it


async def test_twenty_concurrent_uses_of_one_key_accept_one(flows: Flows) -> None:
    results = await asyncio.gather(*(flows.replay.first_use("k", NOW + 60) for _ in range(20)))

    assert sorted(results) == [False] * 19 + [True]


async def test_twenty_concurrent_reuses_of_an_expired_key_accept_one(flows: Flows) -> None:
    assert await flows.replay.first_use("k", NOW + 60)
    flows.clock.advance(60)

    results = await asyncio.gather(*(flows.replay.first_use("k", NOW + 120) for _ in range(20)))

    assert sorted(results) == [False] * 19 + [True]


async def test_sql_markers_are_shared_between_servers(sql_flows: Flows) -> None:
    assert sql_flows.engine is not None
    other_server = SqlReplayCache(session_factory(sql_flows.engine), sql_flows.clock)

    assert await sql_flows.replay.first_use("k", NOW + 60)
    assert not await other_server.first_use("k", NOW + 60)


async def test_sql_purges_expired_markers(
    sql_flows: Flows, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_replay, "PURGE_EVERY", 3)
    assert await sql_flows.replay.first_use("old", NOW + 5)
    assert await sql_flows.replay.first_use("live", NOW + 60)
    sql_flows.clock.advance(5)
    assert await count_rows(sql_flows, "replay_markers") == 2

    assert await sql_flows.replay.first_use("new", NOW + 65)

    assert await count_rows(sql_flows, "replay_markers") == 2
    assert not await sql_flows.replay.first_use("live", NOW + 60)


async def test_hold_extends_a_claim_or_releases_it(flows: Flows) -> None:
    assert await flows.replay.first_use("set:a", NOW + 60)  # claimed, pending
    await flows.replay.hold("set:a", NOW + 3600)  # done: held long
    flows.clock.advance(120)
    assert not await flows.replay.first_use("set:a", NOW + 180)

    now = NOW + 120
    assert await flows.replay.first_use("set:b", now + 60)
    await flows.replay.hold("set:b", now)  # failed: released at once
    assert await flows.replay.first_use("set:b", now + 60)  # the retry claims it
    assert not await flows.replay.first_use("set:b", now + 60)

    await flows.replay.hold("set:c", now - 5)  # releasing what was never claimed is harmless
    assert await flows.replay.first_use("set:c", now + 60)
