"""The dashboard at a million executions (issue 7: "stays fast at a million executions"), in one run.

A scratch Postgres schema at the current migration gets one tenant's agent and workflow, then
`--executions` runs spread over the last 90 days across `--tenants` owners (copied from one real row by
`INSERT … SELECT generate_series`), and is ANALYZEd; the hourly and daily rollups are then made by migration 0012's
backfill (SQL copies bypass the ORM events that keep them), which is timed too. `services.dashboard.metrics` (what
`GET /dashboard/metrics` computes) is then timed for one tenant and for a platform admin (who sees every
run), for each timeframe, against the same calls on the first 1000 runs as the baseline of the same run.

Run from the repository root: `.venv/bin/python bench/dashboard.py --database-url postgresql+psycopg://…/test`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks import scratch_database

from core.clock import utcnow
from persistence.db import Database
from persistence.migrate import downgrade, upgrade
from persistence.models import Agent, Execution, User, Workflow
from services import dashboard
from services.principal import Principal, Role

TIMEFRAMES = ("24h", "7d", "30d", "90d")
AGENTS_PER_TENANT = 5


def seed_template(db: Database) -> tuple[str, str, str]:
    with db.transaction() as session:
        user = User(email="dash@example.com", password_hash="not-a-hash", role="agent", preferences={})  # noqa: S106
        session.add(user)
        session.flush()
        agent = Agent(
            owner_type="user", owner_id=user.id, name="Bot", framework="native", status="active", created_by=user.id
        )
        session.add(agent)
        session.flush()
        workflow = Workflow(
            owner_type="user",
            owner_id=user.id,
            agent_id=agent.id,
            name="Flow",
            version="1.0.0",
            workflow_data={"nodes": [], "edges": []},
        )
        session.add(workflow)
        session.flush()
        now = utcnow()
        run = Execution(
            owner_type="user",
            owner_id=user.id,
            workflow_id=workflow.id,
            workflow_version="1.0.0",
            agent_id=agent.id,
            graph={},
            status="completed",
            input={},
            started_at=now,
            completed_at=now,
            duration_ms=120,
            tokens_used=10,
            cost=0.01,
        )
        session.add(run)
        session.flush()
        return user.id, agent.id, run.id


def copy_rows(db: Database, model: type, template_id: str, count: int, varied: dict[str, str]) -> None:
    """`count` copies (numbered `g`, from 0) of the row `template_id` of `model`'s table, with `varied`
    columns computed in SQL."""
    table = model.__table__
    columns = [column.name for column in table.columns]
    select_list = ", ".join(varied.get(name, name) for name in columns)
    with db.transaction() as session:
        session.execute(
            text(
                f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {select_list} "  # noqa: S608 (our own names)
                f"FROM {table.name}, generate_series(0, :count - 1) AS g WHERE {table.name}.id = :template"
            ),
            {"count": count, "template": template_id},
        )


def copy_agents(db: Database, template_agent: str, tenants: int) -> None:
    """AGENTS_PER_TENANT agents per tenant (copies of the template's, over four frameworks), so that runs
    spread over many agents as they would on a real platform: `bench-agent-<g>` belongs to tenant g % tenants."""
    copy_rows(
        db,
        Agent,
        template_agent,
        tenants * AGENTS_PER_TENANT,
        {
            "id": "'bench-agent-' || g",
            "name": "'Bot ' || g",
            "owner_id": f"CASE WHEN g % {tenants} = 0 THEN owner_id ELSE 'tenant-' || (g % {tenants}) END",
            "framework": "(ARRAY['native','langgraph','crewai','autogen'])[1 + g % 4]",
        },
    )


def copy_runs(db: Database, template_id: str, count: int, tenants: int) -> None:
    """`count` copies of the template spread over 90 days; 1 in `tenants` stays with the template's owner,
    and each run names one of its owner's agents."""
    copy_rows(
        db,
        Execution,
        template_id,
        count,
        {
            "id": "gen_random_uuid()::text",
            "owner_id": f"CASE WHEN g % {tenants} = 0 THEN owner_id ELSE 'tenant-' || (g % {tenants}) END",
            "agent_id": f"'bench-agent-' || (g % {tenants} + {tenants} * (g / {tenants} % {AGENTS_PER_TENANT}))",
            "status": "(ARRAY['completed','completed','completed','failed','cancelled','running'])[1 + g % 6]",
            "created_at": "now() - (random() * interval '90 days')",
            "duration_ms": "(50 + random() * 5000)::int",
        },
    )
    with db.transaction() as session:
        session.execute(text("UPDATE executions SET started_at = created_at, completed_at = created_at"))
    with db.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))


def refill_rollups(db: Database, url: str) -> float:
    """Runs copied in SQL bypass the ORM events that keep the rollups, so the rollups are dropped and made
    again by migration 0012's backfill, as an upgrade over existing runs would: returns its seconds."""
    db.dispose()
    downgrade(url, "0011")
    began = time.perf_counter()
    upgrade(url)
    elapsed = time.perf_counter() - began
    with db.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    return elapsed


def timed(db: Database, principal: Principal, timeframe: str, repeats: int = 5) -> float:
    samples = []
    with db.session() as session:  # warm-up: plans and caches
        dashboard.metrics(session, principal, timeframe)
    for _ in range(repeats):
        with db.session() as session:
            began = time.perf_counter()
            dashboard.metrics(session, principal, timeframe)
            samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def run(args: argparse.Namespace) -> None:
    with scratch_database(args.database_url) as url:
        upgrade(url)
        db = Database(url, pool_size=1, max_overflow=0)
        owner_id, agent_id, template = seed_template(db)
        copy_agents(db, agent_id, args.tenants)
        tenant = Principal(user_id=owner_id, role=Role.agent)
        admin = Principal(user_id="admin", role=Role.admin)
        copy_runs(db, template, 999, args.tenants)
        refill_rollups(db, url)
        baseline = {
            (who, tf): timed(db, p, tf) for who, p in (("tenant", tenant), ("admin", admin)) for tf in TIMEFRAMES
        }
        began = time.perf_counter()
        copy_runs(db, template, args.executions - 1000, args.tenants)
        load_s = time.perf_counter() - began
        backfill_s = refill_rollups(db, url)
        with db.session() as session:
            total = session.scalar(text("SELECT count(*) FROM executions"))
        with db.session() as session:
            rollups = session.scalar(text("SELECT count(*) FROM execution_rollups"))
        print(
            f"{total} executions over 90 days, {args.tenants} tenants with {AGENTS_PER_TENANT} agents each "
            f"(loaded in {load_s:.0f} s); "
            f"migration 0012's backfill: {rollups} rollup rows (hourly and daily) in {backfill_s:.1f} s"
        )
        print(f"{'caller':8} {'timeframe':9} {'1000 runs':>10} {'at scale':>10} {'ratio':>7}")
        for who, principal in (("tenant", tenant), ("admin", admin)):
            for timeframe in TIMEFRAMES:
                scaled = timed(db, principal, timeframe)
                base = baseline[(who, timeframe)]
                print(f"{who:8} {timeframe:9} {base:8.1f}ms {scaled:8.1f}ms {scaled / base:6.1f}x")
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="a Postgres URL (a scratch schema is used)")
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=100)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
