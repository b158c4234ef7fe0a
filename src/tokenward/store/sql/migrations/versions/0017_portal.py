"""The developer portal: each client's owner (the user who registered it there) and whether an
operator approved it (docs/portal.md). Existing clients are approved.

Revision ID: 0017_portal
Revises: 0016_mfa
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_portal"
down_revision: str | None = "0016_mfa"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:  # batch: SQLite rebuilds the table
        batch.add_column(sa.Column("owner", sa.String(), nullable=True))
        batch.add_column(
            sa.Column("approval", sa.Text(), nullable=False, server_default="approved")
        )


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("approval")
        batch.drop_column("owner")
