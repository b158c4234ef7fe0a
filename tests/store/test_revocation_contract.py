"""RevocationStore contract: an ordered log with a strictly increasing sequence number, read
back by cursor (`since`) and by liveness (`active`)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.store.conftest import Backend
from tokenward.core.records import Revocation, RevocationKind

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000.0


def jti(value: str, expires_at: float = NOW + 900) -> Revocation:
    return Revocation(RevocationKind.JTI, value, None, expires_at)


def watermark(kind: str, value: str, before: float, expires_at: float) -> Revocation:
    return Revocation(kind, value, before, expires_at)


async def revoke_all(backend: Backend, entries: list[Revocation]) -> list[int]:
    return [await backend.revocations.revoke(entry) for entry in entries]


async def test_an_empty_log_has_nothing_since_zero_and_nothing_active(backend: Backend) -> None:
    assert list(await backend.revocations.since(0)) == []
    assert list(await backend.revocations.active(NOW)) == []


async def test_sequence_numbers_are_positive_and_strictly_increasing(backend: Backend) -> None:
    seqs = await revoke_all(backend, [jti(f"j{i}") for i in range(5)])

    assert seqs[0] > 0
    assert all(later > earlier for earlier, later in itertools.pairwise(seqs))


async def test_since_zero_returns_every_entry_oldest_first_exactly(backend: Backend) -> None:
    entries = [
        jti("j1", NOW + 60.25),
        watermark(RevocationKind.SUBJECT, "alice", NOW - 0.123456, NOW + 900.5),
        watermark(RevocationKind.SESSION, "s-1", NOW, NOW + 3600),
        watermark(RevocationKind.CLIENT, "client-ü", NOW + 0.5, NOW + 86400),
    ]
    seqs = await revoke_all(backend, entries)

    assert list(await backend.revocations.since(0)) == list(zip(seqs, entries, strict=True))


async def test_since_is_exclusive_of_its_cursor(backend: Backend) -> None:
    entries = [jti(f"j{i}") for i in range(4)]
    seqs = await revoke_all(backend, entries)

    after_second = await backend.revocations.since(seqs[1])

    assert list(after_second) == [(seqs[2], entries[2]), (seqs[3], entries[3])]
    assert list(await backend.revocations.since(seqs[-1])) == []
    assert list(await backend.revocations.since(seqs[-1] + 1000)) == []


async def test_a_cursor_catches_up_on_entries_written_after_it_read(backend: Backend) -> None:
    first = await backend.revocations.revoke(jti("j1"))
    seen = await backend.revocations.since(0)
    later = jti("j2")
    second = await backend.revocations.revoke(later)

    assert seen[-1][0] == first
    assert list(await backend.revocations.since(first)) == [(second, later)]


async def test_active_keeps_only_entries_that_expire_after_now(backend: Backend) -> None:
    expired = jti("gone", NOW - 1)
    boundary = jti("ends-now", NOW)  # expires_at == now: every token it matched has expired
    live = jti("live", NOW + 0.001)
    mark = watermark(RevocationKind.SUBJECT, "bob", NOW - 10, NOW + 900)
    seqs = await revoke_all(backend, [expired, live, boundary, mark])

    active = await backend.revocations.active(NOW)

    assert list(active) == [(seqs[1], live), (seqs[3], mark)]
    assert list(await backend.revocations.active(NOW + 900)) == []
    assert len(await backend.revocations.active(NOW - 2)) == 4


async def test_active_does_not_forget_history_for_since(backend: Backend) -> None:
    seq = await backend.revocations.revoke(jti("old", NOW - 100))

    assert list(await backend.revocations.active(NOW)) == []
    assert list(await backend.revocations.since(0)) == [(seq, jti("old", NOW - 100))]


async def test_concurrent_revocations_get_distinct_numbers_and_a_tail_misses_none(
    backend: Backend,
) -> None:
    """20 revocations at once, each in its own session, while a mirror tails the log by
    cursor: every entry gets its own number and the tail sees all of them, none skipped."""
    entries = [jti(f"concurrent-{i}") for i in range(20)]
    done = asyncio.Event()
    tailed: dict[int, Revocation] = {}

    async def tail() -> None:
        cursor = 0
        while True:
            finished = done.is_set()  # read before since(): the last pass sees every commit
            for seq, revocation in await backend.revocations.since(cursor):
                assert seq > cursor, "since() went backwards"
                tailed[seq] = revocation
                cursor = seq
            if finished:
                return
            await asyncio.sleep(0)

    async def revoke_everything() -> list[int]:
        try:
            return await asyncio.gather(*(backend.revocations.revoke(e) for e in entries))
        finally:
            done.set()

    seqs, _ = await asyncio.gather(revoke_everything(), tail())

    assert len(set(seqs)) == 20
    assert tailed == dict(zip(seqs, entries, strict=True))
    assert sorted(await backend.revocations.since(0)) == sorted(zip(seqs, entries, strict=True))


async def test_page_of_an_empty_log_has_head_zero(backend: Backend) -> None:
    assert await backend.revocations.page(0, NOW, 10) == (0, [])


async def test_page_skips_expired_entries_and_reports_the_head(backend: Backend) -> None:
    entries = [jti("gone", NOW - 1), jti("live-1"), jti("ends-now", NOW), jti("live-2")]
    seqs = await revoke_all(backend, entries)

    head, page = await backend.revocations.page(0, NOW, 10)

    assert head == seqs[-1]
    assert list(page) == [(seqs[1], entries[1]), (seqs[3], entries[3])]


async def test_page_is_bounded_and_exclusive_of_its_cursor(backend: Backend) -> None:
    entries = [jti(f"j{i}") for i in range(5)]
    seqs = await revoke_all(backend, entries)

    head, first = await backend.revocations.page(0, NOW, 2)
    _, second = await backend.revocations.page(first[-1][0], NOW, 2)
    _, rest = await backend.revocations.page(second[-1][0], NOW, 2)

    assert head == seqs[-1]
    assert [seq for seq, _ in [*first, *second, *rest]] == seqs
    assert await backend.revocations.page(seqs[-1], NOW, 2) == (seqs[-1], [])
    assert await backend.revocations.page(seqs[-1] + 100, NOW, 2) == (seqs[-1], [])


async def test_page_carries_watermarks_exactly(backend: Backend) -> None:
    mark = watermark(RevocationKind.SESSION, "s-ü", NOW - 0.123456, NOW + 3600.5)
    seq = await backend.revocations.revoke(mark)

    assert await backend.revocations.page(0, NOW, 1) == (seq, [(seq, mark)])
