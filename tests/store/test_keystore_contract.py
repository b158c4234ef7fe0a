"""KeyStore contract: every backend loads what was saved, upserts by kid, all or nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest
from sqlalchemy.exc import IntegrityError

from tests.store.conftest import Backend
from tokenward.core.records import SigningChoice, StoredKey

pytestmark = pytest.mark.anyio


def key(kid: str, state: str = "active", **changes: object) -> StoredKey:
    stored = StoredKey(
        kid=kid,
        alg="ES256",
        state=state,
        created_at=1_800_000_000.123456,  # sub-second precision must survive the database
        activated_at=1_800_000_100.5,
        retiring_at=None,
        retired_at=None,
        sealed_private=b"\x00sealed\xff" + kid.encode(),
    )
    return dataclasses.replace(stored, **changes)  # type: ignore[arg-type]


def by_kid(keys: Sequence[StoredKey]) -> dict[str, StoredKey]:
    return {stored.kid: stored for stored in keys}


async def test_empty_store_loads_nothing(backend: Backend) -> None:
    assert list(await backend.keys.load_all()) == []


async def test_saved_keys_load_back_exactly(backend: Backend) -> None:
    first = key("k1")
    second = key(
        "k2",
        "retired",
        alg="RS256",
        retiring_at=1_800_000_200.25,
        retired_at=1_800_000_300.75,
        sealed_private=bytes(range(256)),
    )
    await backend.keys.save([first, second])

    loaded = by_kid(await backend.keys.load_all())

    assert loaded == {"k1": first, "k2": second}
    assert type(loaded["k2"].sealed_private) is bytes


async def test_save_upserts_by_kid_and_keeps_the_others(backend: Backend) -> None:
    await backend.keys.save([key("k1", "next"), key("k2")])

    rotated = key("k1", "active", activated_at=1_800_000_999.125)
    await backend.keys.save([rotated])

    assert by_kid(await backend.keys.load_all()) == {"k1": rotated, "k2": key("k2")}


async def test_the_last_record_of_a_kid_in_one_batch_wins(backend: Backend) -> None:
    await backend.keys.save([key("k1", "next"), key("k1", "retiring")])

    assert list(await backend.keys.load_all()) == [key("k1", "retiring")]


async def test_saving_nothing_changes_nothing(backend: Backend) -> None:
    await backend.keys.save([key("k1")])
    await backend.keys.save([])

    assert list(await backend.keys.load_all()) == [key("k1")]


async def test_a_failing_batch_stores_none_of_its_keys(sql: Backend) -> None:
    # Memory cannot fail half way; a database can (here: NOT NULL), and must roll back all.
    await sql.keys.save([key("k1", "next")])
    broken = key("k3", alg=None)

    with pytest.raises(IntegrityError):
        await sql.keys.save([key("k1", "active"), key("k2"), broken])

    assert list(await sql.keys.load_all()) == [key("k1", "next")]


async def test_signing_choices_round_trip_and_replace_by_audience(backend: Backend) -> None:
    assert list(await backend.keys.load_choices()) == []
    default = SigningChoice("", "ML-DSA-65", "ES256", 1_800_000_000.5)
    api = SigningChoice("https://api.example/v1", "ML-DSA-44", None, 1_800_000_100.25)
    await backend.keys.save_choices([default, api])
    moved_on = SigningChoice("", "ML-DSA-87", "ML-DSA-65", 1_800_000_900.75)
    await backend.keys.save_choices([moved_on])

    loaded = {choice.audience: choice for choice in await backend.keys.load_choices()}

    assert loaded == {"": moved_on, "https://api.example/v1": api}
