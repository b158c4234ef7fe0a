"""CodeStore contract: authorization codes by digest, each consumed at most once -- even by
twenty exchanges at the same moment -- and remembering what their first exchange minted; a
replay and that record meet atomically, whichever comes first (RFC 9700 §4.5)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable

import pytest

from tests.store.conftest import Flows, count_rows
from tokenward.core.records import CodeRecord, FamilyRecord, MintedToken, RefreshRecord
from tokenward.store.sql import codes as sql_codes
from tokenward.store.sql import grants as sql_grants

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


def family(family_id: str = "f1") -> FamilyRecord:
    return FamilyRecord(family_id, "client-1", "u1", frozenset({"openid"}), (), NOW, NOW + 86400)


def first(digest: str = "r1", family_id: str = "f1") -> RefreshRecord:
    return RefreshRecord(digest, family_id, NOW, NOW + 3600)


MINTED = MintedToken("jti-1", NOW + 900.5)
ROUNDS = 12

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
    replayed_at=NOW + 2.5,
)


async def test_an_unknown_code_is_none_and_unused(flows: Flows) -> None:
    assert await flows.codes.consume("nothing", NOW) == (None, False)
    assert not await flows.codes.redeem("nothing", MINTED, (family(), first()))  # nothing made
    assert await flows.codes.consume("nothing", NOW) == (None, False)
    assert await flows.grants.lookup("r1") is None


async def test_the_first_consume_wins_and_returns_the_record_as_saved(flows: Flows) -> None:
    await flows.codes.save(EVERY_FIELD)

    assert await flows.codes.consume("c-full", NOW + 1) == (EVERY_FIELD, True)


async def test_every_replay_is_refused_and_marks_the_code(flows: Flows) -> None:
    await flows.codes.save(code())
    await flows.codes.consume("c1", NOW + 1)

    replay = await flows.codes.consume("c1", NOW + 2)
    later = await flows.codes.consume("c1", NOW + 3600)

    assert replay == (code(consumed_at=NOW + 1, replayed_at=NOW + 2), False)
    assert later == replay  # the first use and the first replay times stay


async def test_a_replay_sees_what_the_first_exchange_minted(flows: Flows) -> None:
    await flows.codes.save(code())
    await flows.codes.consume("c1", NOW)
    assert await flows.codes.redeem("c1", MINTED, (family(), first()))

    record, first_use = await flows.codes.consume("c1", NOW + 1)

    assert not first_use
    assert record == code(
        consumed_at=NOW,
        family_id="f1",
        access_jti="jti-1",
        access_exp=NOW + 900.5,
        replayed_at=NOW + 1,
    )


async def test_redeem_creates_the_family_with_its_first_tokens(flows: Flows) -> None:
    await flows.codes.save(code())
    await flows.codes.consume("c1", NOW)

    assert await flows.codes.redeem("c1", MINTED, (family(), first()))

    assert await flows.grants.lookup("r1") == (first(), family())
    assert await flows.grants.revoke_family("f1", NOW + 1) == [MINTED]


async def test_redeem_without_a_family(flows: Flows) -> None:
    await flows.codes.save(code())
    await flows.codes.consume("c1", NOW)
    assert await flows.codes.redeem("c1", MINTED, None)

    record, _ = await flows.codes.consume("c1", NOW + 1)

    assert record == code(
        consumed_at=NOW, access_jti="jti-1", access_exp=NOW + 900.5, replayed_at=NOW + 1
    )


async def test_after_a_replay_redeem_refuses_and_creates_nothing(flows: Flows) -> None:
    await flows.codes.save(code())
    await flows.codes.consume("c1", NOW)
    await flows.codes.consume("c1", NOW + 1)  # the replay comes before the winner records

    assert not await flows.codes.redeem("c1", MINTED, (family(), first()))

    assert await flows.grants.lookup("r1") is None
    record, _ = await flows.codes.consume("c1", NOW + 2)
    assert record == code(consumed_at=NOW, replayed_at=NOW + 1)  # nothing recorded


async def test_redeem_needs_a_consumed_code_and_works_once(flows: Flows) -> None:
    await flows.codes.save(code())
    assert not await flows.codes.redeem("c1", MINTED, None)  # not consumed yet
    await flows.codes.consume("c1", NOW)
    assert await flows.codes.redeem("c1", MINTED, None)

    assert not await flows.codes.redeem("c1", MintedToken("jti-2", NOW + 900), None)

    record, _ = await flows.codes.consume("c1", NOW + 1)
    assert record is not None
    assert record.access_jti == "jti-1"


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


async def exchange(flows: Flows, digest: str, now: float) -> tuple[bool, bool | CodeRecord | None]:
    """What the grant does with the store: consume; the winner redeems, a loser reads the
    record to revoke. (True, redeemed?) for the winner, (False, the record read) for a loser."""
    record, first_use = await flows.codes.consume(digest, now)
    if not first_use:
        return False, record
    grant = (family(f"f-{digest}"), first(f"r-{digest}", f"f-{digest}"))
    return True, await flows.codes.redeem(digest, MintedToken(f"j-{digest}", NOW + 900), grant)


async def test_a_replay_racing_the_first_exchange_always_finds_or_stops_it(flows: Flows) -> None:
    # Whichever of (the winner's redeem, a replay's mark) comes second sees the other: either
    # every replay reads the family and access token to revoke, or the redeem refused and
    # created nothing. There is no third outcome (a live family that some replay missed).
    for round_ in range(ROUNDS):
        digest = f"c{round_}"
        await flows.codes.save(code(digest))

        results = await asyncio.gather(*(exchange(flows, digest, NOW + i) for i in range(6)))

        [redeemed] = [outcome for won, outcome in results if won]
        seen = [(r.family_id, r.access_jti) for won, r in results if isinstance(r, CodeRecord)]
        expected = (f"f-{digest}", f"j-{digest}") if redeemed else (None, None)
        assert seen == [expected] * 5
        assert (await flows.grants.lookup(f"r-{digest}") is not None) == redeemed


async def test_a_redeem_racing_replays_records_for_all_of_them_or_for_none(flows: Flows) -> None:
    # The winner has consumed; its redeem and five replays then start together, the redeem at
    # each position in turn, so that on SQL both orders happen.
    for round_ in range(ROUNDS):
        digest = f"c{round_}"
        await flows.codes.save(code(digest))
        await flows.codes.consume(digest, NOW)

        async def replay(now: float, digest: str = digest) -> CodeRecord | None:
            return (await flows.codes.consume(digest, now))[0]

        grant = (family(f"f{round_}"), first(f"r{round_}", f"f{round_}"))
        calls: list[Awaitable[object]] = [replay(NOW + 1 + i) for i in range(5)]
        position = round_ % 6
        calls.insert(
            position, flows.codes.redeem(digest, MintedToken(f"j{round_}", NOW + 900), grant)
        )

        results = await asyncio.gather(*calls)

        redeemed = results.pop(position)
        seen = [(r.family_id, r.access_jti) for r in results if isinstance(r, CodeRecord)]
        expected = (f"f{round_}", f"j{round_}") if redeemed else (None, None)
        assert seen == [expected] * 5
        assert (await flows.grants.lookup(f"r{round_}") is not None) == redeemed


async def test_peek_reads_the_code_as_stored_and_changes_nothing(flows: Flows) -> None:
    assert await flows.codes.peek("c-full") is None
    await flows.codes.save(EVERY_FIELD)

    assert await flows.codes.peek("c-full") == EVERY_FIELD
    assert await flows.codes.peek("c-full") == EVERY_FIELD
    assert await flows.codes.consume("c-full", NOW) == (EVERY_FIELD, True)  # still unused
    assert await flows.codes.peek("c-full") == dataclasses.replace(EVERY_FIELD, consumed_at=NOW)


async def test_exchange_uses_the_code_and_records_the_family_in_one_step(flows: Flows) -> None:
    await flows.codes.save(code())

    assert await flows.codes.exchange("c1", NOW, MINTED, (family(), first())) == (True, None)

    assert await flows.grants.lookup("r1") == (first(), family())
    stored = code(consumed_at=NOW, family_id="f1", access_jti="jti-1", access_exp=NOW + 900.5)
    assert await flows.codes.peek("c1") == stored
    record, first_use = await flows.codes.consume("c1", NOW + 1)  # a replay finds it all
    assert (record, first_use) == (dataclasses.replace(stored, replayed_at=NOW + 1), False)
    assert await flows.grants.revoke_family("f1", NOW + 2) == [MINTED]


async def test_exchange_without_a_family(flows: Flows) -> None:
    await flows.codes.save(code())

    assert await flows.codes.exchange("c1", NOW, MINTED, None) == (True, None)

    assert await flows.codes.peek("c1") == code(
        consumed_at=NOW, access_jti="jti-1", access_exp=NOW + 900.5
    )


async def test_an_exchange_of_a_used_code_is_a_replay_and_writes_nothing(flows: Flows) -> None:
    assert await flows.codes.exchange("nothing", NOW, MINTED, (family(), first())) == (
        False,
        None,
    )
    await flows.codes.save(code())
    await flows.codes.exchange("c1", NOW, MINTED, (family(), first()))

    again = await flows.codes.exchange(
        "c1", NOW + 1, MintedToken("jti-2", NOW + 900), (family("f2"), first("r2", "f2"))
    )

    marked = code(
        consumed_at=NOW,
        family_id="f1",
        access_jti="jti-1",
        access_exp=NOW + 900.5,
        replayed_at=NOW + 1,
    )
    assert again == (False, marked)  # as consume tells a replay
    assert await flows.grants.lookup("r2") is None
    assert await flows.codes.peek("c1") == marked


async def test_concurrent_exchanges_of_one_code_have_one_winner_and_all_see_it(
    flows: Flows,
) -> None:
    # The one-step exchange racing itself and plain replays: exactly one uses the code; every
    # other call is a replay that reads the winner's family and token, all or nothing.
    for round_ in range(ROUNDS):
        digest = f"c{round_}"
        await flows.codes.save(code(digest))

        async def one(i: int, digest: str = digest) -> tuple[bool, CodeRecord | None]:
            if i % 2:
                record, first_use = await flows.codes.consume(digest, NOW + i)
                return (first_use, None) if first_use else (False, record)
            grant = (family(f"f{digest}-{i}"), first(f"r{digest}-{i}", f"f{digest}-{i}"))
            return await flows.codes.exchange(digest, NOW + i, MintedToken(f"j{i}", NOW), grant)

        results = await asyncio.gather(*(one(i) for i in range(6)))

        winners = [i for i, (used, _) in enumerate(results) if used]
        assert len(winners) == 1
        [winner] = winners
        seen = {(r.family_id, r.access_jti) for used, r in results if not used and r}
        if winner % 2:  # a plain consume won: it recorded nothing
            assert seen == {(None, None)}
        else:
            assert seen == {(f"f{digest}-{winner}", f"j{winner}")}
        made = [i for i in range(0, 6, 2) if await flows.grants.lookup(f"r{digest}-{i}")]
        assert made == ([winner] if winner % 2 == 0 else [])


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


async def test_sql_redeem_purges_families_long_over(
    sql_flows: Flows, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Code exchanges start most families, so they also purge, as GrantStore.create does.
    monkeypatch.setattr(sql_grants, "PURGE_EVERY", 2)
    old = dataclasses.replace(family("old"), expires_at=NOW + 5)
    await sql_flows.grants.create(old, first("o1", "old"))
    sql_flows.clock.advance(5 + sql_grants.PURGE_AFTER)
    for i in range(2):
        await sql_flows.codes.save(code(f"c{i}"))
        await sql_flows.codes.consume(f"c{i}", NOW)
        grant = (family(f"f{i}"), first(f"r{i}", f"f{i}"))
        assert await sql_flows.codes.redeem(f"c{i}", MintedToken(f"j{i}", NOW + 900), grant)

    assert await sql_flows.grants.lookup("o1") is None
    assert await sql_flows.grants.lookup("r1") is not None


async def test_sql_exchange_purges_families_long_over(
    sql_flows: Flows, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, through `exchange`, the token endpoint's one step (on PostgreSQL a single
    statement, with the purge after it)."""
    monkeypatch.setattr(sql_grants, "PURGE_EVERY", 2)
    old = dataclasses.replace(family("old"), expires_at=NOW + 5)
    await sql_flows.grants.create(old, first("o1", "old"))
    sql_flows.clock.advance(5 + sql_grants.PURGE_AFTER)
    for i in range(2):
        await sql_flows.codes.save(code(f"c{i}"))
        grant = (family(f"f{i}"), first(f"r{i}", f"f{i}"))
        minted = MintedToken(f"j{i}", NOW + 900)
        assert await sql_flows.codes.exchange(f"c{i}", NOW, minted, grant) == (True, None)

    assert await sql_flows.grants.lookup("o1") is None
    assert await sql_flows.grants.lookup("r1") is not None
