"""Indexes for the event relay (unpublished events only) and the step latency of /system/metrics.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UNPUBLISHED = sa.text("published_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_events_unpublished", "events", ["created_at", "id"], postgresql_where=UNPUBLISHED, sqlite_where=UNPUBLISHED
    )
    op.create_index("ix_execution_steps_started_at", "execution_steps", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_execution_steps_started_at", table_name="execution_steps")
    op.drop_index("ix_events_unpublished", table_name="events")
