"""Second-factor stores contract (TOTP, recovery codes, passkeys) on every backend: the
compare-and-set operations that keep a TOTP step, a recovery code and a passkey's signature
counter good once, even when two requests race."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.store.conftest import SQL, open_engine
from tokenward.core.ports import Passkeys, RecoveryCodes, TotpFactors
from tokenward.core.records import PasskeyCredential, RecoveryCode, TotpFactor
from tokenward.store.memory_factors import MemoryPasskeys, MemoryRecoveryCodes, MemoryTotpFactors
from tokenward.store.sql import SqlPasskeys, SqlRecoveryCodes, SqlTotpFactors, session_factory

pytestmark = pytest.mark.anyio


@dataclass
class FactorStores:
    totp: TotpFactors
    codes: RecoveryCodes
    passkeys: Passkeys


@pytest.fixture(params=["memory", *SQL])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FactorStores]:
    if request.param == "memory":
        yield FactorStores(MemoryTotpFactors(), MemoryRecoveryCodes(), MemoryPasskeys())
        return
    async with open_engine(request.param, tmp_path) as engine:
        sessions = session_factory(engine)
        yield FactorStores(
            SqlTotpFactors(sessions), SqlRecoveryCodes(sessions), SqlPasskeys(sessions)
        )


async def test_totp_step_advances_once(stores: FactorStores) -> None:
    await stores.totp.put(TotpFactor("alice", b"sealed", 1000.0, last_step=10))
    assert not await stores.totp.advance("alice", 10)  # the confirming code's step: used
    wins = await asyncio.gather(*(stores.totp.advance("alice", 11) for _ in range(5)))
    assert sorted(wins) == [False, False, False, False, True]
    assert not await stores.totp.advance("alice", 9)
    factor = await stores.totp.get("alice")
    assert factor is not None
    assert factor.last_step == 11
    assert factor.sealed_secret == b"sealed"
    assert not await stores.totp.advance("bob", 12)
    assert await stores.totp.delete("alice")
    assert not await stores.totp.delete("alice")
    assert await stores.totp.get("alice") is None


async def test_recovery_codes_are_replaced_and_used_once(stores: FactorStores) -> None:
    await stores.codes.replace("alice", [RecoveryCode("alice", "old1", "h", 1.0)])
    await stores.codes.replace(
        "alice", [RecoveryCode("alice", f"c{i}", f"hash{i}", 2.0) for i in range(3)]
    )
    await stores.codes.replace("bob", [RecoveryCode("bob", "c0", "bob-hash", 2.0)])
    assert sorted(code.code_id for code in await stores.codes.of_user("alice")) == [
        "c0",
        "c1",
        "c2",
    ]
    wins = await asyncio.gather(*(stores.codes.use("alice", "c1") for _ in range(4)))
    assert sorted(wins) == [False, False, False, True]
    assert not await stores.codes.use("alice", "old1")
    assert len(await stores.codes.of_user("alice")) == 2
    assert [code.code_hash for code in await stores.codes.of_user("bob")] == ["bob-hash"]


async def test_passkey_counter_is_compare_and_set(stores: FactorStores) -> None:
    key = PasskeyCredential("cred-1", "alice", b"cose", 5, 1000.0, name="laptop")
    await stores.passkeys.add(key)
    await stores.passkeys.add(PasskeyCredential("cred-2", "alice", b"cose2", 0, 1001.0))
    assert [c.credential_id for c in await stores.passkeys.of_user("alice")] == [
        "cred-1",
        "cred-2",
    ]
    wins = await asyncio.gather(*(stores.passkeys.used("cred-1", 5, 6, 2000.0) for _ in range(3)))
    assert sorted(wins) == [False, False, True]
    stored = await stores.passkeys.get("cred-1")
    assert stored is not None
    assert (stored.sign_count, stored.last_used_at) == (6, 2000.0)
    assert not await stores.passkeys.delete("bob", "cred-1")  # not bob's
    assert await stores.passkeys.delete("alice", "cred-1")
    assert await stores.passkeys.get("cred-1") is None
