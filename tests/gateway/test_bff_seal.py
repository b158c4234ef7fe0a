"""The sealing of browser-mode sessions: a key and a cipher derived from the cookie alone."""

from __future__ import annotations

from tokenward.gateway.bff_seal import (
    MAX_SECRET_LENGTH,
    PendingLogin,
    Sealed,
    SessionRecord,
    new_secret,
)

RECORD = SessionRecord("access", "refresh", 10.0, 5.0, "csrf", 100.0)


def test_the_cookie_is_256_random_bits_and_derives_a_stable_unrelated_key() -> None:
    cookie = new_secret()
    assert len(cookie) == 43  # 32 bytes, base64url without padding
    assert new_secret() != cookie
    assert Sealed(cookie).key == Sealed(cookie).key
    assert Sealed(cookie).key != Sealed(new_secret()).key
    assert cookie not in Sealed(cookie).key
    assert len(Sealed(cookie).key) == 64


def test_a_record_opens_only_under_its_cookie_and_unaltered() -> None:
    cookie = new_secret()
    blob = Sealed(cookie).seal(RECORD)
    assert Sealed(cookie).session(blob) == RECORD
    assert Sealed(new_secret()).session(blob) is None
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    assert Sealed(cookie).session(tampered) is None
    assert Sealed(cookie).session(b"short") is None
    assert Sealed(cookie).session(None) is None
    assert Sealed(cookie).seal(RECORD) != blob  # a fresh nonce each time


def test_a_pending_sign_in_is_not_a_session_and_back() -> None:
    state = new_secret()
    pending = PendingLogin("verifier", "/home", 600.0)
    blob = Sealed(state).seal(pending)
    assert Sealed(state).pending(blob) == pending
    assert Sealed(state).session(blob) is None  # other fields: refused, not a crash


def test_missing_or_oversized_cookies_are_refused_before_any_work() -> None:
    assert Sealed.of(None) is None
    assert Sealed.of("") is None
    assert Sealed.of("x" * (MAX_SECRET_LENGTH + 1)) is None
    assert Sealed.of("x" * MAX_SECRET_LENGTH) is not None
