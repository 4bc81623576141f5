"""Events: `streamed_at`, so that a Redis outage no longer holds back webhooks and live fan-out (the Redis
stream catches up from the rows fanned out but not streamed).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# Frozen here (the model's may change).
UNSTREAMED = sa.text("streamed_at IS NULL AND published_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("streamed_at", sa.DateTime(timezone=True), nullable=True))
    # Everything relayed so far went to the stream (or there was none) with its fan-out.
    op.execute("UPDATE events SET streamed_at = published_at WHERE published_at IS NOT NULL")
    op.create_index(
        "ix_events_unstreamed", "events", ["created_at", "id"], postgresql_where=UNSTREAMED, sqlite_where=UNSTREAMED
    )


def downgrade() -> None:
    op.drop_index("ix_events_unstreamed", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("streamed_at")
