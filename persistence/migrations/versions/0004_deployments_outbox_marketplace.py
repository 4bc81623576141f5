"""agent deployments, event outbox, marketplace

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("owner_type", sa.String(length=16), nullable=True),
        sa.Column("owner_id", sa.String(length=64), nullable=True),
        sa.Column("subject_id", sa.String(length=64), nullable=True),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_event_type"), ["event_type"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_subject_id"), ["subject_id"], unique=False)

    op.create_table(
        "marketplace_listings",
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("marketplace_name", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("pricing", JSON, nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unpublished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("owner_type", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_marketplace_listings_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_listings")),
        sa.UniqueConstraint("agent_id", name=op.f("uq_marketplace_listings_agent_id")),
    )
    with op.batch_alter_table("marketplace_listings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_marketplace_listings_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_marketplace_listings_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_marketplace_listings_status"), ["status"], unique=False)

    op.create_table(
        "marketplace_installs",
        sa.Column("listing_id", sa.String(length=36), nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=True),
        sa.Column("installed_by", sa.String(length=64), nullable=False),
        sa.Column("owner_type", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_marketplace_installs_agent_id_agents"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["listing_id"],
            ["marketplace_listings.id"],
            name=op.f("fk_marketplace_installs_listing_id_marketplace_listings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_installs")),
    )
    with op.batch_alter_table("marketplace_installs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_marketplace_installs_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_marketplace_installs_listing_id"), ["listing_id"], unique=False)

    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("undeployed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("status_message", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("container_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("passivated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("offline_notified_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("offline_notified_at")
        batch_op.drop_column("last_heartbeat_at")
        batch_op.drop_column("passivated_at")
        batch_op.drop_column("container_id")
        batch_op.drop_column("status_message")
        batch_op.drop_column("undeployed_at")

    with op.batch_alter_table("marketplace_installs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_marketplace_installs_listing_id"))
        batch_op.drop_index(batch_op.f("ix_marketplace_installs_agent_id"))

    op.drop_table("marketplace_installs")
    with op.batch_alter_table("marketplace_listings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_marketplace_listings_status"))
        batch_op.drop_index(batch_op.f("ix_marketplace_listings_owner_id"))
        batch_op.drop_index(batch_op.f("ix_marketplace_listings_created_at"))

    op.drop_table("marketplace_listings")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_subject_id"))
        batch_op.drop_index(batch_op.f("ix_events_owner_id"))
        batch_op.drop_index(batch_op.f("ix_events_event_type"))
        batch_op.drop_index(batch_op.f("ix_events_created_at"))

    op.drop_table("events")
