"""Dynamic client registration's stores, on every backend: an initial access token is spent at
most max_uses times (also under concurrency), never when expired or revoked; a registration
access token digest is per client and replaced on rotation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import FrozenClock
from tests.store.conftest import SQL, open_engine
from tokenward.core.ports import InitialAccessTokens, RegistrationAccessTokens
from tokenward.core.records import InitialAccessToken
from tokenward.store.memory_registration import (
    MemoryInitialAccessTokens,
    MemoryRegistrationAccessTokens,
)
from tokenward.store.sql import (
    SqlInitialAccessTokens,
    SqlRegistrationAccessTokens,
    session_factory,
)

pytestmark = pytest.mark.anyio
NOW = 1_800_000_000.0


@dataclass
class Stores:
    initial: InitialAccessTokens
    registration: RegistrationAccessTokens


@pytest.fixture(params=["memory", *SQL])
async def stores(
    request: pytest.FixtureRequest, clock: FrozenClock, tmp_path: Path
) -> AsyncIterator[Stores]:
    if request.param == "memory":
        yield Stores(MemoryInitialAccessTokens(), MemoryRegistrationAccessTokens())
        return
    async with open_engine(request.param, tmp_path) as engine:
        sessions = session_factory(engine)
        yield Stores(SqlInitialAccessTokens(sessions), SqlRegistrationAccessTokens(sessions))


def token(max_uses: int | None = 2, **changes: object) -> InitialAccessToken:
    values: dict[str, object] = {
        "token_id": "iat-1",
        "digest": "d1",
        "created_at": NOW,
        "expires_at": NOW + 3600,
        "max_uses": max_uses,
        **changes,
    }
    return InitialAccessToken(**values)  # type: ignore[arg-type]


async def test_spent_up_to_max_uses(stores: Stores) -> None:
    await stores.initial.save(token())

    assert await stores.initial.find("d1", NOW) == token()  # finding counts nothing
    first = await stores.initial.spend("d1", NOW)
    second = await stores.initial.spend("d1", NOW)

    assert first == token()
    assert second is not None
    assert second.uses == 1
    assert await stores.initial.spend("d1", NOW) is None
    assert await stores.initial.find("d1", NOW) is None
    assert [item.uses for item in await stores.initial.list_all()] == [2]


async def test_unlimited_uses_until_expiry(stores: Stores) -> None:
    await stores.initial.save(token(max_uses=None))

    for _ in range(5):
        assert await stores.initial.spend("d1", NOW) is not None
    assert await stores.initial.spend("d1", NOW + 3600) is None
    assert await stores.initial.find("d1", NOW + 3600) is None


async def test_revoked_and_unknown_are_refused(stores: Stores) -> None:
    await stores.initial.save(token())

    assert await stores.initial.revoke("iat-1") is True
    assert await stores.initial.revoke("nothing") is False
    assert await stores.initial.spend("d1", NOW) is None
    assert await stores.initial.find("d1", NOW) is None
    assert await stores.initial.spend("other", NOW) is None
    assert [item.revoked for item in await stores.initial.list_all()] == [True]


async def test_concurrent_spends_never_exceed_max_uses(stores: Stores) -> None:
    await stores.initial.save(token(max_uses=3))

    results = await asyncio.gather(*(stores.initial.spend("d1", NOW) for _ in range(10)))

    assert sum(result is not None for result in results) == 3


async def test_registration_digest_per_client_and_rotated(stores: Stores) -> None:
    await stores.registration.put("a", "digest-a")
    await stores.registration.put("b", "digest-b")
    await stores.registration.put("a", "digest-a2")

    assert await stores.registration.get("a") == "digest-a2"
    assert await stores.registration.get("b") == "digest-b"
    assert await stores.registration.delete("a") is True
    assert await stores.registration.delete("a") is False
    assert await stores.registration.get("a") is None


async def test_open_registrations_are_capped_and_a_deletion_frees_a_place(stores: Stores) -> None:
    await stores.registration.put("by-token", "digest-t")  # not open: not counted

    assert await stores.registration.add_open("o1", "digest-1", 2) is True
    assert await stores.registration.add_open("o2", "digest-2", 2) is True
    assert await stores.registration.add_open("o3", "digest-3", 2) is False
    assert await stores.registration.get("o3") is None  # nothing stored at the cap
    await stores.registration.put("o1", "digest-1b")  # a rotation keeps it counted
    assert await stores.registration.add_open("o3", "digest-3", 2) is False
    assert await stores.registration.get("o1") == "digest-1b"

    assert await stores.registration.delete("o2") is True
    assert await stores.registration.add_open("o3", "digest-3", 2) is True
    assert await stores.registration.get("o3") == "digest-3"


async def test_concurrent_open_registrations_never_exceed_the_cap(stores: Stores) -> None:
    results = await asyncio.gather(
        *(stores.registration.add_open(f"c{i}", f"d{i}", 3) for i in range(10))
    )

    assert sum(results) == 3
    stored = [await stores.registration.get(f"c{i}") for i in range(10)]
    assert sum(digest is not None for digest in stored) == 3
