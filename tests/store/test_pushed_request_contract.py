"""PushedRequestStore contract (RFC 9126 §4: a request_uri is used once): taken by its client
only, never after it expired, exactly once under concurrency, purged when stale."""

from __future__ import annotations

import asyncio

import pytest

from tests.store.conftest import Flows, count_rows
from tokenward.core.records import PushedRequest
from tokenward.store.sql import pushed_requests as sql_pushed

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000.0
PARAMS = '[["response_type","code"],["scope","openid"],["state","Ä→台"]]'


def pushed(digest: str = "p1", client_id: str = "web", **changes: object) -> PushedRequest:
    values: dict[str, object] = {
        "digest": digest,
        "client_id": client_id,
        "params": PARAMS,
        "expires_at": NOW + 60,
        "signed": False,
        **changes,
    }
    return PushedRequest(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("signed", [False, True])
async def test_taken_once_with_every_field(flows: Flows, signed: bool) -> None:
    record = pushed(signed=signed)
    await flows.pushed.save(record)

    assert await flows.pushed.take("p1", "web", NOW) == record
    assert await flows.pushed.take("p1", "web", NOW) is None


async def test_unknown_is_none(flows: Flows) -> None:
    assert await flows.pushed.take("nothing", "web", NOW) is None


async def test_another_client_gets_nothing_and_the_request_stays(flows: Flows) -> None:
    await flows.pushed.save(pushed())

    assert await flows.pushed.take("p1", "attacker", NOW) is None
    assert await flows.pushed.take("p1", "web", NOW) == pushed()


async def test_expired_is_refused_and_gone(flows: Flows) -> None:
    await flows.pushed.save(pushed())

    assert await flows.pushed.take("p1", "web", NOW + 60) is None
    assert await flows.pushed.take("p1", "web", NOW) is None  # not waiting for a kinder clock


async def test_concurrent_takes_one_wins(flows: Flows) -> None:
    await flows.pushed.save(pushed())

    results = await asyncio.gather(*(flows.pushed.take("p1", "web", NOW) for _ in range(8)))

    assert [r for r in results if r is not None] == [pushed()]


async def test_requests_are_kept_apart(flows: Flows) -> None:
    await flows.pushed.save(pushed("a", params='[["state","a"]]'))
    await flows.pushed.save(pushed("b", params='[["state","b"]]'))

    taken = await flows.pushed.take("b", "web", NOW)

    assert taken == pushed("b", params='[["state","b"]]')
    assert await flows.pushed.take("a", "web", NOW) == pushed("a", params='[["state","a"]]')


async def test_sql_purges_expired_requests(
    sql_flows: Flows, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_pushed, "PURGE_EVERY", 2)
    sql_flows.clock.now = NOW + 120  # the first has expired by the second save
    await sql_flows.pushed.save(pushed("old"))
    await sql_flows.pushed.save(pushed("new", expires_at=NOW + 600))

    assert await count_rows(sql_flows, "pushed_requests") == 1
