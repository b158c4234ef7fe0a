"""Dynamic client registration (RFC 7591, RFC 7592): initial access tokens and the registration
access token of each dynamically registered client, both kept as keyed digests only.

Revision ID: 0014_dcr
Revises: 0012_ssf
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_dcr"
down_revision: str | None = "0012_ssf"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "initial_access_tokens",
        sa.Column("token_id", sa.String(), primary_key=True),
        sa.Column("digest", sa.String(), nullable=False, unique=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "registration_access_tokens",
        sa.Column("client_id", sa.String(), primary_key=True),
        sa.Column("digest", sa.String(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("registration_access_tokens")
    op.drop_table("initial_access_tokens")
