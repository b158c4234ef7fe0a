"""The operator's revocations: a jti entry, or watermarks up to now, kept until every token
issued so far has expired; nothing named is an error."""

from __future__ import annotations

import pytest

from tests.conftest import FrozenClock
from tokenward.core.records import RevocationKind
from tokenward.services.errors import AdminError
from tokenward.services.revoking import Watermarks
from tokenward.store.memory import MemoryRevocationStore

pytestmark = pytest.mark.anyio


async def test_watermarks_and_jti_are_kept_as_long_as_tokens_live(clock: FrozenClock) -> None:
    store = MemoryRevocationStore()
    done = await Watermarks(store, 3600.0, clock).revoke(jti="j1", session="s1")
    assert [entry["kind"] for entry in done["revoked"]] == ["jti", RevocationKind.SESSION]
    active = [revocation for _seq, revocation in await store.active(clock())]
    assert {(r.kind, r.value, r.issued_before) for r in active} == {
        (RevocationKind.JTI, "j1", None),
        (RevocationKind.SESSION, "s1", clock()),
    }
    assert {r.expires_at for r in active} == {clock() + 3600.0}


async def test_nothing_to_revoke_is_refused(clock: FrozenClock) -> None:
    with pytest.raises(AdminError, match="say what to revoke"):
        await Watermarks(MemoryRevocationStore(), 60.0, clock).revoke()
