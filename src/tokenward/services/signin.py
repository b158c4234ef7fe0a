"""Password sign-in: throttled, one message for unknown user and wrong password, failures told
to the monitor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from argon2.exceptions import InvalidHashError, VerificationError

from tokenward.core.assurance import PWD
from tokenward.core.events import LOGIN_FAILED, AuthEvent
from tokenward.core.ports import UserStore
from tokenward.core.records import UserRecord
from tokenward.core.throttle import SignInThrottle
from tokenward.oauth.sessions import ActiveSession, SessionManager
from tokenward.services.passwords import PASSWORDS

# A real argon2 hash to verify against for unknown users, so both paths cost the same.
_DUMMY_HASH = PASSWORDS.hash("tokenward-timing-equaliser")


class EventSink(Protocol):
    def emit(self, event: AuthEvent) -> None:
        """Take the event without blocking (the monitor)."""


class FailureCount(Protocol):
    def sign_in_failed(self, reason: str) -> None:
        """Count one failed sign-in by reason (the server's metrics)."""


@dataclass(frozen=True, slots=True)
class SignIn:
    session: ActiveSession | None = None
    cookie_secret: str | None = None
    error: str | None = None
    status: int = 200


class PasswordSignIn:
    def __init__(
        self,
        users: UserStore,
        throttle: SignInThrottle,
        sessions: SessionManager,
        events: EventSink,
        failures: FailureCount,
        clock: Callable[[], float],
    ) -> None:
        self._users = users
        self._throttle = throttle
        self._sessions = sessions
        # The objects, not their bound methods: tests replace `emit` on the monitor.
        self._events = events
        self._failures = failures
        self._clock = clock

    async def _verified_user(self, username: str, password: str) -> UserRecord | None:
        user = await self._users.by_username(username)
        try:
            PASSWORDS.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        return user if user is not None and not user.disabled else None

    async def sign_in(self, username: str, password: str, ip: str) -> SignIn:
        """Throttled per (username, IP), per IP and per username (core/throttle.py); one message
        for unknown user and wrong password."""
        attempt = await self._throttle.attempt(username, ip)
        if attempt.wait is not None:
            self.report_failure(ip, username, "throttled")
            return SignIn(
                error=f"Too many failed sign-in attempts. Try again in {attempt.wait} seconds.",
                status=429,
            )
        user = await self._verified_user(username, password)
        if user is None:
            self.report_failure(ip, username, "wrong_credentials")
            return SignIn(error="Wrong username or password.", status=401)
        await self._throttle.succeeded(attempt)
        secret, record = await self._sessions.start(user, PWD)
        return SignIn(ActiveSession(record, user), secret)

    def report_failure(self, ip: str, username: str, reason: str) -> None:
        """Tell the monitor (bursts of failed sign-ins from one address) and the metrics; never
        blocks. Also for the second factor's failures (server/routes/factors.py)."""
        self._failures.sign_in_failed(reason)
        event = AuthEvent(self._clock(), LOGIN_FAILED, ip, username=username[:64], reason=reason)
        self._events.emit(event)
