"""Certificate-bound access tokens at the validator (RFC 8705 §3): cnf.x5t#S256 must be the
thumbprint of the certificate the request came with, on a cold validation and on every hit."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tokenward.guard import InvalidToken, Validator
from tokenward.guard.validator import CERTIFICATE_MISMATCH, CERTIFICATE_MISSING

BOUND = "q3v0ZDyyqGEUXr1uMyXB0fSIg-PoJQvsGzvMw2zyBFk"
OTHER = "bm90LXRoZS1zYW1lLWNlcnRpZmljYXRlLXRodW1icHJ"


def test_bound_token_with_its_certificate(validator: Validator, mint: Callable[..., str]) -> None:
    header = "Bearer " + mint(cnf={"x5t#S256": BOUND})
    assert validator.authenticate_sync(header, certificate=BOUND).x5t_s256 == BOUND
    # The hit path compares again, and the plain cache never holds a bound token.
    assert validator.authenticate_sync(header, certificate=BOUND).sub == "alice"
    assert validator.cached(header) is None


@pytest.mark.parametrize(
    ("certificate", "message"), [(None, CERTIFICATE_MISSING), (OTHER, CERTIFICATE_MISMATCH)]
)
def test_bound_token_refused_cold_and_cached(
    validator: Validator, mint: Callable[..., str], certificate: str | None, message: str
) -> None:
    header = "Bearer " + mint(cnf={"x5t#S256": BOUND})
    with pytest.raises(InvalidToken, match=message):
        validator.authenticate_sync(header, certificate=certificate)
    validator.authenticate_sync(header, certificate=BOUND)  # now cached
    with pytest.raises(InvalidToken, match=message):
        validator.authenticate_sync(header, certificate=certificate)


@pytest.mark.anyio
async def test_async_path_enforces_the_binding(
    validator: Validator, mint: Callable[..., str]
) -> None:
    header = "Bearer " + mint(cnf={"x5t#S256": BOUND})
    with pytest.raises(InvalidToken, match=CERTIFICATE_MISSING):
        await validator.authenticate(header)
    assert (await validator.authenticate(header, certificate=BOUND)).x5t_s256 == BOUND
    with pytest.raises(InvalidToken, match=CERTIFICATE_MISMATCH):
        await validator.authenticate_request(header, certificate=OTHER)
    with pytest.raises(InvalidToken, match=CERTIFICATE_MISSING):
        await validator.authenticate(header)


def test_unbound_token_needs_no_certificate_and_ignores_one(
    validator: Validator, mint: Callable[..., str]
) -> None:
    header = "Bearer " + mint()
    assert validator.authenticate_sync(header).sub == "alice"
    assert validator.authenticate_sync(header, certificate=OTHER).sub == "alice"


@pytest.mark.anyio
async def test_introspection_view_shows_the_binding(
    validator: Validator, mint: Callable[..., str]
) -> None:
    token = await validator.inspect(mint(cnf={"x5t#S256": BOUND}))
    assert token.cnf == {"x5t#S256": BOUND}
