"""The claims UserInfo returns (OIDC Core §5.3): `sub`, and the profile and email claims the
token's scopes allow, from the user's stored claims."""

from __future__ import annotations

from typing import Any

import orjson

from tokenward.core.claims import AccessToken
from tokenward.core.ports import UserStore

PROFILE_CLAIMS = {
    "profile": ("name", "preferred_username", "given_name", "family_name", "locale"),
    "email": ("email", "email_verified"),
}


class UserClaims:
    def __init__(self, users: UserStore) -> None:
        self._users = users

    async def for_token(self, token: AccessToken) -> dict[str, Any] | None:
        """None when the token's user no longer exists or is disabled."""
        user = await self._users.get(token.sub)
        if user is None or user.disabled:
            return None
        stored: dict[str, Any] = orjson.loads(user.claims or "{}")
        stored.setdefault("preferred_username", user.username)
        claims: dict[str, Any] = {"sub": user.user_id}
        for scope, names in PROFILE_CLAIMS.items():
            if scope in token.scopes:
                claims.update({name: stored[name] for name in names if name in stored})
        return claims
