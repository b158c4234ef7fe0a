"""Only a value with the refresh-token prefix is looked up: an access token or a stranger's
string given to introspection, revocation or the refresh grant costs no database read."""

from __future__ import annotations

import pytest

from tests.conftest import FrozenClock
from tokenward.core.records import FamilyRecord, RefreshRecord
from tokenward.oauth.refresh import PREFIX, lookup, refresh_digest
from tokenward.store.memory_flows import MemoryGrantStore

pytestmark = pytest.mark.anyio


class CountingGrants(MemoryGrantStore):
    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    async def lookup(self, digest: str) -> tuple[RefreshRecord, FamilyRecord] | None:
        self.lookups += 1
        return await super().lookup(digest)


@pytest.mark.parametrize(
    "value", ["twa_" + "A" * 43, "eyJhbGciOiJFUzI1NiJ9.e30.sig", "", "TWR_" + "A" * 43]
)
async def test_a_value_without_the_prefix_is_not_looked_up(clock: FrozenClock, value: str) -> None:
    grants = CountingGrants()

    assert await lookup(grants, value) is None
    assert grants.lookups == 0


async def test_a_value_with_the_prefix_is_looked_up_by_its_digest(clock: FrozenClock) -> None:
    grants = CountingGrants()
    family = FamilyRecord(
        "family-1", "client-1", "alice", frozenset({"read"}), (), clock(), clock() + 600
    )
    value = PREFIX + "A" * 43
    await grants.create(
        family, RefreshRecord(refresh_digest(value), "family-1", clock(), clock() + 60)
    )

    found = await lookup(grants, value)

    assert found is not None
    assert found[1].family_id == "family-1"
    assert await lookup(grants, PREFIX + "B" * 43) is None
    assert grants.lookups == 2
