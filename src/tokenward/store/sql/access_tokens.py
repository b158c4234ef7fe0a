"""AccessTokenStore on SQL: opaque access tokens by digest, as a JSON document of their claims.

`get_sync` always answers None: a SQL backend cannot answer without I/O, so the validator's
synchronous fast path falls through to `get` (the Protocol allows exactly this).

Every field comes back as it went in (aud a tuple, scopes a frozenset, cnf/extra read-only
mappings). Values nested inside cnf/extra come back as JSON types: a tuple there returns a list.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenward.core.claims import AccessToken
from tokenward.store.sql.engine import reading
from tokenward.store.sql.models import AccessTokenRow, upsert

# Every this many saves (per process) also deletes expired rows, through the expires_at index,
# so the table cannot grow without bound and no separate janitor is needed.
PURGE_EVERY = 1024


class SqlAccessTokenStore:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Callable[[], float] = time.time
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._saves = 0

    async def save(self, digest: str, token: AccessToken) -> None:
        values = {"digest": digest, "token": document_of(token), "expires_at": float(token.exp)}
        self._saves += 1
        async with self._sessions.begin() as session:
            await session.execute(upsert(session, AccessTokenRow, [values], "digest"))
            if self._saves % PURGE_EVERY == 0:
                await session.execute(
                    delete(AccessTokenRow).where(AccessTokenRow.expires_at <= self._clock())
                )

    async def get(self, digest: str) -> AccessToken | None:
        async with self._sessions() as session:
            await reading(session)
            document = await session.scalar(
                select(AccessTokenRow.token).where(
                    AccessTokenRow.digest == digest,
                    AccessTokenRow.expires_at > self._clock(),  # expired at exp, as in memory
                )
            )
        return None if document is None else token_of(document)

    def get_sync(self, digest: str) -> AccessToken | None:
        """Always None: answering would need database I/O (see the module docstring)."""
        return None

    async def delete(self, digest: str) -> bool:
        async with self._sessions.begin() as session:
            # RETURNING rather than rowcount: typed, and exact on both drivers.
            gone = await session.scalar(
                delete(AccessTokenRow)
                .where(AccessTokenRow.digest == digest)
                .returning(AccessTokenRow.digest)
            )
            return gone is not None


def document_of(token: AccessToken) -> dict[str, Any]:
    return {
        "iss": token.iss,
        "sub": token.sub,
        "aud": list(token.aud),
        "client_id": token.client_id,
        "scopes": sorted(token.scopes),
        "exp": token.exp,
        "iat": token.iat,
        "jti": token.jti,
        "nbf": token.nbf,
        "sid": token.sid,
        "auth_time": token.auth_time,
        "acr": token.acr,
        "cnf": None if token.cnf is None else dict(token.cnf),
        "extra": dict(token.extra),
    }


def token_of(document: Mapping[str, Any]) -> AccessToken:
    # Built field by field rather than through access_token_from_claims: that parser validates
    # wire claims (a "scope" string, non-empty strings) and would not round-trip every value
    # the strategies can store; this is our own document, written by document_of above.
    cnf = document["cnf"]
    return AccessToken(
        iss=document["iss"],
        sub=document["sub"],
        aud=tuple(document["aud"]),
        client_id=document["client_id"],
        scopes=frozenset(document["scopes"]),
        exp=document["exp"],
        iat=document["iat"],
        jti=document["jti"],
        nbf=document["nbf"],
        sid=document["sid"],
        auth_time=document["auth_time"],
        acr=document["acr"],
        cnf=None if cnf is None else MappingProxyType(cnf),
        extra=MappingProxyType(document["extra"]),
    )
