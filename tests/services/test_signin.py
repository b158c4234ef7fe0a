"""Password sign-in as a service: one answer for unknown user and wrong password, failures
counted and told to the monitor, the throttle's refusal, a session for the right password."""

from __future__ import annotations

import pytest

from tests.conftest import FrozenClock
from tokenward.core.events import AuthEvent
from tokenward.core.records import UserRecord
from tokenward.core.throttle import Limit, SignInLimits
from tokenward.oauth.sessions import SessionManager
from tokenward.services.passwords import PASSWORDS
from tokenward.services.signin import PasswordSignIn
from tokenward.store.memory import MemoryUserStore
from tokenward.store.memory_flows import MemorySessionStore
from tokenward.store.memory_signin_throttle import MemorySignInThrottle

pytestmark = pytest.mark.anyio


class Events:
    def __init__(self) -> None:
        self.seen: list[AuthEvent] = []

    def emit(self, event: AuthEvent) -> None:
        self.seen.append(event)


class Failures:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def sign_in_failed(self, reason: str) -> None:
        self.reasons.append(reason)


async def service(clock: FrozenClock) -> tuple[PasswordSignIn, Events, Failures]:
    users = MemoryUserStore()
    now = clock()
    await users.put(UserRecord("u1", "alice", PASSWORDS.hash("correct horse"), now, now))
    throttle = MemorySignInThrottle(clock, SignInLimits(pair=Limit(2, 300.0)))
    sessions = SessionManager(MemorySessionStore(), users, clock)
    events, failures = Events(), Failures()
    return PasswordSignIn(users, throttle, sessions, events, failures, clock), events, failures


async def test_the_right_password_starts_a_session(clock: FrozenClock) -> None:
    sign_in, events, failures = await service(clock)
    result = await sign_in.sign_in("alice", "correct horse", "192.0.2.1")
    assert result.session is not None
    assert result.session.user.username == "alice"
    assert result.cookie_secret
    assert (events.seen, failures.reasons) == ([], [])


async def test_unknown_user_and_wrong_password_get_one_answer(clock: FrozenClock) -> None:
    sign_in, events, failures = await service(clock)
    wrong = await sign_in.sign_in("alice", "guess", "192.0.2.1")
    unknown = await sign_in.sign_in("mallory", "guess", "192.0.2.1")
    assert (
        (wrong.status, wrong.error)
        == (unknown.status, unknown.error)
        == (
            401,
            "Wrong username or password.",
        )
    )
    assert failures.reasons == ["wrong_credentials"] * 2
    assert [(e.ip, e.username) for e in events.seen] == [
        ("192.0.2.1", "alice"),
        ("192.0.2.1", "mallory"),
    ]


async def test_the_throttle_refuses_even_the_right_password(clock: FrozenClock) -> None:
    sign_in, _events, failures = await service(clock)
    for _ in range(2):
        await sign_in.sign_in("alice", "guess", "192.0.2.1")
    refused = await sign_in.sign_in("alice", "correct horse", "192.0.2.1")
    assert refused.status == 429
    assert refused.session is None
    assert failures.reasons[-1] == "throttled"
