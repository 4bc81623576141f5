"""Approvals name what they gate and carry its context: the run's node, the agent, a description and a
preview for the approver, a JSON Schema of the input a decision must carry, and that input.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("node_id", sa.String(100), nullable=True))
        batch.add_column(sa.Column("agent_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("context", JSON, nullable=True))
        batch.add_column(sa.Column("input_schema", JSON, nullable=True))
        batch.add_column(sa.Column("decision_input", JSON, nullable=True))
    op.create_index("ix_approvals_agent_id", "approvals", ["agent_id"])


def downgrade() -> None:
    op.drop_index("ix_approvals_agent_id", table_name="approvals")
    with op.batch_alter_table("approvals") as batch:
        for column in ("decision_input", "input_schema", "context", "agent_id", "node_id"):
            batch.drop_column(column)
