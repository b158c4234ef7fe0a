"""CodeStore contract: authorization codes by digest, each consumed at most once -- even by
twenty exchanges at the same moment -- and remembering what their first exchange minted."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from tests.store.conftest import Flows, count_rows
from tokenward.store.records import CodeRecord
from tokenward.store.sql import codes as sql_codes

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000.0


def code(digest: str = "c1", **changes: object) -> CodeRecord:
    record = CodeRecord(
        digest=digest,
        client_id="client-1",
        redirect_uri="https://app.example/cb",
        code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        scopes=frozenset({"openid", "read"}),
        audience=("https://api.example",),
        user_id="u1",
        session_id="s1",
        auth_time=NOW - 30.5,
        expires_at=NOW + 60,
    )
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


EVERY_FIELD = code(
    "c-full",
    redirect_uri="https://app.example/cb?x=ü&y=1",
    scopes=frozenset({"openid", "profile", "write:all"}),
    audience=("https://b.example", "https://a.example"),  # order kept
    nonce="n-0S6_WzA2Mj",
    acr="urn:acr:mfa",
    dpop_jkt="0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
    redirect_uri_given=False,
    family_id="f1",
    access_jti="j1",
    access_exp=NOW + 900.125,
)


async def test_an_unknown_code_is_none_and_unused(flows: Flows) -> None:
    assert await flows.codes.consume("nothing", NOW) == (None, False)
    await flows.codes.record_minted("nothing", "f1", "j1", NOW + 900)  # no error, no row
    assert await flows.codes.consume("nothing", NOW) == (None, False)


async def test_the_first_consume_wins_and_returns_the_record_as_saved(flows: Flows) -> None:
    await flows.codes.save(EVERY_FIELD)

    assert await flows.codes.consume("c-full", NOW + 1) == (EVERY_FIELD, True)


async def test_every_replay_is_refused_and_shows_when_it_was_used(flows: Flows) -> None:
    await flows.codes.save(code())
    await flows.codes.consume("c1", NOW + 1)

    replay = await flows.codes.consume("c1", NOW + 2)
    later = await flows.codes.consume("c1", NOW + 3600)

    assert replay == (code(consumed_at=NOW + 1), False)
    assert later == replay  # the first use time stays


async def test_a_replay_sees_what_the_first_exchange_minted(flows: Flows) -> None:
    await flows.codes.save(code())
    await flows.codes.consume("c1", NOW)
    await flows.codes.record_minted("c1", "f1", "jti-1", NOW + 900.5)

    record, first = await flows.codes.consume("c1", NOW + 1)

    assert not first
    assert record == code(
        consumed_at=NOW, family_id="f1", access_jti="jti-1", access_exp=NOW + 900.5
    )


async def test_record_minted_without_a_family(flows: Flows) -> None:
    await flows.codes.save(code())
    await flows.codes.consume("c1", NOW)
    await flows.codes.record_minted("c1", None, "jti-1", NOW + 900)

    record, _ = await flows.codes.consume("c1", NOW + 1)

    assert record == code(consumed_at=NOW, access_jti="jti-1", access_exp=NOW + 900)


async def test_save_replaces_and_codes_are_independent(flows: Flows) -> None:
    await flows.codes.save(code("c1"))
    await flows.codes.save(code("c1", user_id="u9"))
    await flows.codes.save(code("c2"))
    await flows.codes.consume("c2", NOW)

    assert await flows.codes.consume("c1", NOW) == (code("c1", user_id="u9"), True)


async def test_expiry_is_the_callers_check_not_the_stores(flows: Flows) -> None:
    # The store only enforces single use; the grant rejects an expired code itself.
    await flows.codes.save(code(expires_at=NOW))

    assert await flows.codes.consume("c1", NOW + 10) == (code(expires_at=NOW), True)


async def test_twenty_concurrent_exchanges_of_one_code_have_one_winner(flows: Flows) -> None:
    await flows.codes.save(code())

    results = await asyncio.gather(*(flows.codes.consume("c1", NOW + i) for i in range(20)))

    winners = [record for record, first in results if first]
    assert winners == [code()]
    used_at = {record.consumed_at for record, first in results if not first and record}
    assert len(used_at) == 1  # every loser sees the one winner's use
    assert sum(1 for record, _ in results if record is None) == 0


async def test_concurrent_exchanges_of_different_codes_all_win(flows: Flows) -> None:
    for i in range(10):
        await flows.codes.save(code(f"c{i}"))

    results = await asyncio.gather(*(flows.codes.consume(f"c{i}", NOW) for i in range(10)))

    assert [first for _, first in results] == [True] * 10


async def test_sql_purges_codes_long_expired(
    sql_flows: Flows, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_codes, "PURGE_EVERY", 3)
    await sql_flows.codes.save(code("old", expires_at=NOW + 5))
    await sql_flows.codes.save(code("live"))
    sql_flows.clock.advance(5 + sql_codes.PURGE_AFTER)
    assert await count_rows(sql_flows, "authorization_codes") == 2

    await sql_flows.codes.save(code("new", expires_at=sql_flows.clock() + 60))

    assert await count_rows(sql_flows, "authorization_codes") == 2
    assert await sql_flows.codes.consume("old", sql_flows.clock()) == (None, False)
    assert (await sql_flows.codes.consume("live", sql_flows.clock()))[1]
