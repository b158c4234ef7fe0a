"""TOTP and recovery codes as services: the window of one step either side, a code good once,
wrong codes throttled like passwords, the secret sealed for its user, recovery codes single-use
and hashed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pyotp
import pytest

from tests.conftest import FrozenClock
from tokenward.oauth.client_auth import SecretHasher
from tokenward.services.recovery_codes import COUNT, RecoveryCodeService
from tokenward.services.totp import UNUSABLE, TotpService
from tokenward.store.memory_factors import MemoryRecoveryCodes, MemoryTotpFactors
from tokenward.store.memory_signin_throttle import MemorySignInThrottle
from tokenward.tokens.sealing import KeySealer, generate_master_key

pytestmark = pytest.mark.anyio
IP = "192.0.2.7"


def _totp(clock: FrozenClock) -> tuple[TotpService, MemoryTotpFactors]:
    factors = MemoryTotpFactors()
    sealer = KeySealer(generate_master_key())
    return TotpService(factors, sealer, MemorySignInThrottle(clock), clock), factors


async def test_a_code_is_good_once_within_one_step_either_side(clock: FrozenClock) -> None:
    service, factors = _totp(clock)
    enrolment = service.start("ann")
    assert enrolment.uri.startswith("otpauth://totp/tokenward:ann?")
    assert enrolment.qr.startswith("data:image/svg+xml")
    app = pyotp.TOTP(enrolment.secret)
    assert not await service.confirm("u1", enrolment.secret, "000000")
    assert await service.confirm("u1", enrolment.secret, app.at(clock()))
    stored = await factors.get("u1")
    assert stored is not None
    assert enrolment.secret.encode() not in stored.sealed_secret  # sealed at rest

    again = await service.verify("u1", "ann", app.at(clock()), IP)  # the confirming code
    assert (again.ok, again.status) == (False, 401)
    assert "already used" in (again.error or "")
    assert (await service.verify("u1", "ann", app.at(clock() + 30), IP)).ok
    assert not (await service.verify("u1", "ann", app.at(clock() - 30), IP)).ok  # older
    clock.advance(90)
    assert not (await service.verify("u1", "ann", app.at(clock() + 60), IP)).ok  # too far
    assert (await service.verify("u1", "ann", app.at(clock() - 30), IP)).ok


async def test_wrong_codes_are_throttled(clock: FrozenClock) -> None:
    service, _ = _totp(clock)
    enrolment = service.start("ann")
    assert await service.confirm("u1", enrolment.secret, pyotp.TOTP(enrolment.secret).at(clock()))
    statuses = [(await service.verify("u1", "ann", "000000", IP)).status for _ in range(6)]
    assert statuses == [401, 401, 401, 401, 401, 429]


async def test_a_sealed_secret_opens_for_its_user_only(
    clock: FrozenClock, capsys: pytest.CaptureFixture[str]
) -> None:
    service, factors = _totp(clock)
    enrolment = service.start("ann")
    app = pyotp.TOTP(enrolment.secret)
    assert await service.confirm("u1", enrolment.secret, app.at(clock()))
    stolen = await factors.get("u1")
    assert stolen is not None
    await factors.put(type(stolen)("u2", stolen.sealed_secret, stolen.created_at))
    refused = await service.verify("u2", "bob", app.at(clock() + 30), IP)  # a right code
    assert (refused.ok, refused.status) == (False, 409)
    assert "recovery code" in (refused.error or "")
    logged = capsys.readouterr().out
    assert "totp_secret_unusable" in logged
    assert enrolment.secret not in logged


@pytest.mark.parametrize(
    "damage",
    [
        lambda sealed: sealed[:-1] + bytes([sealed[-1] ^ 1]),  # a bit flipped: the tag fails
        lambda sealed: b"\x00" + sealed[1:],  # an unknown format
        lambda _sealed: b"",
    ],
)
async def test_a_secret_that_does_not_open_fails_closed(
    clock: FrozenClock, damage: Callable[[bytes], bytes]
) -> None:
    """A tampered or corrupted row: the factor is unusable (409 with what to do), never a
    traceback, and no code opens it."""
    service, factors = _totp(clock)
    enrolment = service.start("ann")
    app = pyotp.TOTP(enrolment.secret)
    assert await service.confirm("u1", enrolment.secret, app.at(clock()))
    stored = await factors.get("u1")
    assert stored is not None
    await factors.put(replace(stored, sealed_secret=damage(stored.sealed_secret)))
    refused = await service.verify("u1", "ann", app.at(clock() + 30), IP)
    assert (refused.ok, refused.status, refused.error) == (False, 409, UNUSABLE)


async def test_a_changed_master_key_fails_closed(clock: FrozenClock) -> None:
    service, factors = _totp(clock)
    enrolment = service.start("ann")
    app = pyotp.TOTP(enrolment.secret)
    assert await service.confirm("u1", enrolment.secret, app.at(clock()))
    other_key = TotpService(
        factors, KeySealer(generate_master_key()), MemorySignInThrottle(clock), clock
    )
    refused = await other_key.verify("u1", "ann", app.at(clock() + 30), IP)
    assert (refused.ok, refused.status) == (False, 409)


async def test_recovery_codes_work_once_each(clock: FrozenClock) -> None:
    store = MemoryRecoveryCodes()
    digests = SecretHasher(b"k" * 32)
    service = RecoveryCodeService(store, digests, MemorySignInThrottle(clock), clock)
    codes = await service.issue("u1")
    assert len(set(codes)) == COUNT
    assert all(len(code) == 14 and code.count("-") == 2 for code in codes)
    assert all(
        code not in stored.code_hash for stored in await store.of_user("u1") for code in codes
    )
    assert await service.use("u1", codes[3].upper().replace("-", " "))
    assert not await service.use("u1", codes[3])
    assert not await service.use("u2", codes[4])
    assert not await service.use("u1", codes[4][:-1] + "!")
    assert await service.remaining("u1") == COUNT - 1
    refused = await service.use_throttled("u1", "ann", "wrong-code-0000", IP)
    assert (refused.ok, refused.status) == (False, 401)
    newer = await service.issue("u1")
    assert not await service.use("u1", codes[5])  # replaced
    assert (await service.use_throttled("u1", "ann", newer[0], IP)).ok


async def test_a_corrupted_recovery_code_row_is_a_refusal(clock: FrozenClock) -> None:
    """A stored digest that is not what we wrote (non-ASCII, truncated): the code is refused,
    never a TypeError from the constant-time comparison."""
    store = MemoryRecoveryCodes()
    service = RecoveryCodeService(
        store, SecretHasher(b"k" * 32), MemorySignInThrottle(clock), clock
    )
    codes = await service.issue("u1")
    rows = list(await store.of_user("u1"))
    await store.replace(
        "u1",
        [replace(rows[0], code_hash="ü" * 64), replace(rows[1], code_hash=""), *rows[2:]],
    )
    by_id = {row.code_id: code for row in rows for code in codes if code.startswith(row.code_id)}
    assert not await service.use("u1", by_id[rows[0].code_id])
    refused = await service.use_throttled("u1", "ann", by_id[rows[1].code_id], IP)
    assert (refused.ok, refused.status) == (False, 401)
    assert await service.use("u1", by_id[rows[2].code_id])  # the sound rows still work
