"""Settings of users and organizations (`GET/POST /settings`): preferences, and provider keys encrypted.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "owner_settings",
        sa.Column("owner_type", sa.String(16), primary_key=True),
        sa.Column("owner_id", sa.String(64), primary_key=True),
        sa.Column("values", JSON, nullable=False),
        sa.Column("secrets", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_owner_settings_created_at", "owner_settings", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_owner_settings_created_at", table_name="owner_settings")
    op.drop_table("owner_settings")
