"""Postgres: a committed event wakes the event hub's relay (`LISTEN orchestrator_events`), so that fan-out does
not wait for the relay's next look at the outbox. A statement-level trigger covers every way a row reaches the
outbox (the ORM, the run checkpoint's single statement, batches); Postgres delivers the notification at
commit, once per transaction (identical notifications of one transaction are folded). The outbox stays the
source of truth and the relay's poll the safety net. Nothing on SQLite (its writers signal the hub
themselves).

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

CHANNEL = "orchestrator_events"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION orchestrator_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER events_notify AFTER INSERT ON events "
        "FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_events_notify()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS events_notify ON events")
    op.execute("DROP FUNCTION IF EXISTS orchestrator_events_notify()")
