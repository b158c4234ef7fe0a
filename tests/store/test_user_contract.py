"""UserStore contract: lookups by id and username, upsert, unique usernames (even under a race),
and a list sorted by username."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from tests.store.conftest import Backend
from tokenward.core.ports import Conflict
from tokenward.core.records import UserRecord

pytestmark = pytest.mark.anyio


def user(user_id: str, username: str, **changes: object) -> UserRecord:
    record = UserRecord(
        user_id=user_id,
        username=username,
        password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
        created_at=1_800_000_000.5,
        password_changed_at=1_800_000_000.5,
    )
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


async def test_unknown_user_is_none_by_id_and_by_username(backend: Backend) -> None:
    assert await backend.users.get("u0") is None
    assert await backend.users.by_username("nobody") is None


async def test_a_user_is_found_by_id_and_by_username(backend: Backend) -> None:
    alice = user(
        "u1",
        "alice",
        disabled=True,
        password_changed_at=1_800_000_123.456789,
        claims='{"name": "Alice Ünal", "email": "alice@example.com"}',
    )
    await backend.users.put(alice)

    assert await backend.users.get("u1") == alice
    assert await backend.users.by_username("alice") == alice
    assert await backend.users.by_username("alic") is None


async def test_put_replaces_and_a_rename_frees_the_old_username(backend: Backend) -> None:
    await backend.users.put(user("u1", "alice"))
    renamed = user("u1", "alice2", password_hash="$argon2id$new", disabled=True)

    await backend.users.put(renamed)

    assert await backend.users.get("u1") == renamed
    assert await backend.users.by_username("alice") is None
    assert await backend.users.by_username("alice2") == renamed
    await backend.users.put(user("u2", "alice"))  # the old name is free again
    assert await backend.users.by_username("alice") == user("u2", "alice")


async def test_putting_the_same_user_again_is_no_conflict(backend: Backend) -> None:
    await backend.users.put(user("u1", "alice"))
    await backend.users.put(user("u1", "alice", disabled=True))

    assert await backend.users.get("u1") == user("u1", "alice", disabled=True)


async def test_a_taken_username_raises_conflict_and_changes_nothing(backend: Backend) -> None:
    alice = user("u1", "alice")
    bob = user("u2", "bob")
    await backend.users.put(alice)
    await backend.users.put(bob)

    with pytest.raises(Conflict):
        await backend.users.put(user("u3", "alice"))
    with pytest.raises(Conflict):
        await backend.users.put(user("u2", "alice"))  # renaming onto a taken name

    assert await backend.users.get("u3") is None
    assert await backend.users.get("u2") == bob
    assert await backend.users.by_username("alice") == alice
    assert list(await backend.users.list_all()) == [alice, bob]


async def test_list_all_is_sorted_by_username_in_code_point_order(backend: Backend) -> None:
    names = ["zoe", "Bob", "alice", "_admin", "Émile", "bob"]
    for index, name in enumerate(names):
        await backend.users.put(user(f"u{index}", name))

    listed = [record.username for record in await backend.users.list_all()]

    assert listed == sorted(names)  # "Bob" < "_admin" < "alice" < "bob" < "zoe" < "Émile"


async def test_concurrent_sign_ups_for_one_username_leave_exactly_one(backend: Backend) -> None:
    """10 puts at once, each in its own session, same username, different ids: the UNIQUE
    constraint (not a check-then-insert) lets exactly one through; the rest get Conflict."""
    contenders = [user(f"racer-{i}", "popular") for i in range(10)]

    results = await asyncio.gather(
        *(backend.users.put(contender) for contender in contenders), return_exceptions=True
    )

    winners = [c for c, result in zip(contenders, results, strict=True) if result is None]
    assert len(winners) == 1
    assert all(isinstance(result, Conflict) for result in results if result is not None)
    assert await backend.users.by_username("popular") == winners[0]
    assert list(await backend.users.list_all()) == winners
