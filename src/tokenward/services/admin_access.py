"""Who may administer: a console user with the admin role, or a bearer token with the scope
`tokenward:admin` whose subject is such a user or a client registered with that scope."""

from __future__ import annotations

from tokenward.core.claims import AccessToken
from tokenward.core.ports import ClientStore, UserStore
from tokenward.services.views import ADMIN_ROLE, is_admin

ADMIN_SCOPE = ADMIN_ROLE


class AdminAccess:
    def __init__(self, clients: ClientStore, users: UserStore) -> None:
        self._clients = clients
        self._users = users

    async def api_actor(self, token: AccessToken) -> str | None:
        """`user:<name>` or `client:<id>` when the token's subject may administer, else None."""
        if ADMIN_SCOPE not in token.scopes:
            return None
        if token.sub == token.client_id:  # client credentials: the client acts for itself
            client = await self._clients.get(token.client_id)
            ok = client is not None and client.active and ADMIN_SCOPE in client.scopes
            return f"client:{token.client_id}" if ok else None
        user = await self._users.get(token.sub)
        if user is None or user.disabled or not is_admin(user):
            return None
        return f"user:{user.username}"
