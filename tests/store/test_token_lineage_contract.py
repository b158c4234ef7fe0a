"""TokenLineage contract (token exchange, RFC 8693): a token is found on the family that minted it,
an exchanged token joins that family, and linking races revocation safely: whichever comes
second sees the other, so no exchanged token outlives its grant."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

import pytest

from tests.store.conftest import Flows
from tests.store.test_grant_contract import NOW, family, token
from tokenward.core.ports import TokenLineage
from tokenward.core.records import MintedToken

pytestmark = pytest.mark.anyio


def lineage(flows: Flows) -> TokenLineage:
    return cast(TokenLineage, flows.grants)  # one adapter implements both ports


async def test_a_minted_token_is_found_and_an_exchanged_one_joins(flows: Flows) -> None:
    await flows.grants.create(family("f1"), token("d1"))
    await flows.grants.add_minted("f1", MintedToken("root", NOW + 900))
    links = lineage(flows)
    assert await links.family_of("root") == "f1"
    assert await links.family_of("unknown") is None
    assert await links.link("f1", MintedToken("child", NOW + 600))
    assert await links.family_of("child") == "f1"
    assert await links.link("f1", MintedToken("grandchild", NOW + 300))
    minted = await flows.grants.revoke_family("f1", NOW)
    assert {item.jti for item in minted} == {"root", "child", "grandchild"}


async def test_no_link_to_a_revoked_or_unknown_family(flows: Flows) -> None:
    await flows.grants.create(family("f1"), token("d1"))
    await flows.grants.revoke_family("f1", NOW)
    links = lineage(flows)
    assert not await links.link("f1", MintedToken("late", NOW + 600))
    assert not await links.link("nobody", MintedToken("late", NOW + 600))
    assert await links.family_of("late") is None


async def test_links_racing_a_revocation_are_all_denied_or_refused(flows: Flows) -> None:
    await flows.grants.create(family("f1"), token("d1"))
    links = lineage(flows)
    jtis = [f"child-{index}" for index in range(10)]
    results = await asyncio.gather(
        *(links.link("f1", MintedToken(jti, NOW + 600)) for jti in jtis[:5]),
        flows.grants.revoke_family("f1", NOW),
        *(links.link("f1", MintedToken(jti, NOW + 600)) for jti in jtis[5:]),
    )
    denied = {item.jti for item in cast(Sequence[MintedToken], results[5])}
    linked = {jti for jti, ok in zip(jtis, results[:5] + results[6:], strict=True) if ok}
    # Every link that succeeded was seen by the revocation: none escapes.
    assert linked <= denied
    # And after the revocation, nothing more links.
    assert not await links.link("f1", MintedToken("after", NOW + 600))
