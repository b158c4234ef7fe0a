"""Crypto agility: each client's access-token algorithm, and the signing choices
`tokenward keys migrate` stores (which algorithm an audience's tokens switch to, and when).

Revision ID: 0010_client_algs
Revises: 0007_par
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_client_algs"
down_revision: str | None = "0008_mtls"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:  # batch: SQLite rebuilds the table
        batch.add_column(sa.Column("access_token_alg", sa.String(), nullable=True))
    op.create_table(
        "signing_choices",
        sa.Column("audience", sa.Text(), nullable=False),
        sa.Column("alg", sa.String(), nullable=False),
        sa.Column("previous", sa.String(), nullable=True),
        sa.Column("switch_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("audience", name=op.f("pk_signing_choices")),
    )


def downgrade() -> None:
    op.drop_table("signing_choices")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("access_token_alg")
