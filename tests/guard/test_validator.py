"""The validator's checklist, one behaviour per test, through real signed tokens."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import AUDIENCE, ISSUER, FrozenClock
from tokenward.core.errors import InvalidRequest
from tokenward.core.records import Revocation, RevocationKind
from tokenward.guard import InsufficientScope, InvalidToken, MissingToken, Validator
from tokenward.store.memory import MemoryRevocationStore
from tokenward.tokens.keyring import Keyring


def test_valid_token_yields_typed_claims(validator: Validator, mint: Callable[..., str]) -> None:
    token = validator.authenticate_sync("Bearer " + mint(scopes=("read", "write")))
    assert token.sub == "alice"
    assert token.client_id == "client-1"
    assert token.scopes == frozenset({"read", "write"})
    assert token.aud == (AUDIENCE,)
    assert token.iss == ISSUER


def test_scheme_is_case_insensitive(validator: Validator, mint: Callable[..., str]) -> None:
    assert validator.authenticate_sync("bEaReR " + mint()).sub == "alice"


@pytest.mark.parametrize("header", [None, "Basic dXNlcjpwYXNz", ""])
def test_no_bearer_credentials_is_missing_token(validator: Validator, header: str | None) -> None:
    with pytest.raises(MissingToken):
        validator.authenticate_sync(header)


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer  abc"])
def test_malformed_bearer_framing_is_invalid_request(validator: Validator, header: str) -> None:
    with pytest.raises(InvalidRequest):
        validator.authenticate_sync(header)


def test_expired_token_rejected_after_leeway(
    validator: Validator, mint: Callable[..., str], clock: FrozenClock
) -> None:
    header = "Bearer " + mint()
    clock.advance(900 + 29)
    assert validator.authenticate_sync(header).sub == "alice"  # within the 30 s leeway
    clock.advance(2)
    with pytest.raises(InvalidToken, match="expired"):
        validator.authenticate_sync(header)


def test_cached_token_still_expires(
    validator: Validator, mint: Callable[..., str], clock: FrozenClock
) -> None:
    header = "Bearer " + mint()
    validator.authenticate_sync(header)
    assert len(validator.cache) == 1
    clock.advance(3600)
    with pytest.raises(InvalidToken, match="expired"):
        validator.authenticate_sync(header)
    assert len(validator.cache) == 0


def test_wrong_audience_rejected(validator: Validator, mint: Callable[..., str]) -> None:
    with pytest.raises(InvalidToken, match="audience"):
        validator.authenticate_sync("Bearer " + mint(audience=("https://other.example",)))


def test_audience_list_containing_ours_accepted(
    validator: Validator, mint: Callable[..., str]
) -> None:
    header = "Bearer " + mint(audience=("https://other.example", AUDIENCE))
    assert validator.authenticate_sync(header).aud == ("https://other.example", AUDIENCE)


def test_wrong_issuer_rejected(
    validator: Validator, mint: Callable[..., str], clock: FrozenClock
) -> None:
    other = Validator(
        issuer="https://issuer.example/",
        audience=AUDIENCE,
        keys=validator.keys,
        revocations=validator.revocations,
        clock=clock,
    )
    with pytest.raises(InvalidToken, match="issuer"):
        other.authenticate_sync("Bearer " + mint())


def test_missing_scope_is_insufficient_scope(
    validator: Validator, mint: Callable[..., str]
) -> None:
    with pytest.raises(InsufficientScope) as caught:
        validator.authenticate_sync("Bearer " + mint(scopes=("read",)), frozenset({"write"}))
    assert caught.value.scope == "write"


def test_scope_checked_on_cache_hit_too(validator: Validator, mint: Callable[..., str]) -> None:
    header = "Bearer " + mint(scopes=("read",))
    validator.authenticate_sync(header, frozenset({"read"}))
    with pytest.raises(InsufficientScope):
        validator.authenticate_sync(header, frozenset({"admin"}))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (RevocationKind.JTI, None),
        (RevocationKind.SUBJECT, "alice"),
        (RevocationKind.SESSION, "session-1"),
        (RevocationKind.CLIENT, "client-1"),
    ],
)
async def test_revocation_applies_to_cached_tokens(
    validator: Validator,
    mint: Callable[..., str],
    revocations: MemoryRevocationStore,
    clock: FrozenClock,
    kind: str,
    value: str | None,
) -> None:
    header = "Bearer " + mint(session_id="session-1")
    token = await validator.authenticate(header)
    assert len(validator.cache) == 1
    await revocations.revoke(
        Revocation(
            kind,
            value or token.jti,
            None if kind == RevocationKind.JTI else clock() + 1,
            clock() + 3600,
        )
    )
    with pytest.raises(InvalidToken):
        await validator.authenticate(header)
    assert len(validator.cache) == 0


@pytest.mark.anyio
async def test_watermark_spares_tokens_issued_after_it(
    validator: Validator,
    mint: Callable[..., str],
    revocations: MemoryRevocationStore,
    clock: FrozenClock,
) -> None:
    before = "Bearer " + mint()
    clock.advance(0.5)  # iat has whole seconds: a token of the revocation's second is revoked
    await revocations.revoke(Revocation(RevocationKind.SUBJECT, "alice", clock(), clock() + 3600))
    clock.advance(1)
    after = "Bearer " + mint()
    with pytest.raises(InvalidToken, match="subject"):
        await validator.authenticate(before)
    assert (await validator.authenticate(after)).sub == "alice"


def test_cache_is_bounded(keyring: Keyring, clock: FrozenClock, mint: Callable[..., str]) -> None:
    from tokenward.guard import KeyringKeySource, RevocationMirror

    small = Validator(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=KeyringKeySource(keyring),
        revocations=RevocationMirror(),
        clock=clock,
        cache_size=3,
    )
    headers = ["Bearer " + mint(subject=f"user{i}") for i in range(5)]
    for header in headers:
        small.authenticate_sync(header)
    assert len(small.cache) == 3
    assert small.cache.get(headers[0]) is None
    assert small.cache.get(headers[4]) is not None


@pytest.mark.anyio
async def test_every_cache_fails_closed_on_a_stale_mirror(
    validator: Validator, mint: Callable[..., str], clock: FrozenClock
) -> None:
    from tokenward.core.errors import TemporarilyUnavailable

    raw = mint()
    await validator.authenticate("Bearer " + raw)
    await validator.inspect(raw)  # the introspection cache holds it too
    validator.revocations.fresh_until = clock() - 1
    with pytest.raises(TemporarilyUnavailable):
        validator.authenticate_sync("Bearer " + raw)
    with pytest.raises(TemporarilyUnavailable):
        await validator.inspect(raw)
