"""Continuous access evaluation: clients' back-channel logout registration (OpenID Back-Channel
Logout 1.0), which clients took part in each browser session, and the Shared Signals streams
with the SETs waiting for them.

Revision ID: 0012_ssf
Revises: 0007_par
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_ssf"
down_revision: str | None = "0010_client_algs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:  # batch: SQLite rebuilds the table
        batch.add_column(sa.Column("backchannel_logout_uri", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column(
                "backchannel_logout_session_required",
                sa.Boolean(),
                server_default=sa.false(),
                nullable=False,
            )
        )
    op.create_table(
        "session_participants",
        sa.Column("session_id", sa.String(), primary_key=True),
        sa.Column("client_id", sa.String(), primary_key=True),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
    )
    op.create_index("ix_session_participants_user_id", "session_participants", ["user_id"])
    op.create_index("ix_session_participants_expires_at", "session_participants", ["expires_at"])
    op.create_table(
        "ssf_streams",
        sa.Column("stream_id", sa.String(), primary_key=True),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("audience", sa.Text(), nullable=False),
        sa.Column("events_requested", sa.Text(), nullable=False),
        sa.Column("delivery_method", sa.String(), nullable=False),
        sa.Column("endpoint_url", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("authorization_header", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("subjects", sa.Text(), nullable=False),
        sa.Column("verified_at", sa.Double(), nullable=True),
    )
    op.create_index("ix_ssf_streams_owner", "ssf_streams", ["owner"])
    op.create_table(
        "ssf_set_queue",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
            primary_key=True,
        ),
        sa.Column("stream_id", sa.String(), nullable=False),
        sa.Column("jti", sa.String(), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_ssf_set_queue_stream_jti", "ssf_set_queue", ["stream_id", "jti"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ix_ssf_set_queue_stream_jti", table_name="ssf_set_queue")
    op.drop_table("ssf_set_queue")
    op.drop_index("ix_ssf_streams_owner", table_name="ssf_streams")
    op.drop_table("ssf_streams")
    op.drop_index("ix_session_participants_expires_at", table_name="session_participants")
    op.drop_index("ix_session_participants_user_id", table_name="session_participants")
    op.drop_table("session_participants")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("backchannel_logout_session_required")
        batch.drop_column("backchannel_logout_uri")
