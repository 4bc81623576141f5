"""A framework agent's task: the tokens its model calls used and their cost, and the tool call an approval
holds it for.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.add_column(sa.Column("tokens_used", sa.BigInteger, nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("cost", sa.Float, nullable=False, server_default="0"))
    with op.batch_alter_table("approvals") as batch_op:
        batch_op.add_column(sa.Column("tool_call", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch_op:
        batch_op.drop_column("tool_call")
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.drop_column("cost")
        batch_op.drop_column("tokens_used")
