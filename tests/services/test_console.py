"""The console's lists: live sessions only, newest first; consents per user and client."""

from __future__ import annotations

from typing import Any, cast

import pytest

from tests.conftest import FrozenClock
from tokenward.core.records import ClientRecord, UserRecord
from tokenward.oauth.sessions import SessionManager
from tokenward.services.console import ConsoleQueries
from tokenward.services.factors import FactorCatalogue
from tokenward.store.memory import MemoryClientStore, MemoryUserStore
from tokenward.store.memory_factors import MemoryPasskeys, MemoryRecoveryCodes, MemoryTotpFactors
from tokenward.store.memory_flows import MemoryConsentStore, MemorySessionStore
from tokenward.tokens.key_manager import KeyManager

pytestmark = pytest.mark.anyio


class NoKeys:
    def managed_keys(self) -> list[Any]:
        return []


async def test_sessions_grants_and_users(clock: FrozenClock) -> None:
    users, sessions = MemoryUserStore(), MemorySessionStore()
    clients, consents = MemoryClientStore(), MemoryConsentStore()
    now = clock()
    alice = UserRecord("u1", "alice", "x", now, now)
    await users.put(alice)
    await clients.put(ClientRecord("web", "none", ("authorization_code",), frozenset(), now))
    await consents.grant("u1", "web", frozenset({"openid", "read"}))
    manager = SessionManager(sessions, users, clock)
    _secret, first = await manager.start(alice)
    clock.advance(10)
    _secret, second = await manager.start(alice)
    await manager.end(first.session_id)
    factors = FactorCatalogue(MemoryTotpFactors(), MemoryRecoveryCodes(), MemoryPasskeys())
    queries = ConsoleQueries(
        clients, users, sessions, consents, cast(KeyManager, NoKeys()), clock, factors=factors
    )

    assert [row["session_id"] for row in await queries.sessions()] == [second.session_id]
    assert await queries.grants() == [
        {
            "user_id": "u1",
            "username": "alice",
            "client_id": "web",
            "client_name": "",
            "scope": "openid read",
        }
    ]
    [user] = await queries.users()
    assert (user["username"], user["active_sessions"], user["admin"]) == ("alice", 1, False)
    assert (user["totp"], user["passkeys"]) == (False, 0)
    assert [client["client_id"] for client in await queries.clients()] == ["web"]
    assert queries.keys() == []
