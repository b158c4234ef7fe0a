"""The flow stores: browser sessions, authorization codes, grant families with their refresh
and minted access tokens, device authorizations, consents, and single-use replay markers.

Written out in full rather than importing models.py, like 0001.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("session_id", sa.String(), nullable=False),
        sa.Column("secret_digest", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("auth_time", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("acr", sa.String(), nullable=True),
        sa.Column("ended_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_sessions")),
        sa.UniqueConstraint("secret_digest", name=op.f("uq_sessions_secret_digest")),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])
    op.create_table(
        "authorization_codes",
        sa.Column("digest", sa.String(), nullable=False),
        sa.Column("client_id", sa.String(), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("code_challenge", sa.String(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("audience", sa.Text(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("session_id", sa.String(), nullable=False),
        sa.Column("auth_time", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("nonce", sa.Text(), nullable=True),
        sa.Column("acr", sa.String(), nullable=True),
        sa.Column("dpop_jkt", sa.String(), nullable=True),
        sa.Column("redirect_uri_given", sa.Boolean(), nullable=False),
        sa.Column("consumed_at", sa.Double(), nullable=True),
        sa.Column("family_id", sa.String(), nullable=True),
        sa.Column("access_jti", sa.String(), nullable=True),
        sa.Column("access_exp", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_authorization_codes")),
    )
    op.create_index("ix_authorization_codes_expires_at", "authorization_codes", ["expires_at"])
    op.create_table(
        "grant_families",
        sa.Column("family_id", sa.String(), nullable=False),
        sa.Column("client_id", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("audience", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("session_id", sa.String(), nullable=True),
        sa.Column("auth_time", sa.Double(), nullable=True),
        sa.Column("acr", sa.String(), nullable=True),
        sa.Column("dpop_jkt", sa.String(), nullable=True),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("family_id", name=op.f("pk_grant_families")),
    )
    op.create_index("ix_grant_families_expires_at", "grant_families", ["expires_at"])
    op.create_table(
        "refresh_tokens",
        sa.Column("digest", sa.String(), nullable=False),
        sa.Column("family_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("rotated_at", sa.Double(), nullable=True),
        sa.Column("successor_digest", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["grant_families.family_id"],
            name=op.f("fk_refresh_tokens_family_id_grant_families"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_refresh_tokens")),
    )
    op.create_index("ix_refresh_tokens_family_id", "refresh_tokens", ["family_id"])
    op.create_table(
        "minted_tokens",
        sa.Column("family_id", sa.String(), nullable=False),
        sa.Column("jti", sa.String(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("family_id", "jti", name=op.f("pk_minted_tokens")),
    )
    op.create_index("ix_minted_tokens_expires_at", "minted_tokens", ["expires_at"])
    op.create_table(
        "device_codes",
        sa.Column("device_digest", sa.String(), nullable=False),
        sa.Column("user_code", sa.String(), nullable=False),
        sa.Column("client_id", sa.String(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("audience", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("poll_interval", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("last_poll_at", sa.Double(), nullable=True),
        sa.Column("user_id", sa.String(), nullable=True),
        sa.Column("session_id", sa.String(), nullable=True),
        sa.Column("auth_time", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("device_digest", name=op.f("pk_device_codes")),
        sa.UniqueConstraint("user_code", name=op.f("uq_device_codes_user_code")),
    )
    op.create_index("ix_device_codes_expires_at", "device_codes", ["expires_at"])
    op.create_table(
        "consents",
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("client_id", sa.String(), nullable=False),
        sa.Column("scope", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "client_id", "scope", name=op.f("pk_consents")),
    )
    op.create_table(
        "replay_markers",
        sa.Column("key_digest", sa.String(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("key_digest", name=op.f("pk_replay_markers")),
    )
    op.create_index("ix_replay_markers_expires_at", "replay_markers", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_replay_markers_expires_at", table_name="replay_markers")
    op.drop_table("replay_markers")
    op.drop_table("consents")
    op.drop_index("ix_device_codes_expires_at", table_name="device_codes")
    op.drop_table("device_codes")
    op.drop_index("ix_minted_tokens_expires_at", table_name="minted_tokens")
    op.drop_table("minted_tokens")
    op.drop_index("ix_refresh_tokens_family_id", table_name="refresh_tokens")
    op.drop_table("refresh_tokens")
    op.drop_index("ix_grant_families_expires_at", table_name="grant_families")
    op.drop_table("grant_families")
    op.drop_index("ix_authorization_codes_expires_at", table_name="authorization_codes")
    op.drop_table("authorization_codes")
    op.drop_index("ix_sessions_expires_at", table_name="sessions")
    op.drop_index("ix_sessions_user_id", table_name="sessions")
    op.drop_table("sessions")
