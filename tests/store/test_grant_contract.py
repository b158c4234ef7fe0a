"""GrantStore contract: families of refresh tokens that rotate exactly once, tolerate a repeat
of the immediate predecessor within the grace, revoke the whole family on any other reuse, and
remember the access tokens they minted so a revocation can deny them."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter

import pytest

from tests.store.conftest import Flows, count_rows
from tokenward.core.records import FamilyRecord, MintedToken, RefreshRecord, RotationOutcome
from tokenward.store.sql import grants as sql_grants

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000.0
ROTATED, GRACE = RotationOutcome.ROTATED, RotationOutcome.GRACE
REUSED, INVALID = RotationOutcome.REUSED, RotationOutcome.INVALID


def family(family_id: str = "f1", **changes: object) -> FamilyRecord:
    record = FamilyRecord(
        family_id=family_id,
        client_id="client-1",
        user_id="u1",
        scopes=frozenset({"openid", "offline_access"}),
        audience=("https://api.example",),
        created_at=NOW,
        expires_at=NOW + 30 * 86400,
    )
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


def token(
    digest: str, family_id: str = "f1", created_at: float = NOW, **changes: object
) -> RefreshRecord:
    record = RefreshRecord(digest, family_id, created_at, created_at + 86400)
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


EVERY_FIELD = family(
    "f-full",
    scopes=frozenset({"openid", "read", "write:ü"}),
    audience=("https://b.example", "https://a.example"),
    session_id="s1",
    auth_time=NOW - 12.75,
    acr="urn:acr:mfa",
    dpop_jkt="0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
)


async def started(flows: Flows, record: FamilyRecord | None = None) -> FamilyRecord:
    """Family f1 (or `record`) with its first refresh token, r1."""
    record = record or family()
    await flows.grants.create(record, token("r1", record.family_id))
    return record


async def revoked_at(flows: Flows) -> float | None:
    """Family f1's revocation time, read through its first token r1."""
    found = await flows.grants.lookup("r1")
    assert found is not None
    return found[1].revoked_at


# --- create, lookup -------------------------------------------------------------------------


async def test_unknown_tokens_and_families(flows: Flows) -> None:
    assert await flows.grants.lookup("nothing") is None
    assert await flows.grants.rotate("nothing", token("r2"), NOW, 10) == (INVALID, None, None)
    assert list(await flows.grants.revoke_family("nothing", NOW)) == []


async def test_create_then_lookup_round_trips_every_field(flows: Flows) -> None:
    first = token("r1", "f-full", created_at=NOW + 0.5)
    await flows.grants.create(EVERY_FIELD, first)

    assert await flows.grants.lookup("r1") == (first, EVERY_FIELD)
    assert await flows.grants.lookup("r2") is None


# --- rotate ---------------------------------------------------------------------------------


async def test_rotating_the_current_token_stores_its_successor(flows: Flows) -> None:
    fam = await started(flows)
    successor = token("r2", created_at=NOW + 60)

    outcome = await flows.grants.rotate("r1", successor, NOW + 60, 10)

    assert outcome == (ROTATED, fam, token("r1"))  # the presented token as it was
    rotated = token("r1", rotated_at=NOW + 60, successor_digest="r2")
    assert await flows.grants.lookup("r1") == (rotated, fam)
    assert await flows.grants.lookup("r2") == (successor, fam)


async def test_a_chain_of_rotations(flows: Flows) -> None:
    fam = await started(flows)
    for i in range(1, 6):
        now = NOW + 100 * i
        outcome = await flows.grants.rotate(f"r{i}", token(f"r{i + 1}", created_at=now), now, 10)
        assert outcome[0] == ROTATED
    assert await flows.grants.lookup("r6") == (token("r6", created_at=NOW + 500), fam)
    # Going back two steps is reuse, whatever the grace.
    assert (await flows.grants.rotate("r4", token("x"), NOW + 501, 3600))[0] == REUSED


async def test_a_token_is_invalid_from_its_expiry_on(flows: Flows) -> None:
    fam = await started(flows)
    expires = NOW + 86400

    assert await flows.grants.rotate("r1", token("r2"), expires, 10) == (INVALID, fam, token("r1"))
    assert (await flows.grants.rotate("r1", token("r2"), expires - 0.001, 10))[0] == ROTATED


async def test_every_token_is_invalid_from_the_familys_end_on(flows: Flows) -> None:
    fam = await started(flows, family(expires_at=NOW + 100))

    assert await flows.grants.rotate("r1", token("r2"), NOW + 100, 10) == (
        INVALID,
        fam,
        token("r1"),
    )
    assert (await flows.grants.rotate("r1", token("r2"), NOW + 99.999, 10))[0] == ROTATED


async def test_a_revoked_family_rotates_nothing(flows: Flows) -> None:
    await started(flows)
    await flows.grants.revoke_family("f1", NOW + 1)

    outcome = await flows.grants.rotate("r1", token("r2"), NOW + 2, 10)

    assert outcome == (INVALID, family(revoked_at=NOW + 1), token("r1"))
    assert await flows.grants.lookup("r2") is None


async def test_a_repeat_within_the_grace_gets_grace_up_to_its_edge(flows: Flows) -> None:
    fam = await started(flows)
    await flows.grants.rotate("r1", token("r2", created_at=NOW + 5), NOW + 5, 10)
    rotated = token("r1", rotated_at=NOW + 5, successor_digest="r2")

    at_once = await flows.grants.rotate("r1", token("r2"), NOW + 5, 10)
    at_edge = await flows.grants.rotate("r1", token("r2"), NOW + 15, 10)

    assert at_once == (GRACE, fam, rotated)
    assert at_edge == (GRACE, fam, rotated)
    assert await revoked_at(flows) is None
    assert await flows.grants.lookup("r2") == (token("r2", created_at=NOW + 5), fam)


async def test_a_repeat_just_after_the_grace_is_reuse_and_revokes_the_family(
    flows: Flows,
) -> None:
    fam = await started(flows)
    await flows.grants.rotate("r1", token("r2", created_at=NOW + 5), NOW + 5, 10)

    outcome = await flows.grants.rotate("r1", token("r2"), NOW + 15.001, 10)

    assert outcome == (REUSED, fam, token("r1", rotated_at=NOW + 5, successor_digest="r2"))
    assert await revoked_at(flows) == NOW + 15.001
    # Now even the current token is dead.
    assert (await flows.grants.rotate("r2", token("r3"), NOW + 16, 10))[0] == INVALID
    assert (await flows.grants.rotate("r1", token("r2"), NOW + 16, 10))[0] == INVALID
    assert await revoked_at(flows) == NOW + 15.001


async def test_no_grace_once_the_successor_has_rotated(flows: Flows) -> None:
    await started(flows)
    await flows.grants.rotate("r1", token("r2"), NOW + 1, 60)
    await flows.grants.rotate("r2", token("r3"), NOW + 2, 60)

    assert (await flows.grants.rotate("r1", token("r2"), NOW + 3, 60))[0] == REUSED
    assert await revoked_at(flows) == NOW + 3


async def test_a_zero_grace_is_no_grace_even_at_the_same_instant(flows: Flows) -> None:
    # Grace off means every repeat is reuse: two nodes' clocks may even disagree in sign.
    await started(flows)
    await flows.grants.rotate("r1", token("r2"), NOW + 1, 0)

    assert (await flows.grants.rotate("r1", token("r2"), NOW + 1, 0))[0] == REUSED


async def test_families_are_independent(flows: Flows) -> None:
    await started(flows)
    other = family("f2", user_id="u2")
    await flows.grants.create(other, token("q1", "f2"))
    await flows.grants.rotate("r1", token("r2"), NOW + 1, 0)
    await flows.grants.rotate("r1", token("r2"), NOW + 2, 0)  # reuse: f1 revoked

    assert await revoked_at(flows) == NOW + 2
    assert await flows.grants.lookup("q1") == (token("q1", "f2"), other)
    assert (await flows.grants.rotate("q1", token("q2", "f2"), NOW + 3, 0))[0] == ROTATED


# --- minted tokens, revoke_family -------------------------------------------------------------


async def test_revoke_family_returns_the_minted_tokens_still_live(flows: Flows) -> None:
    await started(flows)
    gone, ends_now, live = (
        MintedToken("j1", NOW - 1),
        MintedToken("j2", NOW),
        MintedToken("j3", NOW + 0.5),
    )
    for minted in (gone, ends_now, live):
        await flows.grants.add_minted("f1", minted)
    await flows.grants.add_minted("f2", MintedToken("other", NOW + 900))

    assert list(await flows.grants.revoke_family("f1", NOW)) == [live]
    assert await revoked_at(flows) == NOW


async def test_revoke_family_is_idempotent(flows: Flows) -> None:
    await started(flows)
    await flows.grants.add_minted("f1", MintedToken("j1", NOW + 900))

    first = await flows.grants.revoke_family("f1", NOW + 1)
    again = await flows.grants.revoke_family("f1", NOW + 2)

    assert list(first) == list(again) == [MintedToken("j1", NOW + 900)]
    assert await revoked_at(flows) == NOW + 1  # the first revocation time stays


async def test_minted_tokens_survive_rotation_and_a_reuse_returns_them(flows: Flows) -> None:
    await started(flows)
    await flows.grants.add_minted("f1", MintedToken("j1", NOW + 900))
    await flows.grants.rotate("r1", token("r2"), NOW + 10, 0)
    await flows.grants.add_minted("f1", MintedToken("j2", NOW + 910))
    assert (await flows.grants.rotate("r1", token("r2"), NOW + 20, 0))[0] == REUSED

    minted = await flows.grants.revoke_family("f1", NOW + 21)

    assert sorted(minted, key=lambda m: m.jti) == [
        MintedToken("j1", NOW + 900),
        MintedToken("j2", NOW + 910),
    ]


async def test_add_minted_forgets_tokens_expired_a_day_before_the_new_one(flows: Flows) -> None:
    await started(flows)
    later = NOW + 86400 + 900
    await flows.grants.add_minted("f1", MintedToken("old", NOW + 900))  # <= later - 1 day
    await flows.grants.add_minted("f1", MintedToken("kept", NOW + 900.5))
    await flows.grants.add_minted("f1", MintedToken("new", later))

    minted = await flows.grants.revoke_family("f1", NOW)

    assert sorted(minted, key=lambda m: m.jti) == [
        MintedToken("kept", NOW + 900.5),
        MintedToken("new", later),
    ]


async def test_a_delivered_rotation_records_its_access_token_in_the_same_step(
    flows: Flows,
) -> None:
    await started(flows)
    rotated = await flows.grants.rotate(
        "r1", token("r2"), NOW + 1, 10, MintedToken("a1", NOW + 900)
    )
    again = await flows.grants.rotate("r1", token("r2"), NOW + 2, 10, MintedToken("a2", NOW + 901))

    assert (rotated[0], again[0]) == (ROTATED, GRACE)
    minted = await flows.grants.revoke_family("f1", NOW + 3)
    assert sorted(minted, key=lambda m: m.jti) == [
        MintedToken("a1", NOW + 900),
        MintedToken("a2", NOW + 901),
    ]


async def test_an_undelivered_rotation_records_nothing(flows: Flows) -> None:
    await started(flows)
    await flows.grants.rotate("r1", token("r2"), NOW + 1, 0)
    reused = await flows.grants.rotate("r1", token("r2"), NOW + 20, 0, MintedToken("x1", NOW + 900))
    invalid = await flows.grants.rotate(
        "r2", token("r3"), NOW + 21, 0, MintedToken("x2", NOW + 900)
    )
    unknown = await flows.grants.rotate(
        "zz", token("r9"), NOW + 22, 0, MintedToken("x3", NOW + 900)
    )

    assert (reused[0], invalid[0], unknown[0]) == (REUSED, INVALID, INVALID)
    assert list(await flows.grants.revoke_family("f1", NOW + 23)) == []


async def test_concurrent_rotations_record_only_what_they_deliver(flows: Flows) -> None:
    await started(flows)
    results = await asyncio.gather(
        *(
            flows.grants.rotate("r1", token("r2"), NOW + 1, -1, MintedToken(f"c{i}", NOW + 900))
            for i in range(10)
        )
    )

    delivered = [f"c{i}" for i, (outcome, _, _) in enumerate(results) if outcome == ROTATED]
    assert len(delivered) == 1
    minted = await flows.grants.revoke_family("f1", NOW + 2)
    assert [m.jti for m in minted] == delivered


# --- concurrency ----------------------------------------------------------------------------


async def rotate_at_once(flows: Flows, grace: float, count: int = 20) -> Counter[str]:
    """`count` rotations of r1 at the same instant, each in its own session."""
    await started(flows)
    results = await asyncio.gather(
        *(
            flows.grants.rotate("r1", token("r2", created_at=NOW + 1), NOW + 1, grace)
            for _ in range(count)
        )
    )
    assert all(fam is not None and presented is not None for _, fam, presented in results)
    return Counter(outcome for outcome, _, _ in results)


async def test_twenty_concurrent_rotations_without_grace_rotate_once_and_revoke(
    flows: Flows,
) -> None:
    # A negative grace: not even a repeat at the same instant is forgiven (a grace of 0 still
    # covers now == rotated_at, see above). The first repeat is reuse and revokes the family;
    # every later one finds the family revoked.
    outcomes = await rotate_at_once(flows, grace=-1)

    assert outcomes == Counter({ROTATED: 1, REUSED: 1, INVALID: 18})
    assert await revoked_at(flows) == NOW + 1


async def test_twenty_concurrent_rotations_with_zero_grace_at_one_instant(flows: Flows) -> None:
    outcomes = await rotate_at_once(flows, grace=0)

    assert outcomes == Counter({ROTATED: 1, REUSED: 1, INVALID: 18})
    assert await revoked_at(flows) == NOW + 1


async def test_twenty_concurrent_rotations_within_the_grace_rotate_once(flows: Flows) -> None:
    outcomes = await rotate_at_once(flows, grace=10)

    assert outcomes == Counter({ROTATED: 1, GRACE: 19})
    assert await revoked_at(flows) is None
    found = await flows.grants.lookup("r2")
    assert found is not None
    assert found[0].rotated_at is None  # one successor, and it is still current


async def test_a_reuse_racing_a_rotation_of_the_successor_leaves_the_family_revoked(
    flows: Flows,
) -> None:
    # The attacker replays r1 (reuse) while the client rotates r2: whichever runs first, the
    # family ends revoked, and no token rotated after the revocation.
    await started(flows)
    await flows.grants.rotate("r1", token("r2"), NOW + 1, 0)

    results = await asyncio.gather(
        flows.grants.rotate("r1", token("r2"), NOW + 5, 0),
        flows.grants.rotate("r2", token("r3"), NOW + 5, 0),
    )

    assert results[0][0] == REUSED
    assert results[1][0] in (ROTATED, INVALID)
    assert await revoked_at(flows) == NOW + 5
    assert (await flows.grants.rotate("r3", token("r4"), NOW + 6, 0))[0] == INVALID
    if results[1][0] == INVALID:
        assert await flows.grants.lookup("r3") is None


# --- SQL only -------------------------------------------------------------------------------


async def test_sql_purges_families_long_over_with_their_tokens(
    sql_flows: Flows, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_grants, "PURGE_EVERY", 2)
    await sql_flows.grants.create(family("old", expires_at=NOW + 5), token("o1", "old"))
    await sql_flows.grants.rotate("o1", token("o2", "old"), NOW + 1, 0)
    await sql_flows.grants.add_minted("old", MintedToken("j-old", NOW + 5))
    sql_flows.clock.advance(5 + sql_grants.PURGE_AFTER)
    assert await count_rows(sql_flows, "refresh_tokens") == 2

    await sql_flows.grants.create(
        family("new", expires_at=sql_flows.clock() + 60), token("n1", "new")
    )

    assert await count_rows(sql_flows, "grant_families") == 1
    assert await count_rows(sql_flows, "refresh_tokens") == 1
    assert await count_rows(sql_flows, "minted_tokens") == 0
    assert await sql_flows.grants.lookup("o1") is None
    assert (await sql_flows.grants.lookup("n1")) is not None
