"""Webhook custom headers stored encrypted (their values may be credentials).

The values already stored in clear are encrypted by `orchestrator up` right after the migrations
(`services.housekeeping`): the key is the platform's, which migrations do not read.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhooks") as batch:
        batch.add_column(sa.Column("headers_encrypted", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhooks") as batch:
        batch.drop_column("headers_encrypted")
