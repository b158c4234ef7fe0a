"""UserInfo claims: `sub` always, profile and email claims only under their scopes, none for a
disabled or deleted user."""

from __future__ import annotations

import json

import pytest

from tokenward.core.claims import AccessToken
from tokenward.core.records import UserRecord
from tokenward.services.userinfo import UserClaims
from tokenward.store.memory import MemoryUserStore

pytestmark = pytest.mark.anyio
CLAIMS = {"name": "Alice A.", "email": "alice@example.com", "roles": ["x"]}


def token(sub: str, scope: str) -> AccessToken:
    return AccessToken("iss", sub, ("aud",), "web", frozenset(scope.split()), 2, 1, "j")


async def test_claims_follow_the_scopes() -> None:
    users = MemoryUserStore()
    await users.put(UserRecord("u1", "alice", "x", 0.0, 0.0, claims=json.dumps(CLAIMS)))
    await users.put(UserRecord("u2", "bob", "x", 0.0, 0.0, disabled=True))
    claims = UserClaims(users)
    assert await claims.for_token(token("u1", "openid")) == {"sub": "u1"}
    assert await claims.for_token(token("u1", "openid profile")) == {
        "sub": "u1",
        "name": "Alice A.",
        "preferred_username": "alice",
    }
    assert await claims.for_token(token("u1", "openid email")) == {
        "sub": "u1",
        "email": "alice@example.com",
    }
    assert await claims.for_token(token("u2", "openid")) is None
    assert await claims.for_token(token("u3", "openid")) is None
