"""Crypto agility: which algorithm signs a token (per client, per audience, per deployment), one
active key per algorithm, and `migrate`'s publish-ahead → switch → retire on a frozen clock."""

from __future__ import annotations

import pytest

from tests.conftest import FrozenClock
from tokenward.core.records import SigningChoice
from tokenward.store.memory import MemoryKeyStore
from tokenward.tokens.errors import NoSigningKey
from tokenward.tokens.grant import TokenGrant
from tokenward.tokens.jws import parse_compact
from tokenward.tokens.jwt_access import JwtAccessTokenStrategy
from tokenward.tokens.key_manager import KeyManager
from tokenward.tokens.keyring import KeyPolicy, KeyRotationError, KeyState
from tokenward.tokens.sealing import KeySealer, generate_master_key
from tokenward.tokens.signing_choice import SigningPolicy

pytestmark = pytest.mark.anyio
PQC_API = "https://pqc.example/api"
LEGACY_API = "https://legacy.example/api"


def test_client_pin_beats_audience_beats_default(clock: FrozenClock) -> None:
    policy = SigningPolicy("ES256", {PQC_API: "ML-DSA-65"}, clock)
    assert policy.access_token_alg([LEGACY_API]) == "ES256"
    assert policy.access_token_alg([PQC_API]) == "ML-DSA-65"
    assert policy.access_token_alg([LEGACY_API, PQC_API]) == "ML-DSA-65"
    assert policy.access_token_alg([PQC_API], "ML-DSA-87") == "ML-DSA-87"


def test_a_stored_choice_switches_at_its_moment(clock: FrozenClock) -> None:
    policy = SigningPolicy("ES256", {}, clock)
    policy.update([SigningChoice("", "ML-DSA-65", "ES256", clock.now + 100)])
    assert policy.default_alg() == "ES256"
    assert policy.in_use() == {"ES256", "ML-DSA-65"}  # both until the switch
    clock.advance(100)
    assert policy.default_alg() == "ML-DSA-65"
    assert policy.in_use() == {"ML-DSA-65"}


async def manager(clock: FrozenClock, store: MemoryKeyStore, sealer: KeySealer) -> KeyManager:
    policies = [
        KeyPolicy(algorithm=alg, publish_ahead=600, max_token_lifetime=900, leeway=30)
        for alg in ("ES256", "RS256")
    ]
    return await KeyManager.load(
        store,
        sealer,
        policies,
        clock,
        signing=SigningPolicy("ES256", {}, clock),
        kept=["RS256"],
    )


def alg_of(strategy: JwtAccessTokenStrategy, audience: str = LEGACY_API) -> str:
    issued = strategy.mint_sync(TokenGrant("alice", "app", (audience,)))
    return str(parse_compact(issued.value).header["alg"])


async def test_migrate_publishes_ahead_switches_then_retires(clock: FrozenClock) -> None:
    store, sealer = MemoryKeyStore(), KeySealer(generate_master_key())
    keys = await manager(clock, store, sealer)
    strategy = JwtAccessTokenStrategy(keys, "https://issuer.example", lifetime=900, clock=clock)
    old_kid = keys.keyrings["ES256"].active().kid

    plan = await keys.migrate("ML-DSA-65")
    assert plan.previous == "ES256"
    assert plan.switch_at == clock.now + 600
    new_kid = keys.keyrings["ML-DSA-65"].active().kid
    published = {jwk["kid"] for jwk in keys.jwks()["keys"]}
    assert {old_kid, new_kid} <= published  # published ahead of use
    assert alg_of(strategy) == "ES256"

    # Another node (sharing the store) learns the choice and switches at the same moment.
    other = await manager(clock, store, sealer)
    clock.advance(600)
    assert alg_of(strategy) == "ML-DSA-65"
    assert other.signing.default_alg() == "ML-DSA-65"

    await keys.tick()  # nothing signs ES256 any more: its active key retires
    es256 = {key.kid: key.state for key in keys.keyrings["ES256"].managed_keys()}
    assert es256[old_kid] == KeyState.RETIRING
    assert KeyState.NEXT not in es256.values()
    assert KeyState.ACTIVE not in es256.values()
    assert keys.verification_key(old_kid) is not None  # live ES256 tokens still verify

    clock.advance(900 + 30 - 1)
    await keys.tick()
    assert keys.verification_key(old_kid) is not None
    clock.advance(1)
    await keys.tick()  # the last token it signed has expired
    assert keys.verification_key(old_kid) is None
    assert old_kid not in {jwk["kid"] for jwk in keys.jwks()["keys"]}

    restarted = await manager(clock, store, sealer)  # a restart keeps the migration
    assert restarted.signing.default_alg() == "ML-DSA-65"
    assert not restarted.keyrings["ES256"].has_active()
    assert [ring.policy.algorithm for ring in restarted.signing_keyrings()] == [
        "RS256",
        "ML-DSA-65",
    ]


async def test_migrate_one_audience_keeps_the_other_on_es256(clock: FrozenClock) -> None:
    keys = await manager(clock, MemoryKeyStore(), KeySealer(generate_master_key()))
    strategy = JwtAccessTokenStrategy(keys, "https://issuer.example", lifetime=900, clock=clock)
    await keys.migrate("ML-DSA-44", PQC_API, force=True)
    assert alg_of(strategy, PQC_API) == "ML-DSA-44"
    assert alg_of(strategy, LEGACY_API) == "ES256"
    await keys.tick()
    assert keys.keyrings["ES256"].has_active()  # the legacy audience still signs with it


async def test_migrate_refuses_what_it_cannot_do(clock: FrozenClock) -> None:
    keys = await manager(clock, MemoryKeyStore(), KeySealer(generate_master_key()))
    with pytest.raises(KeyRotationError, match="migrate to one of"):
        await keys.migrate("HS256")
    with pytest.raises(KeyRotationError, match="migrate to one of"):
        await keys.migrate("ML-DSA-99")
    with pytest.raises(KeyRotationError, match="already"):
        await keys.migrate("ES256")


async def test_a_client_pinned_to_a_retired_algorithm_gets_nothing_rather_than_another(
    clock: FrozenClock,
) -> None:
    """Fail closed: no silent fallback to the deployment's algorithm (issue 17)."""
    keys = await manager(clock, MemoryKeyStore(), KeySealer(generate_master_key()))
    strategy = JwtAccessTokenStrategy(keys, "https://issuer.example", lifetime=900, clock=clock)
    await keys.migrate("ML-DSA-87", force=True)
    await keys.tick()
    with pytest.raises(NoSigningKey) as refused:
        strategy.mint_sync(TokenGrant("a", "app", (LEGACY_API,), signing_alg="ES256"))
    assert refused.value.alg == "ES256"
    issued = strategy.mint_sync(TokenGrant("a", "app", (LEGACY_API,)))
    assert parse_compact(issued.value).header["alg"] == "ML-DSA-87"
    with pytest.raises(NoSigningKey):
        strategy.mint_sync(TokenGrant("a", "app", (LEGACY_API,), signing_alg="ML-DSA-44"))
