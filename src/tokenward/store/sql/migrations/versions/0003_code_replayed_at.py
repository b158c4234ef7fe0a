"""authorization_codes.replayed_at: a replay marks the code, so the first exchange, if it has
not recorded what it minted yet, sees the mark and revokes it instead (RFC 9700 §4.5).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("authorization_codes", sa.Column("replayed_at", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("authorization_codes") as batch:  # SQLite rebuilds the table
        batch.drop_column("replayed_at")
