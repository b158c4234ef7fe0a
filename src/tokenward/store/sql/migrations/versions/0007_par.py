"""PAR and JAR (RFC 9126, RFC 9101): pushed authorization requests, and each client's
requirement to push (and to sign) its authorization requests.

Revision ID: 0007_par
Revises: 0006_token_exchange
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_par"
down_revision: str | None = "0006_token_exchange"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:  # batch: SQLite rebuilds the table
        for name in ("require_pushed_authorization_requests", "require_signed_request_object"):
            batch.add_column(
                sa.Column(name, sa.Boolean(), server_default=sa.false(), nullable=False)
            )
    op.create_table(
        "pushed_requests",
        sa.Column("digest", sa.String(), nullable=False),
        sa.Column("client_id", sa.String(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("signed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_pushed_requests")),
    )
    op.create_index("ix_pushed_requests_expires_at", "pushed_requests", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_pushed_requests_expires_at", table_name="pushed_requests")
    op.drop_table("pushed_requests")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("require_signed_request_object")
        batch.drop_column("require_pushed_authorization_requests")
