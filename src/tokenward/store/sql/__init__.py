"""Durable SQL backends of the store Protocols: SQLite (embedded default) and PostgreSQL.

engine = create_engine("sqlite+aiosqlite:///var/tokenward.db")
await migrate(engine)
sessions = session_factory(engine)
users = SqlUserStore(sessions)
...
await engine.dispose()
"""

from __future__ import annotations

from tokenward.store.sql.access_tokens import SqlAccessTokenStore
from tokenward.store.sql.clients import SqlClientStore
from tokenward.store.sql.codes import SqlCodeStore
from tokenward.store.sql.consents import SqlConsentStore
from tokenward.store.sql.devices import SqlDeviceStore
from tokenward.store.sql.engine import alembic_config, create_engine, migrate, session_factory
from tokenward.store.sql.factors import SqlPasskeys, SqlRecoveryCodes, SqlTotpFactors
from tokenward.store.sql.grants import SqlGrantStore
from tokenward.store.sql.group_commit import GroupCommit
from tokenward.store.sql.keys import SqlKeyStore
from tokenward.store.sql.participants import SqlSessionParticipants
from tokenward.store.sql.pg_grants import (
    PgAccessTokenStore,
    PgCodeStore,
    PgDeviceStore,
    PgGrantStore,
    PgUserStore,
)
from tokenward.store.sql.pushed_requests import SqlPushedRequestStore
from tokenward.store.sql.registration import SqlInitialAccessTokens, SqlRegistrationAccessTokens
from tokenward.store.sql.replay import SqlReplayCache
from tokenward.store.sql.revocations import SqlRevocationStore
from tokenward.store.sql.sessions import SqlSessionStore
from tokenward.store.sql.signin_throttle import SqlSignInThrottle
from tokenward.store.sql.sqlite_access_tokens import SqliteAccessTokenStore
from tokenward.store.sql.sqlite_clients import SqliteClientStore
from tokenward.store.sql.sqlite_devices import SqliteDeviceStore
from tokenward.store.sql.sqlite_grants import SqliteCodeStore, SqliteGrantStore, SqliteUserStore
from tokenward.store.sql.sqlite_pushed import SqlitePushedRequestStore
from tokenward.store.sql.sqlite_replay import SqliteReplayCache
from tokenward.store.sql.sqlite_revocations import SqliteRevocationStore
from tokenward.store.sql.sqlite_writer import SqliteWriter, sqlite_file
from tokenward.store.sql.ssf import SqlSetQueue, SqlSsfStreams
from tokenward.store.sql.users import SqlUserStore

__all__ = [
    "GroupCommit",
    "PgAccessTokenStore",
    "PgCodeStore",
    "PgDeviceStore",
    "PgGrantStore",
    "PgUserStore",
    "SqlAccessTokenStore",
    "SqlClientStore",
    "SqlCodeStore",
    "SqlConsentStore",
    "SqlDeviceStore",
    "SqlGrantStore",
    "SqlInitialAccessTokens",
    "SqlKeyStore",
    "SqlPasskeys",
    "SqlPushedRequestStore",
    "SqlRecoveryCodes",
    "SqlRegistrationAccessTokens",
    "SqlReplayCache",
    "SqlRevocationStore",
    "SqlSessionParticipants",
    "SqlSessionStore",
    "SqlSetQueue",
    "SqlSignInThrottle",
    "SqlSsfStreams",
    "SqlTotpFactors",
    "SqlUserStore",
    "SqliteAccessTokenStore",
    "SqliteClientStore",
    "SqliteCodeStore",
    "SqliteDeviceStore",
    "SqliteGrantStore",
    "SqlitePushedRequestStore",
    "SqliteReplayCache",
    "SqliteRevocationStore",
    "SqliteUserStore",
    "SqliteWriter",
    "alembic_config",
    "create_engine",
    "migrate",
    "session_factory",
    "sqlite_file",
]
