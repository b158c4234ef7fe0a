"""Token exchange (RFC 8693): each client's exchange policy, and minted tokens found by jti
(so a token exchanged from another is linked to the grant the first descends from).

Revision ID: 0006_token_exchange
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_token_exchange"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:  # batch: SQLite rebuilds the table
        batch.add_column(
            sa.Column("exchange_audiences", sa.Text(), server_default="[]", nullable=False)
        )
        batch.add_column(
            sa.Column(
                "exchange_impersonation", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
    op.create_index("ix_minted_tokens_jti", "minted_tokens", ["jti"])


def downgrade() -> None:
    op.drop_index("ix_minted_tokens_jti", table_name="minted_tokens")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("exchange_impersonation")
        batch.drop_column("exchange_audiences")
