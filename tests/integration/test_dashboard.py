"""The dashboard on each real database: every figure computed from recorded rows, for the caller's tenant."""

from __future__ import annotations

import itertools
import os
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select

from core.clock import utcnow
from persistence.db import Database
from persistence.execution_rollups import GRAINS, fold_all, start_of
from persistence.migrate import upgrade
from persistence.models import Configuration, Execution, ExecutionRollup, ExecutionRollupDelta
from services import dashboard
from services.principal import Principal, Role
from tests.conftest import POSTGRES_ENV, _postgres_schema
from tests.integration.test_agents import _agent, _user
from tests.integration.test_auth_flow import assert_error


def _runs(db, agent: dict, owner_id: str, spec: list[tuple[float, str, int]]) -> None:
    """Executions `hours_ago`, `status`, `duration_ms` for the agent, owned by `owner_id`."""
    now = utcnow()
    with db.transaction() as session:
        for hours_ago, status, duration in spec:
            created = now - timedelta(hours=hours_ago)
            session.add(
                Execution(
                    workflow_version="1.0.0",
                    agent_id=agent["id"],
                    graph={},
                    status=status,
                    input={},
                    owner_type="user",
                    owner_id=owner_id,
                    created_at=created,
                    started_at=created + timedelta(milliseconds=50),
                    duration_ms=duration,
                    tokens_used=10,
                    cost=0.5,
                )
            )


def test_the_dashboard_counts_what_was_recorded(client, db) -> None:
    _user(client, "root")
    alice, bob = _user(client, "alice"), _user(client, "bob")
    alice_id = client.get("/api/v1/users/me", headers=alice).json()["id"]
    native = _agent(client, alice)
    graph = _agent(client, alice, framework="langgraph")
    _runs(db, native, alice_id, [(1, "completed", 100), (2, "failed", 300), (3, "completed", 200)])
    _runs(db, graph, alice_id, [(5, "completed", 400)])
    _runs(db, native, alice_id, [(30, "completed", 100), (40, "completed", 100)])  # the previous 24 h
    with db.transaction() as session:
        session.add(
            Configuration(name="cfg", framework="native", owner_type="user", owner_id=alice_id, configuration={})
        )

    body = client.get("/api/v1/dashboard/metrics?timeframe=24h", headers=alice).json()
    overview = body["overview"]
    assert overview["executions"] == {"value": 4, "previous": 2, "change": 100.0, "trend": "up"}
    assert overview["active_agents"]["value"] == 2 and overview["active_agents"]["previous"] == 1
    assert overview["frameworks"] == {"value": 2, "change": 2}  # both agents are new this period
    assert overview["saved_configs"] == {"value": 1, "change": 1}
    trends = body["charts"]["execution_trends"]
    assert sum(point["total"] for point in trends) == 4 and sum(point["failed"] for point in trends) == 1
    assert all(point["date"].endswith(":00:00Z") for point in trends)
    distribution = {item["framework"]: item for item in body["charts"]["framework_distribution"]}
    assert distribution["native"]["executions"] == 3 and distribution["langgraph"]["executions"] == 1
    performance = body["charts"]["performance"]
    assert performance["finished_executions"] == 4 and performance["success_rate"] == 0.75
    assert performance["average_duration_ms"] == 250.0 and performance["max_duration_ms"] == 400
    assert performance["tokens_used"] == 40 and abs(performance["average_start_latency_ms"] - 50.0) < 5
    assert len(body["recent_activity"]) == 6

    week = client.get("/api/v1/dashboard/metrics?timeframe=7d", headers=alice).json()
    assert week["overview"]["executions"]["value"] == 6 and week["overview"]["executions"]["previous"] == 0

    # Another tenant sees none of it.
    other = client.get("/api/v1/dashboard/metrics", headers=bob).json()
    assert other["overview"]["executions"]["value"] == 0 and other["recent_activity"] == []
    assert_error(client.get("/api/v1/dashboard/metrics?timeframe=1y", headers=alice), 422, "VALIDATION_ERROR")
    # Without a timeframe, the last 30 days; the unit in any case.
    default = client.get("/api/v1/dashboard/metrics", headers=alice).json()
    assert default["timeframe"] == "30d" and default["overview"]["executions"]["value"] == 6
    assert client.get("/api/v1/dashboard/metrics?timeframe=7D", headers=alice).json()["timeframe"] == "7d"


def test_the_real_time_stream_sends_the_dashboard(client, db) -> None:
    _user(client, "root")
    alice = _user(client, "alice")
    with client.stream("GET", "/api/v1/dashboard/real-time", headers={**alice, "Last-Event-ID": "41"}) as stream:
        lines = []
        for line in stream.iter_lines():
            lines.append(line)
            if line.startswith("data:"):
                break
    assert lines[0] == "id: 42" and lines[1] == "event: metrics" and '"overview"' in lines[2]


# --- the hourly rollups behind it: exact whatever changes a run, and the same as the runs say -------------


def _expected_rollups(session) -> dict[tuple, dict]:
    """What the rollup table must hold, counted here in Python from every stored run."""
    expected: dict[tuple, dict] = {}
    for run, grain in itertools.product(session.scalars(select(Execution)), GRAINS):
        key = (grain, run.owner_type, run.owner_id, start_of(grain, run.created_at), run.agent_id or "")
        row = expected.setdefault(
            key,
            dict.fromkeys(
                (
                    "runs",
                    "completed",
                    "failed",
                    "finished",
                    "duration_ms_total",
                    "duration_count",
                    "tokens_used",
                    "cost",
                    "latency",
                    "latency_count",
                ),
                0,
            )
            | {"duration_ms_max": None},
        )
        finished = run.status in ("completed", "failed", "cancelled", "timeout")
        row["runs"] += 1
        row["completed"] += run.status == "completed"
        row["failed"] += run.status in ("failed", "timeout")
        if finished:
            row["finished"] += 1
            if run.duration_ms is not None:
                row["duration_ms_total"] += run.duration_ms
                row["duration_count"] += 1
                row["duration_ms_max"] = max(row["duration_ms_max"] or 0, run.duration_ms)
            row["tokens_used"] += run.tokens_used
            row["cost"] += run.cost
            if run.started_at is not None:
                row["latency"] += (run.started_at - run.created_at).total_seconds()
                row["latency_count"] += 1
    return expected


def _stored_rollups(session) -> dict[tuple, dict]:
    stored = {}
    for row in session.scalars(select(ExecutionRollup)):
        if row.runs:  # a row whose runs all moved or went away stays, at zero
            stored[(row.grain, row.owner_type, row.owner_id, row.starts_at, row.agent_id)] = {
                "runs": row.runs,
                "completed": row.completed,
                "failed": row.failed,
                "finished": row.finished,
                "duration_ms_total": row.duration_ms_total,
                "duration_count": row.duration_count,
                "tokens_used": row.tokens_used,
                "cost": row.cost,
                "latency": row.start_latency_s_total,
                "latency_count": row.start_latency_count,
                "duration_ms_max": row.duration_ms_max,
            }
    return stored


def _assert_rollups_match_the_runs(db) -> None:
    """After folding the deltas. (SQLite's backfill measures start latency through julianday, to some
    microseconds.)"""
    fold_all(db)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(ExecutionRollupDelta)) == 0
        expected, stored = _expected_rollups(session), _stored_rollups(session)
    assert stored.keys() == expected.keys()
    for key, row in expected.items():
        assert stored[key] == {
            **row,
            "cost": pytest.approx(row["cost"]),
            "latency": pytest.approx(row["latency"], abs=1e-3),
        }, key


def test_rollups_follow_every_change_to_a_run(client, db) -> None:
    alice = _user(client, "alice")
    alice_id = client.get("/api/v1/users/me", headers=alice).json()["id"]
    first, second = _agent(client, alice), _agent(client, alice, framework="langgraph")
    hour = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    with db.transaction() as session:
        runs = [
            Execution(
                workflow_version="1.0.0",
                agent_id=agent["id"],
                graph={},
                status="pending",
                input={},
                owner_type="user",
                owner_id=alice_id,
                created_at=hour + timedelta(minutes=minutes),
            )
            for agent, minutes in ((first, 5), (first, 59), (first, 60), (second, 30), (first, 61))
        ]
        session.add_all(runs)
        session.add(
            Execution(
                workflow_version="1.0.0",
                graph={},
                status="pending",
                input={},
                owner_type="user",
                owner_id=alice_id,
                created_at=hour,
            )
        )  # no agent
    ids = [run.id for run in runs]
    _assert_rollups_match_the_runs(db)

    def change(index: int, **values) -> None:
        with db.transaction() as session:
            run = session.get(Execution, ids[index])
            for name, value in values.items():
                setattr(run, name, value)

    change(0, status="running", started_at=hour + timedelta(minutes=5, seconds=2))
    change(0, status="completed", duration_ms=900, tokens_used=12, cost=0.25)
    change(1, status="running", started_at=hour + timedelta(minutes=59, seconds=30))
    change(1, status="failed", duration_ms=300)
    change(2, status="timeout", duration_ms=5000, tokens_used=3)
    change(3, status="cancelled")
    _assert_rollups_match_the_runs(db)

    change(0, duration_ms=100)  # the hour's longest run got shorter: the maximum is recounted
    change(2, created_at=hour + timedelta(minutes=20))  # moved into the first hour
    with db.transaction() as session:
        session.delete(session.get(Execution, ids[1]))
    with db.transaction() as session:  # changed without being loaded first: its row tells the old values
        run = session.get(Execution, ids[4])
        session.expire(run, ["status"])
        run.status = "completed"
    _assert_rollups_match_the_runs(db)
    with db.session() as session:
        first_hour = session.get(ExecutionRollup, ("hour", "user", alice_id, hour, first["id"]))
    assert first_hour.runs == 2 and first_hour.duration_ms_max == 5000


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_migration_counts_the_runs_stored_before_it(backend, tmp_path) -> None:
    if backend == "sqlite":
        url, holder = f"sqlite:///{tmp_path / 'before.db'}", None
        upgrade(url, "0011")
    else:
        base_url = os.environ.get(POSTGRES_ENV)
        if not base_url:
            pytest.skip(f"Postgres tests need {POSTGRES_ENV} (CI sets it)")
        holder = _postgres_schema(base_url, "0011")
        url = next(holder)
    try:
        database = Database(url)
        now = utcnow()
        rows = [
            {
                "id": f"run-{n}",
                "owner_type": "user",
                "owner_id": f"owner-{n % 2}",
                "workflow_version": "1.0.0",
                "graph": {},
                "status": ("completed", "failed", "running", "cancelled")[n % 4],
                "input": {},
                "created_at": now - timedelta(minutes=17 * n),
                "updated_at": now,
                "started_at": now - timedelta(minutes=17 * n) + timedelta(seconds=n) if n % 3 else None,
                "duration_ms": 100 * n if n % 5 else None,
                "tokens_used": n,
                "cost": n / 10,
            }
            for n in range(40)
        ]
        columns = {
            column.name: column.default.arg
            for column in Execution.__table__.columns
            if column.default is not None and not callable(column.default.arg)
        }
        with database.transaction() as session:  # Core, as the runs of an older version were written
            session.execute(insert(Execution.__table__), [{**columns, **row} for row in rows])
        database.dispose()
        upgrade(url)
        database = Database(url)
        _assert_rollups_match_the_runs(database)
        database.dispose()
    finally:
        if holder is not None:
            next(holder, None)


def test_the_dashboard_agrees_with_the_runs_over_partial_days_and_hours(client, db) -> None:
    """Whole days and hours come from the rollups and the ends of the period from the runs: every figure
    must be what counting the runs themselves gives, at a moment that is on neither a day nor an hour."""
    alice = _user(client, "alice")
    alice_id = client.get("/api/v1/users/me", headers=alice).json()["id"]
    agents = [_agent(client, alice), _agent(client, alice, framework="langgraph")]
    now = utcnow().replace(minute=37, second=11, microsecond=0) - timedelta(hours=1)
    statuses = ("completed", "failed", "completed", "timeout", "running", "cancelled", "completed")
    offsets = [1, 20, 36, 38, 95, 24 * 60 - 30, 24 * 60 + 30, 24 * 60 + 50, 48 * 60 - 1, 48 * 60 + 1]
    offsets += [day * 24 * 60 + minutes for day in range(2, 15) for minutes in (-7, 13, 300, 1000)]
    with db.transaction() as session:
        for index, minutes in enumerate(offsets):
            created = now - timedelta(minutes=minutes)
            session.add(
                Execution(
                    workflow_version="1.0.0",
                    agent_id=agents[index % 5 == 0]["id"],
                    graph={},
                    status=statuses[index % len(statuses)],
                    input={},
                    owner_type="user",
                    owner_id=alice_id,
                    created_at=created,
                    started_at=created + timedelta(seconds=1),
                    duration_ms=10 * minutes,
                    tokens_used=10,
                    cost=0.5,
                )
            )
    alice_principal = Principal(user_id=alice_id, role=Role.user)
    with db.session() as session:
        unfolded = {**dashboard.metrics(session, alice_principal, "7d", now=now), "recent_activity": None}
    assert fold_all(db) > 0  # the figures were read through the deltas; folding them changes nothing
    with db.session() as session:
        assert {**dashboard.metrics(session, alice_principal, "7d", now=now), "recent_activity": None} == unfolded
        stored = list(session.scalars(select(Execution)))
        for timeframe, span in (("24h", timedelta(hours=24)), ("7d", timedelta(days=7))):
            body = dashboard.metrics(session, alice_principal, timeframe, now=now)
            period = [run for run in stored if now - span <= run.created_at < now]
            before = [run for run in stored if now - 2 * span <= run.created_at < now - span]
            finished = [run for run in period if run.status != "running"]
            assert body["overview"]["executions"]["value"] == len(period), timeframe
            assert body["overview"]["executions"]["previous"] == len(before), timeframe
            assert body["overview"]["active_agents"]["value"] == len({run.agent_id for run in period})
            trends = body["charts"]["execution_trends"]
            assert sum(point["total"] for point in trends) == len(period)
            assert sum(point["failed"] for point in trends) == sum(
                run.status in ("failed", "timeout") for run in period
            )
            assert sum(point["successful"] for point in trends) == sum(run.status == "completed" for run in period)
            performance = body["charts"]["performance"]
            assert performance["finished_executions"] == len(finished)
            assert performance["max_duration_ms"] == max(run.duration_ms for run in finished)
            average = round(sum(run.duration_ms for run in finished) / len(finished), 1)
            assert performance["average_duration_ms"] == average and performance["tokens_used"] == 10 * len(finished)
            executions = {item["framework"]: item["executions"] for item in body["charts"]["framework_distribution"]}
            assert executions["langgraph"] == sum(run.agent_id == agents[1]["id"] for run in period)
