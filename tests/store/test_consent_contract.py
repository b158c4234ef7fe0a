"""ConsentStore contract: what a user granted a client, as a union of every grant -- even of
grants made at the same moment -- until withdrawn."""

from __future__ import annotations

import asyncio

import pytest

from tests.store.conftest import Flows

pytestmark = pytest.mark.anyio


async def test_nothing_is_granted_at_first(flows: Flows) -> None:
    assert await flows.consents.granted("u1", "client-1") == frozenset()


async def test_grants_add_up(flows: Flows) -> None:
    await flows.consents.grant("u1", "client-1", frozenset({"openid", "read"}))
    await flows.consents.grant("u1", "client-1", frozenset({"read", "write:ü"}))
    await flows.consents.grant("u1", "client-1", frozenset())

    assert await flows.consents.granted("u1", "client-1") == {"openid", "read", "write:ü"}


async def test_consent_belongs_to_one_user_and_one_client(flows: Flows) -> None:
    await flows.consents.grant("u1", "client-1", frozenset({"read"}))
    await flows.consents.grant("u1", "client-2", frozenset({"write"}))
    await flows.consents.grant("u2", "client-1", frozenset({"admin"}))

    assert await flows.consents.granted("u1", "client-1") == {"read"}
    assert await flows.consents.granted("u1", "client-2") == {"write"}
    assert await flows.consents.granted("u2", "client-1") == {"admin"}
    assert await flows.consents.granted("u2", "client-2") == frozenset()


async def test_withdraw_forgets_one_pair_only(flows: Flows) -> None:
    await flows.consents.grant("u1", "client-1", frozenset({"read", "write"}))
    await flows.consents.grant("u1", "client-2", frozenset({"read"}))

    await flows.consents.withdraw("u1", "client-1")
    await flows.consents.withdraw("u1", "client-1")  # idempotent
    await flows.consents.withdraw("u9", "client-9")  # unknown: no error

    assert await flows.consents.granted("u1", "client-1") == frozenset()
    assert await flows.consents.granted("u1", "client-2") == {"read"}
    await flows.consents.grant("u1", "client-1", frozenset({"openid"}))
    assert await flows.consents.granted("u1", "client-1") == {"openid"}


async def test_concurrent_grants_lose_no_scope(flows: Flows) -> None:
    # Twenty grants at once, overlapping (each names its own scope and a shared one, in
    # different sets): the result is the union of all of them.
    grants = [frozenset({f"scope-{i}", "shared", f"pair-{i // 2}"}) for i in range(20)]

    await asyncio.gather(*(flows.consents.grant("u1", "client-1", g) for g in grants))

    assert await flows.consents.granted("u1", "client-1") == frozenset().union(*grants)
