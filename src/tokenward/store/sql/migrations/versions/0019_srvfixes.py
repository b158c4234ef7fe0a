"""Registration access tokens say whether their client registered openly (no initial access
token), so the open registration cap (TOKENWARD_REGISTRATION_MAX_OPEN_CLIENTS) is counted in the
database, the same for every node. Clients registered before this revision are not counted.

Revision ID: 0019_srvfixes
Revises: 0018_mfagaps
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_srvfixes"
down_revision: str | None = "0018_mfagaps"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("registration_access_tokens") as batch:  # SQLite rebuilds it
        batch.add_column(
            sa.Column("open_registration", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("registration_access_tokens") as batch:
        batch.drop_column("open_registration")
