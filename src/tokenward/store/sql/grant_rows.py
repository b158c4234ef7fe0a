"""The rows of store/sql/models.py that the token endpoint reads on every refresh and code
exchange, as plain SQL and plain tuples: a grant family, its refresh tokens, an authorization
code, a device authorization and the user.

Shared by the stores that skip the ORM on that path, SQLite's (store/sql/sqlite_grants.py) and
PostgreSQL's (store/sql/pg_grants.py), so both read the columns in one order and build the
same records. `mark` is the driver's placeholder: `?` for sqlite3, `$1` for asyncpg.
"""

from __future__ import annotations

from typing import Any

from tokenward.core.records import (
    CodeRecord,
    DeviceRecord,
    FamilyRecord,
    RefreshRecord,
    UserRecord,
)
from tokenward.store.sql.models import load_strings

TOKEN = ("digest", "family_id", "created_at", "expires_at", "rotated_at", "successor_digest")
FAMILY = (
    "family_id",
    "client_id",
    "user_id",
    "scopes",
    "audience",
    "created_at",
    "expires_at",
    "session_id",
    "auth_time",
    "acr",
    "dpop_jkt",
    "revoked_at",
)
CODE = (
    "digest",
    "client_id",
    "redirect_uri",
    "code_challenge",
    "scopes",
    "audience",
    "user_id",
    "session_id",
    "auth_time",
    "expires_at",
    "nonce",
    "acr",
    "dpop_jkt",
    "redirect_uri_given",
    "consumed_at",
    "family_id",
    "access_jti",
    "access_exp",
    "replayed_at",
)
DEVICE = (  # in DeviceRecord's order; `poll_interval` is its `interval`
    "device_digest",
    "user_code",
    "client_id",
    "scopes",
    "audience",
    "created_at",
    "expires_at",
    "poll_interval",
    "status",
    "last_poll_at",
    "user_id",
    "session_id",
    "auth_time",
    "acr",
    "acr_values",
)
USER = (
    "user_id",
    "username",
    "password_hash",
    "created_at",
    "password_changed_at",
    "disabled",
    "claims",
)


def joined_query(mark: str) -> str:
    """The refresh token whose digest is `mark` and its family, in one SELECT."""
    tokens = ", ".join(f"t.{column}" for column in TOKEN)
    families = ", ".join(f"f.{column}" for column in FAMILY)
    return (
        f"SELECT {tokens}, {families} FROM refresh_tokens AS t"  # noqa: S608 - names above
        f" JOIN grant_families AS f ON f.family_id = t.family_id WHERE t.digest = {mark}"
    )


def device_query(mark: str) -> str:
    """The device authorization whose device-code digest is `mark`."""
    return f"SELECT {', '.join(DEVICE)} FROM device_codes WHERE device_digest = {mark}"  # noqa: S608


def user_query(mark: str) -> str:
    return f"SELECT {', '.join(USER)} FROM users WHERE user_id = {mark}"  # noqa: S608


def token_of(row: Any) -> RefreshRecord:
    return RefreshRecord(*row)


def family_of(row: Any) -> FamilyRecord:
    (family_id, client_id, user_id, scopes, audience, created_at, expires_at) = row[:7]
    (session_id, auth_time, acr, dpop_jkt, revoked_at) = row[7:]
    return FamilyRecord(
        family_id=family_id,
        client_id=client_id,
        user_id=user_id,
        scopes=frozenset(load_strings(scopes)),
        audience=load_strings(audience),
        created_at=created_at,
        expires_at=expires_at,
        session_id=session_id,
        auth_time=auth_time,
        acr=acr,
        dpop_jkt=dpop_jkt,
        revoked_at=revoked_at,
    )


def code_of(row: Any) -> CodeRecord:
    values = dict(zip(CODE, row, strict=True))
    values["scopes"] = frozenset(load_strings(values["scopes"]))
    values["audience"] = load_strings(values["audience"])
    values["redirect_uri_given"] = bool(values["redirect_uri_given"])
    return CodeRecord(**values)


def device_of(row: Any) -> DeviceRecord:
    values = list(row)
    values[3] = frozenset(load_strings(values[3]))  # scopes
    values[4] = load_strings(values[4])  # audience
    return DeviceRecord(*values)


def user_of(row: Any) -> UserRecord:
    user_id, username, password_hash, created_at, changed_at, disabled, claims = row
    return UserRecord(
        user_id=user_id,
        username=username,
        password_hash=password_hash,
        created_at=created_at,
        password_changed_at=changed_at,
        disabled=bool(disabled),  # SQLite stores 0/1
        claims=claims,
    )
