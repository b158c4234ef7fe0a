"""The acr levels' order and the amr each implies."""

from __future__ import annotations

from tokenward.core.assurance import (
    MFA,
    PASSKEY,
    PHR,
    PWD,
    TOTP,
    amr_of,
    best_reachable,
    floor_of,
    requested,
    satisfies,
    strongest,
)


def test_levels_are_ordered() -> None:
    assert satisfies(PHR, MFA)
    assert satisfies(MFA, MFA)
    assert satisfies(MFA, PWD)
    assert not satisfies(PWD, MFA)
    assert not satisfies(None, PWD)
    assert not satisfies("other", PWD)
    assert satisfies(None, None)


def test_requested_takes_the_weakest_known_value() -> None:
    assert requested(f"{PHR} {MFA}") == MFA
    assert requested("urn:other:gold " + PHR) == PHR
    assert requested("urn:other:gold") is None
    assert requested(None) is None


def test_amr_follows_the_level() -> None:
    assert amr_of(PWD) == ("pwd",)
    assert amr_of(MFA) == ("pwd", "otp")
    assert amr_of(PHR) == ("hwk", "user")
    assert amr_of("urn:other") is None
    assert amr_of(None) is None


def test_what_a_user_can_reach_and_must_use() -> None:
    assert best_reachable(frozenset()) == PWD
    assert floor_of(frozenset()) is None
    assert best_reachable(frozenset({TOTP})) == MFA
    assert floor_of(frozenset({TOTP})) == MFA
    assert best_reachable(frozenset({TOTP, PASSKEY})) == PHR
    assert strongest(None, MFA, PWD) == MFA
    assert strongest() is None
