"""The rotation rules every store applies (core/rotation.py), at their edges. The stores' own
contract (tests/store/test_grant_contract.py) checks that each backend follows them."""

from __future__ import annotations

from dataclasses import replace

from tokenward.core.records import FamilyRecord, RefreshRecord
from tokenward.core.rotation import ended, within_grace

NOW = 1_800_000_000.0
FAMILY = FamilyRecord("f", "c", "u", frozenset({"read"}), (), NOW - 10, NOW + 100)
TOKEN = RefreshRecord("d", "f", NOW - 10, NOW + 50)


def test_a_live_token_of_a_live_family_has_not_ended() -> None:
    assert not ended(FAMILY, TOKEN, NOW)


def test_revocation_or_either_expiry_ends_it_from_that_instant() -> None:
    assert ended(replace(FAMILY, revoked_at=NOW - 1), TOKEN, NOW)
    assert ended(FAMILY, TOKEN, TOKEN.expires_at)
    assert not ended(FAMILY, TOKEN, TOKEN.expires_at - 0.001)
    assert ended(FAMILY, replace(TOKEN, expires_at=NOW + 500), FAMILY.expires_at)


def test_grace_covers_a_repeat_up_to_its_edge_only_while_the_successor_is_current() -> None:
    rotated = replace(TOKEN, rotated_at=NOW, successor_digest="d2")
    assert within_grace(rotated, True, NOW + 5, grace=5)
    assert not within_grace(rotated, True, NOW + 5.001, grace=5)
    assert not within_grace(rotated, False, NOW, grace=5)  # the successor rotated since


def test_no_grace_without_a_rotation_or_with_a_zero_grace() -> None:
    assert not within_grace(TOKEN, True, NOW, grace=5)  # never rotated: not a repeat
    rotated = replace(TOKEN, rotated_at=NOW, successor_digest="d2")
    assert not within_grace(rotated, True, NOW, grace=0)  # even at the same instant
