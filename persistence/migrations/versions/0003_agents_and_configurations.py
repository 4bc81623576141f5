"""agents and configurations

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "configurations",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("framework", sa.String(length=32), nullable=False),
        sa.Column("configuration", JSON, nullable=False),
        sa.Column("is_template", sa.Boolean(), nullable=False),
        sa.Column("usage_count", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("owner_type", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_configurations")),
    )
    with op.batch_alter_table("configurations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_configurations_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_configurations_framework"), ["framework"], unique=False)
        batch_op.create_index(batch_op.f("ix_configurations_is_template"), ["is_template"], unique=False)
        batch_op.create_index("ix_configurations_owner", ["owner_type", "owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_configurations_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "agents",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("framework", sa.String(length=32), nullable=False),
        sa.Column("agent_type", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=True),
        sa.Column("capabilities", JSON, nullable=False),
        sa.Column("specializations", JSON, nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("model", sa.String(length=100), nullable=True),
        sa.Column("provider", sa.String(length=50), nullable=True),
        sa.Column("configuration", JSON, nullable=False),
        sa.Column("configuration_id", sa.String(length=36), nullable=True),
        sa.Column("working_hours", JSON, nullable=True),
        sa.Column("max_concurrent_tasks", sa.Integer(), nullable=False),
        sa.Column("current_tasks", sa.Integer(), nullable=False),
        sa.Column("resource_limits", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=500), nullable=True),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("total_executions", sa.Integer(), nullable=False),
        sa.Column("successful_executions", sa.Integer(), nullable=False),
        sa.Column("avg_execution_time", sa.Float(), nullable=True),
        sa.Column("last_executed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deployed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("owner_type", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["configuration_id"],
            ["configurations.id"],
            name=op.f("fk_agents_configuration_id_configurations"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
    )
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agents_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_agents_framework"), ["framework"], unique=False)
        batch_op.create_index("ix_agents_owner", ["owner_type", "owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_agents_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_agents_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_agents_type"), ["type"], unique=False)

    # Containment filters (capabilities, tags) use JSONB @> on Postgres, which GIN serves; on SQLite
    # these are plain indexes that keep the schema identical to the models.
    op.create_index("ix_agents_capabilities_gin", "agents", ["capabilities"], postgresql_using="gin")
    op.create_index("ix_agents_tags_gin", "agents", ["tags"], postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("ix_agents_tags_gin", table_name="agents")
    op.drop_index("ix_agents_capabilities_gin", table_name="agents")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agents_type"))
        batch_op.drop_index(batch_op.f("ix_agents_status"))
        batch_op.drop_index(batch_op.f("ix_agents_owner_id"))
        batch_op.drop_index("ix_agents_owner")
        batch_op.drop_index(batch_op.f("ix_agents_framework"))
        batch_op.drop_index(batch_op.f("ix_agents_created_at"))

    op.drop_table("agents")
    with op.batch_alter_table("configurations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_configurations_owner_id"))
        batch_op.drop_index("ix_configurations_owner")
        batch_op.drop_index(batch_op.f("ix_configurations_is_template"))
        batch_op.drop_index(batch_op.f("ix_configurations_framework"))
        batch_op.drop_index(batch_op.f("ix_configurations_created_at"))

    op.drop_table("configurations")
