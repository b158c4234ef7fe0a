"""Users and their sessions, changed by the operator: create, passwords, roles, sign-outs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tokenward.core.ports import Conflict, SessionStore, UserStore
from tokenward.core.records import UserRecord
from tokenward.core.signals import (
    ADMIN,
    CREDENTIAL_CHANGE,
    TOKEN_CLAIMS_CHANGE,
    NullSignals,
    SecuritySignal,
    SignalSink,
)
from tokenward.oauth.sessions import SessionManager
from tokenward.services.errors import AdminError
from tokenward.services.passwords import PASSWORDS, check_password
from tokenward.services.revoking import Watermarks
from tokenward.services.views import ADMIN_ROLE


class UserAdmin:
    def __init__(
        self,
        users: UserStore,
        sessions: SessionStore,
        session_manager: SessionManager,
        watermarks: Watermarks,
        clock: Callable[[], float],
        signals: SignalSink | None = None,
    ) -> None:
        """`signals`: told of credential and claim changes (continuous access evaluation)."""
        self._signals = signals or NullSignals()
        self._users = users
        self._sessions = sessions
        self._session_manager = session_manager
        self._watermarks = watermarks
        self._clock = clock

    async def get(self, user_id: str) -> UserRecord | None:
        return await self._users.get(user_id)

    async def by_username(self, username: str) -> UserRecord | None:
        return await self._users.by_username(username)

    async def create_user(self, username: str, password: str) -> dict[str, Any]:
        check_password(password)
        now = self._clock()
        user = UserRecord(str(uuid.uuid4()), username, PASSWORDS.hash(password), now, now)
        try:
            await self._users.put(user)
        except Conflict:
            raise AdminError(f"username {username!r} is taken") from None
        return {"user_id": user.user_id, "username": user.username}

    async def set_password(self, username: str, password: str) -> dict[str, Any]:
        check_password(password)
        user = await self._users.by_username(username)
        if user is None:
            raise AdminError(f"no user {username!r}")
        now = self._clock()
        await self._users.put(
            replace(user, password_hash=PASSWORDS.hash(password), password_changed_at=now)
        )
        # A password change ends every existing token.
        await self._watermarks.revoke(subject=user.user_id)
        self._signals.emit(
            SecuritySignal(
                CREDENTIAL_CHANGE,
                now,
                user.user_id,
                initiator=ADMIN,
                details=(("credential_type", "password"), ("change_type", "update")),
            )
        )
        return {"user_id": user.user_id, "username": username, "tokens_revoked_before": now}

    async def set_admin(self, username: str, admin: bool) -> dict[str, Any]:
        user = await self._users.by_username(username)
        if user is None:
            raise AdminError(f"no user {username!r}")
        claims = json.loads(user.claims or "{}")
        roles = [role for role in claims.get("roles", []) if role != ADMIN_ROLE]
        claims["roles"] = [*roles, ADMIN_ROLE] if admin else roles
        await self._users.put(replace(user, claims=json.dumps(claims)))
        self._signals.emit(
            SecuritySignal(
                TOKEN_CLAIMS_CHANGE,
                self._clock(),
                user.user_id,
                initiator=ADMIN,
                details=(("claims", {"roles": claims["roles"]}),),
            )
        )
        return {"user_id": user.user_id, "username": username, "admin": admin}

    async def enable(self, user: UserRecord) -> None:
        """Enable a disabled user again (the demo's accounts on every start)."""
        if user.disabled:
            await self._users.put(replace(user, disabled=False))

    async def end_session(self, session_id: str) -> dict[str, Any]:
        """End a browser session and revoke every token issued under it (the `sid` watermark)."""
        if await self._session_manager.end(session_id) is None:
            raise AdminError(f"no session {session_id!r}")
        return await self._watermarks.revoke(session=session_id)

    async def force_logout(self, user_id: str) -> dict[str, Any]:
        """End every session of the user and revoke every token issued to them so far."""
        if await self._users.get(user_id) is None:
            raise AdminError(f"no user {user_id!r}")
        for session in await self._sessions.for_user(user_id):
            if session.ended_at is None:
                await self._session_manager.end(session.session_id)
        return await self._watermarks.revoke(subject=user_id)

    async def set_user_disabled(self, user_id: str, disabled: bool) -> dict[str, Any]:
        user = await self._users.get(user_id)
        if user is None:
            raise AdminError(f"no user {user_id!r}")
        await self._users.put(replace(user, disabled=disabled))
        if disabled:
            await self.force_logout(user_id)
        return {"user_id": user_id, "username": user.username, "disabled": disabled}
