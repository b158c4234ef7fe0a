"""Device authorizations carry assurance: the level the approving sign-in reached (`acr`), so
device-code tokens say how the user signed in, and the `acr_values` the device asked for
(docs/second-factors.md).

Revision ID: 0018_mfagaps
Revises: 0017_portal
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_mfagaps"
down_revision: str | None = "0017_portal"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("device_codes") as batch:  # batch: SQLite rebuilds the table
        batch.add_column(sa.Column("acr", sa.String(), nullable=True))
        batch.add_column(sa.Column("acr_values", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device_codes") as batch:
        batch.drop_column("acr_values")
        batch.drop_column("acr")
