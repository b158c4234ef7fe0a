"""Browser sessions: a 256-bit cookie secret stored as a digest, and a public `sid` for tokens."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from tokenward.core.ports import SessionStore, UserStore
from tokenward.core.records import SessionRecord, UserRecord

SESSION_LIFETIME = 12 * 3600


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True, slots=True)
class ActiveSession:
    record: SessionRecord
    user: UserRecord


class SessionManager:
    def __init__(
        self,
        sessions: SessionStore,
        users: UserStore,
        clock: Callable[[], float] = time.time,
        lifetime: int = SESSION_LIFETIME,
    ) -> None:
        self.sessions = sessions
        self._users = users
        self._clock = clock
        self._lifetime = lifetime

    async def start(self, user: UserRecord, acr: str | None = None) -> tuple[str, SessionRecord]:
        """A new session; returns (cookie secret, record)."""
        now = self._clock()
        secret = secrets.token_urlsafe(32)
        record = SessionRecord(
            session_id=secrets.token_urlsafe(16),
            secret_digest=secret_digest(secret),
            user_id=user.user_id,
            auth_time=now,
            expires_at=now + self._lifetime,
            acr=acr,
        )
        await self.sessions.put(record)
        return secret, record

    async def start_for(
        self, user_id: str, acr: str, replacing: str | None = None
    ) -> tuple[str, ActiveSession] | None:
        """A new session at `acr` for an enabled user (a second factor or a passkey sign-in);
        `replacing`: the session it supersedes (the password-only one), ended now. A new
        session id and cookie, not the old one raised: nothing learnt before the factor is
        worth anything after it."""
        user = await self._users.get(user_id)
        if user is None or user.disabled:
            return None
        secret, record = await self.start(user, acr)
        if replacing is not None:
            await self.end(replacing)
        return secret, ActiveSession(record, user)

    def recent(self, session: ActiveSession, seconds: float) -> bool:
        """Signed in within the last `seconds` (the account page asks for a recent sign-in)."""
        return self._clock() - session.record.auth_time <= seconds

    async def current(self, cookie: str | None) -> ActiveSession | None:
        """The live session behind a cookie: not ended, not expired, user enabled and unchanged."""
        if not cookie or len(cookie) > 128:
            return None
        record = await self.sessions.by_secret(secret_digest(cookie))
        now = self._clock()
        if record is None or record.ended_at is not None or record.expires_at <= now:
            return None
        user = await self._users.get(record.user_id)
        # A password change after login ends the session too (it revoked the tokens already).
        if user is None or user.disabled or user.password_changed_at > record.auth_time:
            return None
        return ActiveSession(record, user)

    async def end(self, session_id: str) -> SessionRecord | None:
        return await self.sessions.end(session_id, self._clock())
