"""DeviceStore contract (RFC 8628): requests by device-code digest and by user code; a decision
only on a pending, unexpired request; polls recorded atomically, and an approval redeemable by
exactly one poll."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from tests.store.conftest import Flows, count_rows
from tokenward.core.assurance import MFA, PHR
from tokenward.core.ports import Conflict
from tokenward.core.records import DeviceRecord
from tokenward.store.sql import devices as sql_devices

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000.0


def device(digest: str = "d1", user_code: str = "BCDFGHJK", **changes: object) -> DeviceRecord:
    record = DeviceRecord(
        device_digest=digest,
        user_code=user_code,
        client_id="tv",
        scopes=frozenset({"openid", "read"}),
        audience=("https://api.example",),
        created_at=NOW,
        expires_at=NOW + 600,
        interval=5,
    )
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


def decided(record: DeviceRecord, status: str) -> DeviceRecord:
    """`record` once u1 (session s1, signed in with a second factor) decided, as `decide`
    below does."""
    return dataclasses.replace(
        record, status=status, user_id="u1", session_id="s1", auth_time=NOW + 30.5, acr=MFA
    )


async def decide(
    flows: Flows, approved: bool = True, now: float = NOW + 31, code: str = "BCDFGHJK"
) -> bool:
    return await flows.devices.decide(code, approved, "u1", "s1", NOW + 30.5, now, acr=MFA)


async def test_unknown_requests(flows: Flows) -> None:
    assert await flows.devices.by_user_code("NOPE") is None
    assert await flows.devices.poll("nothing", NOW) == (None, False)
    assert not await decide(flows, code="NOPE")


async def test_every_field_round_trips_by_user_code(flows: Flows) -> None:
    full = decided(
        device(
            scopes=frozenset({"openid", "write:ü"}),
            audience=("https://b.example", "https://a.example"),
            interval=15,
            last_poll_at=NOW + 1.25,
            acr_values=f"{PHR} urn:example:gold",
        ),
        "approved",
    )
    await flows.devices.save(full)
    await flows.devices.save(device("d2", "MNPQRSTV"))

    assert await flows.devices.by_user_code("BCDFGHJK") == full
    assert await flows.devices.by_user_code("MNPQRSTV") == device("d2", "MNPQRSTV")
    assert await flows.devices.by_user_code("bcdfghjk") is None  # codes arrive normalised


async def test_save_replaces_by_device_digest(flows: Flows) -> None:
    await flows.devices.save(device())
    await flows.devices.save(device(interval=10))

    assert await flows.devices.by_user_code("BCDFGHJK") == device(interval=10)


async def test_approving_a_pending_request_records_who(flows: Flows) -> None:
    await flows.devices.save(device())

    assert await decide(flows)

    assert await flows.devices.by_user_code("BCDFGHJK") == decided(device(), "approved")


async def test_a_password_only_approval_records_no_level(flows: Flows) -> None:
    """A sign-in from before levels were recorded has none: stored as none, not as a level."""
    await flows.devices.save(device(acr_values=MFA))

    assert await flows.devices.decide("BCDFGHJK", True, "u1", "s1", NOW + 30.5, NOW + 31, acr=None)

    stored = await flows.devices.by_user_code("BCDFGHJK")
    assert stored is not None
    assert (stored.acr, stored.acr_values, stored.status) == (None, MFA, "approved")


async def test_denying_records_the_denial(flows: Flows) -> None:
    await flows.devices.save(device())

    assert await decide(flows, approved=False)

    assert await flows.devices.by_user_code("BCDFGHJK") == decided(device(), "denied")


async def test_a_request_is_decided_once(flows: Flows) -> None:
    await flows.devices.save(device())
    await decide(flows, approved=False)

    assert not await decide(flows, approved=True)
    assert (await flows.devices.by_user_code("BCDFGHJK")) == decided(device(), "denied")


async def test_no_decision_from_the_expiry_on(flows: Flows) -> None:
    await flows.devices.save(device())

    assert not await decide(flows, now=NOW + 600)
    assert (await flows.devices.by_user_code("BCDFGHJK")) == device()
    assert await decide(flows, now=NOW + 599.999)


async def test_polling_too_fast_slows_the_client_down(flows: Flows) -> None:
    await flows.devices.save(device())

    first = await flows.devices.poll("d1", NOW + 5)
    second = await flows.devices.poll("d1", NOW + 7.5)  # 2.5 s after: under the 5 s interval
    third = await flows.devices.poll("d1", NOW + 20)  # 12.5 s after: over the new 10 s interval

    assert first == (device(), False)
    assert second == (device(last_poll_at=NOW + 5), True)  # RFC 8628 §3.5: slow_down
    assert third == (device(last_poll_at=NOW + 7.5, interval=10), False)
    assert await flows.devices.by_user_code("BCDFGHJK") == device(
        last_poll_at=NOW + 20, interval=10
    )


async def test_an_approval_is_redeemed_by_one_poll(flows: Flows) -> None:
    await flows.devices.save(device())
    await flows.devices.poll("d1", NOW + 5)
    await decide(flows)

    redeemed = await flows.devices.poll("d1", NOW + 40)
    again = await flows.devices.poll("d1", NOW + 50)

    assert redeemed == (decided(device(last_poll_at=NOW + 5), "approved"), False)
    assert again == (decided(device(last_poll_at=NOW + 40), "consumed"), False)
    assert not await decide(flows, now=NOW + 51)  # consumed is not pending


async def test_a_denial_stays_a_denial_however_often_polled(flows: Flows) -> None:
    await flows.devices.save(device())
    await decide(flows, approved=False)

    for i in range(3):
        record, _ = await flows.devices.poll("d1", NOW + 40 + i)
        assert record is not None
        assert record.status == "denied"


async def test_ten_concurrent_polls_of_an_approval_redeem_it_once(flows: Flows) -> None:
    await flows.devices.save(device())
    await decide(flows)

    results = await asyncio.gather(*(flows.devices.poll("d1", NOW + 40 + i) for i in range(10)))

    statuses = sorted(record.status for record, _ in results if record is not None)
    assert statuses == ["approved"] + ["consumed"] * 9


async def test_concurrent_decisions_one_wins(flows: Flows) -> None:
    await flows.devices.save(device())

    results = await asyncio.gather(*(decide(flows, approved=i % 2 == 0) for i in range(10)))

    assert sorted(results) == [False] * 9 + [True]
    record = await flows.devices.by_user_code("BCDFGHJK")
    assert record is not None
    assert record.status in ("approved", "denied")


async def test_sql_refuses_a_user_code_another_request_holds(sql_flows: Flows) -> None:
    await sql_flows.devices.save(device())

    with pytest.raises(Conflict):
        await sql_flows.devices.save(device("d2"))

    assert await sql_flows.devices.poll("d2", NOW) == (None, False)
    assert await sql_flows.devices.by_user_code("BCDFGHJK") == device()


async def test_sql_purges_requests_long_expired(
    sql_flows: Flows, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_devices, "PURGE_EVERY", 3)
    await sql_flows.devices.save(device("old", "OLDCODE1", expires_at=NOW + 5))
    await sql_flows.devices.save(device("live", "LIVECODE"))
    sql_flows.clock.advance(5 + sql_devices.PURGE_AFTER)

    # The purge runs first, so the expired request's user code is free again.
    await sql_flows.devices.save(device("new", "OLDCODE1", expires_at=sql_flows.clock() + 600))

    assert await count_rows(sql_flows, "device_codes") == 2
    assert await sql_flows.devices.poll("old", sql_flows.clock()) == (None, False)
    assert (await sql_flows.devices.by_user_code("OLDCODE1")) is not None
