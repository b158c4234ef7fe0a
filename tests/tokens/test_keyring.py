"""Keyring life cycle, JWKS export and sealing at rest (ARCHITECTURE.md, Token model: Keys)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import AUDIENCE, ISSUER, FrozenClock
from tokenward.guard import InvalidToken, KeyringKeySource, RevocationMirror, Validator
from tokenward.tokens.errors import MasterKeyError
from tokenward.tokens.grant import TokenGrant
from tokenward.tokens.jwt_access import JwtAccessTokenStrategy
from tokenward.tokens.keyring import (
    KeyPolicy,
    Keyring,
    KeyRotationError,
    KeyState,
    ManagedKey,
    open_key,
    seal_key,
)
from tokenward.tokens.sealing import KeySealer, generate_master_key

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


def ring(clock: FrozenClock, alg: str = "ES256") -> Keyring:
    keyring = Keyring(KeyPolicy(algorithm=alg), clock)
    keyring.ensure_ready()
    return keyring


@pytest.mark.parametrize(
    ("alg", "kty"), [("ES256", "EC"), ("EdDSA", "OKP"), ("RS256", "RSA"), ("PS256", "RSA")]
)
def test_jwks_publishes_public_keys_only(clock: FrozenClock, alg: str, kty: str) -> None:
    keys = ring(clock, alg).jwks()["keys"]
    assert len(keys) == 2  # active and next
    for jwk in keys:
        assert jwk["kty"] == kty
        assert jwk["alg"] == alg
        assert jwk["use"] == "sig"
        assert jwk["kid"]
        assert not PRIVATE_MEMBERS & jwk.keys()


def test_symmetric_keys_never_reach_the_jwks(clock: FrozenClock) -> None:
    keyring = ring(clock, "HS256")
    assert keyring.jwks() == {"keys": []}
    assert len(keyring.active().private) == 32  # type: ignore[arg-type]


def test_first_start_creates_active_and_next(clock: FrozenClock) -> None:
    keyring = ring(clock)
    states = sorted(key.state for key in keyring.managed_keys())
    assert states == [KeyState.ACTIVE, KeyState.NEXT]
    assert keyring.ensure_ready() == []  # idempotent


def test_a_fresh_keyring_rotates_at_once(clock: FrozenClock) -> None:
    # `next` was created with the first active key: no JWKS without it was ever served.
    keyring = ring(clock)
    clock.advance(1)
    upcoming = next(key for key in keyring.managed_keys() if key.state == KeyState.NEXT)
    keyring.rotate()
    assert keyring.active() is upcoming


def test_rotation_waits_until_next_key_was_published_long_enough(clock: FrozenClock) -> None:
    keyring = ring(clock)
    keyring.rotate()  # fresh: at once; the new `next` is younger than the keys cached before it
    clock.advance(1)
    with pytest.raises(KeyRotationError, match="published"):
        keyring.rotate()
    clock.advance(keyring.policy.publish_ahead - 1)
    keyring.rotate()


def test_rotation_moves_every_state_forward(clock: FrozenClock) -> None:
    keyring = ring(clock)
    first = keyring.active()
    upcoming = next(key for key in keyring.managed_keys() if key.state == KeyState.NEXT)
    clock.advance(3600)
    keyring.rotate()
    assert keyring.active() is upcoming
    assert first.state == KeyState.RETIRING
    assert first.retiring_at == clock()
    assert {jwk["kid"] for jwk in keyring.jwks()["keys"]} >= {first.kid, upcoming.kid}
    assert len([key for key in keyring.managed_keys() if key.state == KeyState.NEXT]) == 1


def test_the_active_key_follows_retire_and_another_nodes_rotation(clock: FrozenClock) -> None:
    """`active()` is kept as the keys change (every request reads it): after `keys migrate`
    retires the ring, and after a merge of the states another node wrote when it rotated."""
    sealer = KeySealer(generate_master_key())

    def copied(keyring: Keyring) -> list[ManagedKey]:  # as stored and loaded on another node
        return [open_key(seal_key(key, sealer), sealer) for key in keyring.managed_keys()]

    here = ring(clock)
    there = Keyring(KeyPolicy(algorithm="ES256"), clock, copied(here))
    clock.advance(3600)
    there.rotate()
    assert here.active().kid != there.active().kid
    here.merge(copied(there))
    assert here.active().kid == there.active().kid
    here.retire()
    assert not here.has_active()
    with pytest.raises(KeyRotationError, match="no active key"):
        here.active()


def test_retiring_key_verifies_until_its_longest_token_expired(clock: FrozenClock) -> None:
    keyring = ring(clock)
    strategy = JwtAccessTokenStrategy(keyring, ISSUER, clock=clock)
    token = strategy.mint_sync(TokenGrant("alice", "c", (AUDIENCE,))).value
    old_kid = keyring.active().kid
    keyring.rotate(force=True)
    validator = Validator(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=KeyringKeySource(keyring),
        revocations=RevocationMirror(),
        clock=clock,
    )
    assert validator.authenticate_sync("Bearer " + token).sub == "alice"
    policy = keyring.policy
    clock.advance(policy.max_token_lifetime + policy.leeway - 1)
    assert keyring.advance() == []
    clock.advance(1)
    retired = keyring.advance()
    assert [key.kid for key in retired] == [old_kid]
    assert old_kid not in {jwk["kid"] for jwk in keyring.jwks()["keys"]}
    assert keyring.verification_key(old_kid) is None
    validator.cache.clear()
    with pytest.raises(InvalidToken):
        validator.authenticate_sync("Bearer " + token)


def test_rotation_is_due_after_the_period(clock: FrozenClock) -> None:
    keyring = ring(clock)
    assert not keyring.rotation_due()
    clock.advance(keyring.policy.rotation_period)
    assert keyring.rotation_due()


def test_access_token_lifetime_cannot_outlive_the_key_overlap(clock: FrozenClock) -> None:
    with pytest.raises(ValueError, match="max_token_lifetime"):
        JwtAccessTokenStrategy(ring(clock), ISSUER, lifetime=7200)


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256", "PS256", "HS256"])
def test_sealed_keys_round_trip(clock: FrozenClock, alg: str) -> None:
    keyring = ring(clock, alg)
    sealer = KeySealer(generate_master_key())
    key = keyring.active()
    stored = seal_key(key, sealer)
    material = (
        key.private
        if isinstance(key.private, bytes)
        else key.private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    assert material[-32:] not in stored.sealed_private  # no plaintext key material at rest
    restored = open_key(stored, sealer)
    assert restored.kid == key.kid
    assert restored.state == key.state
    message = b"header.payload"
    assert restored.verification.verify(message, key.sign(message))
    assert key.verification.verify(message, restored.sign(message))


def test_wrong_master_key_is_a_clear_error(clock: FrozenClock) -> None:
    stored = seal_key(ring(clock).active(), KeySealer(generate_master_key()))
    with pytest.raises(MasterKeyError, match="wrong master key"):
        open_key(stored, KeySealer(generate_master_key()))


def test_sealed_key_cannot_move_to_another_kid(clock: FrozenClock) -> None:
    sealer = KeySealer(generate_master_key())
    keyring = ring(clock)
    active, upcoming = (seal_key(key, sealer) for key in keyring.managed_keys())
    moved = replace(upcoming, sealed_private=active.sealed_private)
    with pytest.raises(MasterKeyError):
        open_key(moved, sealer)


@pytest.mark.parametrize(
    ("master_key", "message"),
    [
        (None, "no master key"),
        ("", "no master key"),
        ("not base64!", "not base64url"),
        ("c2hvcnQ", "256 bits"),
    ],
)
def test_bad_master_key_fails_at_construction(master_key: str | None, message: str) -> None:
    with pytest.raises(MasterKeyError, match=message):
        KeySealer(master_key)


def test_sealer_repr_hides_the_key() -> None:
    secret = generate_master_key()
    assert secret not in repr(KeySealer(secret))
