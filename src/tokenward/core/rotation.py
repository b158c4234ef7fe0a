"""The two rules of refresh-token rotation that every store applies, whatever it stores in:
when a token rotates nothing at all, and when a repeat of a rotated token is forgiven."""

from __future__ import annotations

from tokenward.core.records import FamilyRecord, RefreshRecord


def ended(family: FamilyRecord, token: RefreshRecord, now: float) -> bool:
    """A revoked family, or an expired token or family, rotates nothing."""
    return family.revoked_at is not None or token.expires_at <= now or family.expires_at <= now


def within_grace(token: RefreshRecord, successor_current: bool, now: float, grace: float) -> bool:
    """Whether a repeat of the already rotated `token` is forgiven (its successor, still the
    family's current token, is handed out again) rather than judged reuse (the family revoked):
    only the immediate predecessor, only within `grace` seconds of its rotation."""
    return (
        successor_current  # the successor is still the family's current token
        and token.rotated_at is not None
        and grace > 0  # no grace configured: every repeat is reuse, even a simultaneous one
        and now - token.rotated_at <= grace
    )
