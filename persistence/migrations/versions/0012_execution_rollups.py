"""Hourly and daily execution rollups for the dashboard, filled from the runs already stored, and the
deltas not folded into them yet; the owner index of executions gains created_at (a tenant's runs in a
period, and its latest ones).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# What `persistence.execution_rollups` counts per run, as SQL over the runs stored before this revision
# (kept here as written: the module may change with later revisions, this backfill may not).
_BACKFILL = """
INSERT INTO execution_rollups (grain, owner_type, owner_id, starts_at, agent_id, runs, completed, failed, finished,
    duration_ms_total, duration_count, duration_ms_max, tokens_used, cost, start_latency_s_total,
    start_latency_count)
SELECT '{grain}', owner_type, owner_id, {start}, coalesce(agent_id, ''), count(*),
    sum(CASE WHEN status = 'completed' THEN 1 ELSE 0 END),
    sum(CASE WHEN status IN ('failed', 'timeout') THEN 1 ELSE 0 END),
    sum(CASE WHEN {finished} THEN 1 ELSE 0 END),
    sum(CASE WHEN {finished} AND duration_ms IS NOT NULL THEN duration_ms ELSE 0 END),
    sum(CASE WHEN {finished} AND duration_ms IS NOT NULL THEN 1 ELSE 0 END),
    max(CASE WHEN {finished} THEN duration_ms END),
    sum(CASE WHEN {finished} THEN coalesce(tokens_used, 0) ELSE 0 END),
    sum(CASE WHEN {finished} THEN coalesce(cost, 0) ELSE 0 END),
    sum(CASE WHEN {finished} AND started_at IS NOT NULL THEN {latency} ELSE 0 END),
    sum(CASE WHEN {finished} AND started_at IS NOT NULL THEN 1 ELSE 0 END)
FROM executions
GROUP BY owner_type, owner_id, {start}, coalesce(agent_id, '')
"""
_DIALECTS = {
    "postgresql": {
        "hour": "date_trunc('hour', created_at, 'UTC')",
        "day": "date_trunc('day', created_at, 'UTC')",
        "latency": "extract(epoch FROM started_at - created_at)",
    },
    # SQLAlchemy stores SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff' text; the start must match that.
    "sqlite": {
        "hour": "strftime('%Y-%m-%d %H:00:00.000000', created_at)",
        "day": "strftime('%Y-%m-%d 00:00:00.000000', created_at)",
        "latency": "(julianday(started_at) - julianday(created_at)) * 86400.0",
    },
}


def _measures() -> list[sa.Column]:
    """The counted columns both tables share (new Column objects for each table)."""
    return [
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("finished", sa.Integer(), nullable=False),
        sa.Column("duration_ms_total", sa.BigInteger(), nullable=False),
        sa.Column("duration_count", sa.Integer(), nullable=False),
        sa.Column("duration_ms_max", sa.Integer(), nullable=True),
        sa.Column("tokens_used", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("start_latency_s_total", sa.Float(), nullable=False),
        sa.Column("start_latency_count", sa.Integer(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "execution_rollups",
        sa.Column("grain", sa.String(length=4), nullable=False),
        sa.Column("owner_type", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        *_measures(),
        sa.PrimaryKeyConstraint(
            "grain", "owner_type", "owner_id", "starts_at", "agent_id", name=op.f("pk_execution_rollups")
        ),
    )
    op.create_index("ix_execution_rollups_grain_starts_at", "execution_rollups", ["grain", "starts_at"])
    op.create_table(
        "execution_rollup_deltas",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("owner_type", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        *_measures(),
        sa.Column("recount", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_execution_rollup_deltas")),
    )
    dialect = op.get_bind().dialect.name
    parts = _DIALECTS.get(dialect, _DIALECTS["postgresql"])
    finished = "status IN ('completed', 'failed', 'cancelled', 'timeout')"
    for grain in ("hour", "day"):
        sql = _BACKFILL.format(grain=grain, start=parts[grain], finished=finished, latency=parts["latency"])
        op.execute(sa.text(sql.replace(":", r"\:")))  # literal colons, not bind parameters
    with op.batch_alter_table("executions") as batch_op:
        batch_op.create_index("ix_executions_owner_created", ["owner_type", "owner_id", "created_at"])
        batch_op.drop_index("ix_executions_owner")


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch_op:
        batch_op.create_index("ix_executions_owner", ["owner_type", "owner_id"])
        batch_op.drop_index("ix_executions_owner_created")
    op.drop_table("execution_rollup_deltas")
    op.drop_index("ix_execution_rollups_grain_starts_at", table_name="execution_rollups")
    op.drop_table("execution_rollups")
