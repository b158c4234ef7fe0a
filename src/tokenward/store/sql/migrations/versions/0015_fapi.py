"""FAPI 2.0 Security Profile: the security profile each client is held to (baseline | fapi2).

Revision ID: 0015_fapi
Revises: 0014_dcr
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_fapi"
down_revision: str | None = "0014_dcr"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:  # batch: SQLite rebuilds the table
        batch.add_column(sa.Column("profile", sa.Text(), server_default="baseline", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("profile")
