"""What the admin console and the admin API list: clients, users, sessions, consents, keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tokenward.core.ports import ClientStore, ConsentStore, SessionStore, UserStore
from tokenward.core.records import SessionRecord
from tokenward.services.factors import FactorCatalogue
from tokenward.services.views import client_view, is_admin
from tokenward.tokens.key_manager import KeyManager

MAX_LISTED = 500  # rows per list page


class ConsoleQueries:
    def __init__(
        self,
        clients: ClientStore,
        users: UserStore,
        sessions: SessionStore,
        consents: ConsentStore,
        keys: KeyManager,
        clock: Callable[[], float],
        *,
        factors: FactorCatalogue,
    ) -> None:
        self._factors = factors
        self._clients = clients
        self._users = users
        self._sessions = sessions
        self._consents = consents
        self._keys = keys
        self._clock = clock

    async def users(self) -> list[dict[str, Any]]:
        rows = []
        for user in list(await self._users.list_all())[:MAX_LISTED]:
            sessions = await self._sessions.for_user(user.user_id)
            factors = await self._factors.summary(user.user_id)
            rows.append(
                {
                    "user_id": user.user_id,
                    "username": user.username,
                    "disabled": user.disabled,
                    "admin": is_admin(user),
                    "active_sessions": sum(1 for s in sessions if _live(s, self._clock())),
                    "totp": factors.totp,
                    "passkeys": len(factors.passkeys),
                }
            )
        return rows

    async def user_factors(self, user_id: str) -> dict[str, Any] | None:
        """The user's second factors (never a secret: which, how many, when); None: no user."""
        if await self._users.get(user_id) is None:
            return None
        return {"user_id": user_id, **(await self._factors.summary(user_id)).as_dict()}

    async def sessions(self) -> list[dict[str, Any]]:
        now = self._clock()
        rows: list[dict[str, Any]] = []
        for user in list(await self._users.list_all())[:MAX_LISTED]:
            for session in await self._sessions.for_user(user.user_id):
                if _live(session, now):
                    rows.append(
                        {
                            "session_id": session.session_id,
                            "user_id": user.user_id,
                            "username": user.username,
                            "auth_time": session.auth_time,
                            "expires_at": session.expires_at,
                        }
                    )
        return sorted(rows, key=lambda row: -row["auth_time"])[:MAX_LISTED]

    async def grants(self) -> list[dict[str, Any]]:
        """What users consented to, per client (the consent store has no listing: users by
        clients)."""
        clients = list(await self._clients.list_all())[:MAX_LISTED]
        rows = []
        for user in list(await self._users.list_all())[:MAX_LISTED]:
            for client in clients:
                scopes = await self._consents.granted(user.user_id, client.client_id)
                if scopes:
                    rows.append(
                        {
                            "user_id": user.user_id,
                            "username": user.username,
                            "client_id": client.client_id,
                            "client_name": client.name,  # what the user saw on consent
                            "scope": " ".join(sorted(scopes)),
                        }
                    )
        return rows[:MAX_LISTED]

    def keys(self) -> list[dict[str, Any]]:
        return [
            {
                "kid": key.kid,
                "alg": key.alg.name,
                "state": key.state.value,
                "created_at": key.created_at,
                "activated_at": key.activated_at,
                "retiring_at": key.retiring_at,
                "retired_at": key.retired_at,
            }
            for key in self._keys.managed_keys()
        ]

    async def clients(self) -> list[dict[str, Any]]:
        """Every client; a portal app's with its developer's username beside the owner id."""
        clients = list(await self._clients.list_all())[:MAX_LISTED]
        owners = {client.owner for client in clients if client.owner is not None}
        names = {}
        for owner in owners:
            user = await self._users.get(owner)
            names[owner] = user.username if user is not None else None
        return [
            {**client_view(client), "owner_name": names.get(client.owner or "")}
            for client in clients
        ]


def _live(session: SessionRecord, now: float) -> bool:
    return session.ended_at is None and session.expires_at > now
