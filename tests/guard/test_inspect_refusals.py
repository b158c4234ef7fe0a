"""Validator.inspect remembers a final refusal, so asking again about a dead token reads nothing;
a refusal the token may outlive (not valid yet, a key not held yet) is never remembered."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import AUDIENCE, ISSUER, FrozenClock
from tokenward.core.claims import AccessToken
from tokenward.core.errors import InvalidTokenForNow
from tokenward.core.records import Revocation, RevocationKind
from tokenward.guard import InvalidToken, KeyringKeySource, RevocationMirror, Validator
from tokenward.guard.cache import RefusalCache
from tokenward.store.memory import MemoryAccessTokenStore, MemoryRevocationStore
from tokenward.tokens.grant import TokenGrant
from tokenward.tokens.jwt_access import JwtAccessTokenStrategy
from tokenward.tokens.keyring import KeyPolicy, Keyring
from tokenward.tokens.opaque import OpaqueAccessTokenStrategy, StoreOpaqueResolver, token_digest

pytestmark = pytest.mark.anyio

GRANT = TokenGrant("alice", "client-1", (AUDIENCE,), frozenset({"read"}))


class CountingStore(MemoryAccessTokenStore):
    """The memory store, counting the reads a database would have to answer."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(clock)
        self.reads = 0

    async def get(self, digest: str) -> AccessToken | None:
        self.reads += 1
        return await super().get(digest)


@pytest.fixture
def store(clock: FrozenClock) -> CountingStore:
    return CountingStore(clock)


@pytest.fixture
def opaque_validator(
    keyring: Keyring, clock: FrozenClock, revocations: MemoryRevocationStore, store: CountingStore
) -> Validator:
    mirror = RevocationMirror()
    revocations.attach(mirror)
    return Validator(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=KeyringKeySource(keyring),
        revocations=mirror,
        opaque=StoreOpaqueResolver(store),
        clock=clock,
        leeway=30,
    )


async def test_a_revoked_opaque_token_is_read_once(
    opaque_validator: Validator, store: CountingStore, clock: FrozenClock
) -> None:
    issued = await OpaqueAccessTokenStrategy(store, ISSUER, clock=clock).mint(GRANT)
    assert (await opaque_validator.inspect(issued.value)).sub == "alice"
    await store.delete(token_digest(issued.value))  # RFC 7009 revocation of an opaque token
    store.reads = 0
    opaque_validator._inspect_cache.clear()  # as after eviction: the next answer needs a read

    for _ in range(3):
        with pytest.raises(InvalidToken, match="not active"):
            await opaque_validator.inspect(issued.value)

    assert store.reads == 1


async def test_an_unknown_string_is_read_once(
    opaque_validator: Validator, store: CountingStore
) -> None:
    for _ in range(3):
        with pytest.raises(InvalidToken, match="not active"):
            await opaque_validator.inspect("twa_" + "A" * 43)

    assert store.reads == 1


async def test_a_token_revoked_while_cached_stays_refused(
    validator: Validator,
    mint: Callable[..., str],
    revocations: MemoryRevocationStore,
    clock: FrozenClock,
) -> None:
    raw = mint()
    token = await validator.inspect(raw)
    await revocations.revoke(Revocation(RevocationKind.JTI, token.jti, None, clock() + 3600))

    with pytest.raises(InvalidToken, match="revoked") as first:
        await validator.inspect(raw)
    with pytest.raises(InvalidToken) as again:
        await validator.inspect(raw)

    assert again.value.description == first.value.description
    assert len(validator._inspect_refusals) == 1


async def test_an_expired_token_is_remembered_as_expired(
    opaque_validator: Validator, store: CountingStore, clock: FrozenClock
) -> None:
    issued = await OpaqueAccessTokenStrategy(store, ISSUER, lifetime=60, clock=clock).mint(GRANT)
    clock.advance(60 + 31)  # past exp and the leeway
    store.reads = 0

    for _ in range(2):
        with pytest.raises(InvalidToken):
            await opaque_validator.inspect(issued.value)

    assert store.reads == 1


async def test_a_token_not_valid_yet_is_accepted_once_it_is(
    keyring: Keyring, validator: Validator, clock: FrozenClock
) -> None:
    start = clock.now
    clock.now = start + 120  # minted by a node whose clock runs two minutes ahead
    raw = JwtAccessTokenStrategy(keyring, ISSUER, clock=clock).mint_sync(GRANT).value
    clock.now = start

    with pytest.raises(InvalidTokenForNow):
        await validator.inspect(raw)
    clock.now = start + 120

    assert (await validator.inspect(raw)).sub == "alice"
    assert len(validator._inspect_refusals) == 0


async def test_a_token_of_a_key_not_held_yet_is_accepted_once_it_is(
    validator: Validator, keyring: Keyring, clock: FrozenClock
) -> None:
    # Another node's new key, not yet in this node's ring.
    other = Keyring(KeyPolicy(algorithm="ES256"), clock)
    other.ensure_ready()
    raw = JwtAccessTokenStrategy(other, ISSUER, clock=clock).mint_sync(GRANT).value

    with pytest.raises(InvalidTokenForNow):
        await validator.inspect(raw)
    keyring.merge(other.managed_keys())

    assert (await validator.inspect(raw)).sub == "alice"


def test_refusals_are_bounded_and_keep_no_token() -> None:
    refusals = RefusalCache(max_entries=2)
    keys = [RefusalCache.key(f"twa_token-{i}") for i in range(3)]
    for key in keys:
        refusals.put(key, "the access token is not active")

    assert len(refusals) == 2
    assert refusals.get(keys[0]) is None
    assert refusals.get(keys[2]) == "the access token is not active"
    assert all(len(key) == 32 for key in keys)  # a SHA-256, whatever the token's length
