"""The one schema both databases share (SQLite embedded, PostgreSQL in production).

The migrations (0001, 0002 for the flow stores, then one per change) must create exactly these
tables; tests/store/test_migrations.py compares the migrated database with this metadata. Change
both together, in a new migration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.dml import Insert

# Fixed constraint names, so a later migration can name what it alters on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-assigns an INTEGER PRIMARY KEY (the rowid alias), not a BIGINT one.
SEQUENCE = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Epoch seconds as DOUBLE PRECISION / REAL: sub-second precision on both databases.
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        float: Double(),
        str: String(),
        bytes: LargeBinary(),
        bool: Boolean(),
    }


class SigningKeyRow(Base):
    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(primary_key=True)
    alg: Mapped[str]
    state: Mapped[str]
    created_at: Mapped[float]
    activated_at: Mapped[float | None]
    retiring_at: Mapped[float | None]
    retired_at: Mapped[float | None]
    sealed_private: Mapped[bytes]  # encrypted by tokens/sealing.py before it gets here


class SigningChoiceRow(Base):
    """`tokenward keys migrate`: the algorithm an audience's access tokens switch to."""

    __tablename__ = "signing_choices"

    audience: Mapped[str] = mapped_column(Text(), primary_key=True)  # "": the deployment's
    alg: Mapped[str]
    previous: Mapped[str | None]
    switch_at: Mapped[float]


class RevocationRow(Base):
    __tablename__ = "revocations"
    # AUTOINCREMENT: never reuse a seq after the newest rows are purged, or a mirror that has
    # already applied that seq would skip the new entry (`since` is a cursor).
    __table_args__ = (
        Index("ix_revocations_expires_at", "expires_at"),
        {"sqlite_autoincrement": True},
    )

    seq: Mapped[int] = mapped_column(SEQUENCE, primary_key=True, autoincrement=True)
    kind: Mapped[str]
    value: Mapped[str]
    issued_before: Mapped[float | None]
    expires_at: Mapped[float]
    created_at: Mapped[float]


class AccessTokenRow(Base):
    __tablename__ = "access_tokens"
    __table_args__ = (Index("ix_access_tokens_expires_at", "expires_at"),)

    digest: Mapped[str] = mapped_column(primary_key=True)  # SHA-256 of the token, never the token
    token: Mapped[dict[str, Any]] = mapped_column(JSON())
    expires_at: Mapped[float]


class ClientRow(Base):
    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(primary_key=True)
    auth_method: Mapped[str]
    grant_types: Mapped[str] = mapped_column(Text())  # JSON list
    scopes: Mapped[str] = mapped_column(Text())  # JSON list, sorted
    created_at: Mapped[float]
    secret_digest: Mapped[str | None]
    redirect_uris: Mapped[str] = mapped_column(Text())
    post_logout_redirect_uris: Mapped[str] = mapped_column(Text())
    audience: Mapped[str] = mapped_column(Text())
    token_format: Mapped[str]
    access_token_lifetime: Mapped[int]
    refresh_token_lifetime: Mapped[int]
    skip_consent: Mapped[bool]
    dpop_required: Mapped[bool]
    disabled: Mapped[bool]
    jwks: Mapped[str | None] = mapped_column(Text())
    jwks_uri: Mapped[str | None] = mapped_column(Text())
    id_token_alg: Mapped[str]
    name: Mapped[str] = mapped_column(Text())
    # Token exchange (RFC 8693) policy: audiences it may exchange for, and impersonation.
    exchange_audiences: Mapped[str] = mapped_column(Text(), server_default="[]")  # JSON list
    exchange_impersonation: Mapped[bool] = mapped_column(server_default=false())
    # mTLS (RFC 8705): the certificate subject a tls_client_auth client registered, and
    # whether its tokens are bound to its certificate.
    tls_client_auth_subject_dn: Mapped[str | None] = mapped_column(Text())
    tls_client_auth_san_dns: Mapped[str | None] = mapped_column(Text())
    tls_client_auth_san_uri: Mapped[str | None] = mapped_column(Text())
    tls_client_auth_san_ip: Mapped[str | None] = mapped_column(Text())
    tls_client_auth_san_email: Mapped[str | None] = mapped_column(Text())
    tls_client_certificate_bound_access_tokens: Mapped[bool] = mapped_column(server_default=false())
    access_token_alg: Mapped[str | None]
    # OpenID Back-Channel Logout 1.0
    backchannel_logout_uri: Mapped[str | None] = mapped_column(Text())
    backchannel_logout_session_required: Mapped[bool] = mapped_column(server_default=false())
    # PAR (RFC 9126) and JAR (RFC 9101): how this client must send its authorization requests.
    require_pushed_authorization_requests: Mapped[bool] = mapped_column(server_default=false())
    require_signed_request_object: Mapped[bool] = mapped_column(server_default=false())
    # The security profile the client is held to (oauth/profiles.py): baseline | fapi2.
    profile: Mapped[str] = mapped_column(Text(), server_default="baseline")
    min_acr: Mapped[str | None]
    owner: Mapped[str | None]  # the developer portal's registrant (docs/portal.md)
    approval: Mapped[str] = mapped_column(Text(), server_default="approved")


class UserRow(Base):
    __tablename__ = "users"

    user_id: Mapped[str] = mapped_column(primary_key=True)
    # The constraint, not a check in Python, is what keeps two concurrent sign-ups apart.
    username: Mapped[str] = mapped_column(unique=True)
    password_hash: Mapped[str]
    created_at: Mapped[float]
    password_changed_at: Mapped[float]
    disabled: Mapped[bool]
    claims: Mapped[str] = mapped_column(Text())  # JSON object, kept as the caller wrote it


class TotpFactorRow(Base):
    """A user's TOTP authenticator: the sealed secret and the last accepted time step."""

    __tablename__ = "totp_factors"

    user_id: Mapped[str] = mapped_column(primary_key=True)
    sealed_secret: Mapped[bytes]
    created_at: Mapped[float]
    last_step: Mapped[int] = mapped_column(BigInteger())


class RecoveryCodeRow(Base):
    """One single-use recovery code (keyed digest)."""

    __tablename__ = "recovery_codes"

    user_id: Mapped[str] = mapped_column(primary_key=True)
    code_id: Mapped[str] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(Text())
    created_at: Mapped[float]


class PasskeyRow(Base):
    """A WebAuthn credential, by its id; found by user for the account page and the console."""

    __tablename__ = "passkeys"
    __table_args__ = (Index("ix_passkeys_user_id", "user_id"),)

    credential_id: Mapped[str] = mapped_column(primary_key=True)
    user_id: Mapped[str]
    public_key: Mapped[bytes]
    sign_count: Mapped[int] = mapped_column(BigInteger())
    created_at: Mapped[float]
    name: Mapped[str] = mapped_column(Text())
    last_used_at: Mapped[float | None]


class SessionParticipantRow(Base):
    """A client that received an ID token in a session (back-channel logout's recipients)."""

    __tablename__ = "session_participants"
    __table_args__ = (
        Index("ix_session_participants_user_id", "user_id"),
        Index("ix_session_participants_expires_at", "expires_at"),
    )

    session_id: Mapped[str] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(primary_key=True)
    user_id: Mapped[str]
    expires_at: Mapped[float]


class SsfStreamRow(Base):
    """A Shared Signals stream; the list members are JSON text."""

    __tablename__ = "ssf_streams"
    __table_args__ = (Index("ix_ssf_streams_owner", "owner"),)

    stream_id: Mapped[str] = mapped_column(primary_key=True)
    owner: Mapped[str]
    audience: Mapped[str] = mapped_column(Text())
    events_requested: Mapped[str] = mapped_column(Text())  # JSON list
    delivery_method: Mapped[str]
    endpoint_url: Mapped[str] = mapped_column(Text())
    created_at: Mapped[float]
    authorization_header: Mapped[str | None] = mapped_column(Text())
    description: Mapped[str] = mapped_column(Text())
    status: Mapped[str]
    reason: Mapped[str] = mapped_column(Text())
    subjects: Mapped[str] = mapped_column(Text())  # JSON list of canonical subject JSON
    verified_at: Mapped[float | None]


class SetQueueRow(Base):
    """A SET waiting for its stream's receiver, in the order queued (`seq`)."""

    __tablename__ = "ssf_set_queue"
    __table_args__ = (
        Index("ix_ssf_set_queue_stream_jti", "stream_id", "jti", unique=True),
        {"sqlite_autoincrement": True},
    )

    seq: Mapped[int] = mapped_column(SEQUENCE, primary_key=True, autoincrement=True)
    stream_id: Mapped[str]
    jti: Mapped[str]
    token: Mapped[str] = mapped_column(Text())
    created_at: Mapped[float]


class SessionRow(Base):
    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_user_id", "user_id"),
        Index("ix_sessions_expires_at", "expires_at"),
    )

    session_id: Mapped[str] = mapped_column(primary_key=True)  # public: the `sid` claim
    # The cookie's secret, as a keyed digest; unique, and indexed by that constraint.
    secret_digest: Mapped[str] = mapped_column(unique=True)
    user_id: Mapped[str]
    auth_time: Mapped[float]
    expires_at: Mapped[float]
    acr: Mapped[str | None]
    ended_at: Mapped[float | None]


class PushedRequestRow(Base):
    __tablename__ = "pushed_requests"
    __table_args__ = (Index("ix_pushed_requests_expires_at", "expires_at"),)

    digest: Mapped[str] = mapped_column(primary_key=True)  # of the request_uri, never the uri
    client_id: Mapped[str]
    params: Mapped[str] = mapped_column(Text())  # JSON [[name, value], ...]
    expires_at: Mapped[float]
    signed: Mapped[bool]


class InitialAccessTokenRow(Base):
    __tablename__ = "initial_access_tokens"

    token_id: Mapped[str] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(unique=True)  # of the token, never the token
    created_at: Mapped[float]
    expires_at: Mapped[float]
    max_uses: Mapped[int | None]
    uses: Mapped[int]
    revoked: Mapped[bool]


class RegistrationAccessTokenRow(Base):
    __tablename__ = "registration_access_tokens"

    client_id: Mapped[str] = mapped_column(primary_key=True)
    digest: Mapped[str]  # of the token, never the token
    # Registered openly (no initial access token): counted against the open registration cap.
    open_registration: Mapped[bool] = mapped_column(server_default=false())


class CodeRow(Base):
    __tablename__ = "authorization_codes"
    __table_args__ = (Index("ix_authorization_codes_expires_at", "expires_at"),)

    digest: Mapped[str] = mapped_column(primary_key=True)  # of the code, never the code
    client_id: Mapped[str]
    redirect_uri: Mapped[str] = mapped_column(Text())
    code_challenge: Mapped[str]
    scopes: Mapped[str] = mapped_column(Text())  # JSON list, sorted
    audience: Mapped[str] = mapped_column(Text())  # JSON list
    user_id: Mapped[str]
    session_id: Mapped[str]
    auth_time: Mapped[float]
    expires_at: Mapped[float]
    nonce: Mapped[str | None] = mapped_column(Text())
    acr: Mapped[str | None]
    dpop_jkt: Mapped[str | None]
    redirect_uri_given: Mapped[bool]
    consumed_at: Mapped[float | None]
    family_id: Mapped[str | None]
    access_jti: Mapped[str | None]
    access_exp: Mapped[float | None]
    replayed_at: Mapped[float | None]  # 0003


class FamilyRow(Base):
    __tablename__ = "grant_families"
    __table_args__ = (Index("ix_grant_families_expires_at", "expires_at"),)

    family_id: Mapped[str] = mapped_column(primary_key=True)
    client_id: Mapped[str]
    user_id: Mapped[str]
    scopes: Mapped[str] = mapped_column(Text())  # JSON list, sorted
    audience: Mapped[str] = mapped_column(Text())  # JSON list
    created_at: Mapped[float]
    expires_at: Mapped[float]
    session_id: Mapped[str | None]
    auth_time: Mapped[float | None]
    acr: Mapped[str | None]
    dpop_jkt: Mapped[str | None]
    revoked_at: Mapped[float | None]


class RefreshTokenRow(Base):
    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_family_id", "family_id"),)

    digest: Mapped[str] = mapped_column(primary_key=True)  # of the token, never the token
    # CASCADE: purging an expired family takes its tokens with it.
    family_id: Mapped[str] = mapped_column(
        ForeignKey("grant_families.family_id", ondelete="CASCADE")
    )
    created_at: Mapped[float]
    expires_at: Mapped[float]
    rotated_at: Mapped[float | None]
    successor_digest: Mapped[str | None]


class MintedTokenRow(Base):
    """Access tokens a family minted, kept while they may be live (what a reuse must deny).
    No foreign key: like the memory backend, this list does not depend on the family row."""

    __tablename__ = "minted_tokens"
    __table_args__ = (
        Index("ix_minted_tokens_expires_at", "expires_at"),
        Index("ix_minted_tokens_jti", "jti"),  # token exchange: the grant a token descends from
    )

    family_id: Mapped[str] = mapped_column(primary_key=True)
    jti: Mapped[str] = mapped_column(primary_key=True)
    expires_at: Mapped[float]


class DeviceRow(Base):
    __tablename__ = "device_codes"
    __table_args__ = (Index("ix_device_codes_expires_at", "expires_at"),)

    device_digest: Mapped[str] = mapped_column(primary_key=True)
    user_code: Mapped[str] = mapped_column(unique=True)  # normalised; what the user types
    client_id: Mapped[str]
    scopes: Mapped[str] = mapped_column(Text())  # JSON list, sorted
    audience: Mapped[str] = mapped_column(Text())  # JSON list
    created_at: Mapped[float]
    expires_at: Mapped[float]
    poll_interval: Mapped[int]  # `interval` is a reserved word in PostgreSQL
    status: Mapped[str]
    last_poll_at: Mapped[float | None]
    user_id: Mapped[str | None]
    session_id: Mapped[str | None]
    auth_time: Mapped[float | None]
    acr: Mapped[str | None]  # 0017: the approving sign-in's level
    acr_values: Mapped[str | None] = mapped_column(Text())  # 0017: the levels asked for


class ConsentRow(Base):
    """One row per granted scope: a grant is INSERT ... ON CONFLICT DO NOTHING, so concurrent
    grants to one user and client add up instead of overwriting each other's set."""

    __tablename__ = "consents"

    user_id: Mapped[str] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(primary_key=True)


class ReplayMarkerRow(Base):
    __tablename__ = "replay_markers"
    __table_args__ = (Index("ix_replay_markers_expires_at", "expires_at"),)

    # SHA-256 of the caller's key: keys embed client-chosen jti values of any length.
    key_digest: Mapped[str] = mapped_column(primary_key=True)
    expires_at: Mapped[float]


class SignInFailureRow(Base):
    """One attempt counted by the sign-in throttle under one of its keys (core/throttle.py):
    a row per key, with the attempt's ticket, deleted when the attempt is taken back."""

    __tablename__ = "signin_failures"
    __table_args__ = (
        Index("ix_signin_failures_key_at", "key", "at"),
        Index("ix_signin_failures_at", "at"),
    )

    id: Mapped[int] = mapped_column(SEQUENCE, primary_key=True, autoincrement=True)
    key: Mapped[str]  # a throttle key: a digest, or "i:" and an address
    ticket: Mapped[str]
    at: Mapped[float]


def dump_strings(values: Iterable[str], *, sort: bool = False) -> str:
    """A tuple (order kept) or a frozenset (sorted, so equal sets store equal text) as JSON."""
    items = sorted(values) if sort else list(values)
    return orjson.dumps(items).decode()


def load_strings(text: str) -> tuple[str, ...]:
    values = orjson.loads(text)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError("a stored string list is not a JSON list of strings")
    return tuple(values)


def upsert(
    session: AsyncSession, row: type[Base], rows: Sequence[Mapping[str, Any]], key: str
) -> Insert:
    """INSERT ... ON CONFLICT (key) DO UPDATE: one atomic statement on both databases, so two
    writers of one key cannot race between a SELECT and an INSERT."""
    if session.get_bind().dialect.name == "postgresql":
        pg = postgresql.insert(row).values(list(rows))
        return pg.on_conflict_do_update(index_elements=[key], set_=_others(pg.excluded, key))
    lite = sqlite.insert(row).values(list(rows))
    return lite.on_conflict_do_update(index_elements=[key], set_=_others(lite.excluded, key))


def _others(excluded: Any, key: str) -> dict[str, Any]:
    return {column.name: column for column in excluded if column.name != key}


async def lock_for_writing(session: AsyncSession) -> None:
    """Make a read-then-write transaction atomic on SQLite: BEGIN IMMEDIATE takes the database's
    write lock before the first read, so no other writer can commit between this transaction's
    read and its write (and the upgrade from reader to writer cannot fail with "locked").
    Call it first in the transaction. On PostgreSQL it does nothing: there the caller locks the
    rows it reads (SELECT ... FOR UPDATE), so writers of other rows are not held up."""
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(text("BEGIN IMMEDIATE"))
