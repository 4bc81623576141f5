"""The dashboard (seed 001 DashboardMetrics), computed from recorded data for a timeframe and the one
before it, over what the caller may see. Every figure is a grouped query (indexes: executions by owner,
status and creation time), so it stays a handful of queries whatever the volume."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, distinct, func, select
from sqlalchemy.orm import Session

from core.clock import utcnow
from persistence.models import Agent, Configuration, Execution
from persistence.repositories.time_sql import bucket, seconds_between
from services import ownership
from services.principal import Principal

TIMEFRAMES = {"24h": (timedelta(hours=24), "hour"), "7d": (timedelta(days=7), "day"),
              "30d": (timedelta(days=30), "day"), "90d": (timedelta(days=90), "day")}  # fmt: skip


def metrics(session: Session, principal: Principal, timeframe: str, now: datetime | None = None) -> dict[str, Any]:
    span, unit = TIMEFRAMES[timeframe]
    end = now or utcnow()
    start, previous_start = end - span, end - 2 * span
    dialect = session.get_bind().dialect.name
    runs = ownership.visible_to(Execution, principal)

    def executions_between(a: datetime, b: datetime) -> tuple[int, int]:
        row = session.execute(
            select(func.count(), func.count(distinct(Execution.agent_id)))
            .where(runs, Execution.created_at >= a, Execution.created_at < b)
        ).one()  # fmt: skip
        return int(row[0]), int(row[1])

    executions_now, agents_now = executions_between(start, end)
    executions_before, agents_before = executions_between(previous_start, start)
    agents = ownership.visible_to(Agent, principal)
    frameworks_now = session.scalar(select(func.count(distinct(Agent.framework))).where(agents)) or 0
    frameworks_before = (
        session.scalar(select(func.count(distinct(Agent.framework))).where(agents, Agent.created_at < start)) or 0
    )
    configs = ownership.visible_to(Configuration, principal)
    configs_now = session.scalar(select(func.count()).select_from(Configuration).where(configs)) or 0
    configs_new = (
        session.scalar(
            select(func.count()).select_from(Configuration).where(configs, Configuration.created_at >= start)
        )
        or 0
    )
    return {
        "timeframe": timeframe,
        "period": {"start": start, "end": end},
        "overview": {
            "active_agents": _counted(agents_now, agents_before),
            "frameworks": {"value": frameworks_now, "change": frameworks_now - frameworks_before},
            "executions": _counted(executions_now, executions_before),
            "saved_configs": {"value": configs_now, "change": configs_new},
        },
        "charts": {
            "execution_trends": _trends(session, runs, start, end, unit, dialect),
            "framework_distribution": _frameworks(session, principal, start, end),
            "performance": _performance(session, runs, start, end, dialect),
        },
        "recent_activity": list(
            session.scalars(
                select(Execution).where(runs).order_by(Execution.created_at.desc(), Execution.id.desc()).limit(10)
            )
        ),
    }


def _counted(now: int, before: int) -> dict[str, Any]:
    """A value with its change against the previous period, in percent, and the trend."""
    change = round((now - before) / before * 100, 1) if before else (100.0 if now else 0.0)
    return {"value": now, "previous": before, "change": change, "trend": "up" if now >= before else "down"}


def _trends(session: Session, runs: Any, start: datetime, end: datetime, unit: str, dialect: str) -> list[dict]:
    key = bucket(Execution.created_at, unit, dialect).label("bucket")
    rows = session.execute(
        select(key, func.count(), func.sum(case((Execution.status == "completed", 1), else_=0)),
               func.sum(case((Execution.status.in_(("failed", "timeout")), 1), else_=0)))
        .where(runs, Execution.created_at >= start, Execution.created_at < end)
        .group_by(key).order_by(key)
    ).all()  # fmt: skip
    return [{"date": row[0], "total": int(row[1]), "successful": int(row[2] or 0), "failed": int(row[3] or 0)}
            for row in rows]  # fmt: skip


def _frameworks(session: Session, principal: Principal, start: datetime, end: datetime) -> list[dict]:
    agents = ownership.visible_to(Agent, principal)
    counts = dict(session.execute(select(Agent.framework, func.count()).where(agents).group_by(Agent.framework)).all())
    runs = dict(session.execute(
        select(Agent.framework, func.count(Execution.id))
        .join(Execution, Execution.agent_id == Agent.id)
        .where(agents, ownership.visible_to(Execution, principal), Execution.created_at >= start,
               Execution.created_at < end)
        .group_by(Agent.framework)
    ).all())  # fmt: skip
    total = sum(counts.values()) or 1
    return [{"framework": name, "agents": count, "percentage": round(count / total * 100, 1),
             "executions": int(runs.get(name, 0))}
            for name, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]  # fmt: skip


def _performance(session: Session, runs: Any, start: datetime, end: datetime, dialect: str) -> dict[str, Any]:
    finished = Execution.status.in_(("completed", "failed", "cancelled", "timeout"))
    row = session.execute(
        select(func.count(), func.sum(case((Execution.status == "completed", 1), else_=0)),
               func.avg(Execution.duration_ms), func.max(Execution.duration_ms), func.sum(Execution.tokens_used),
               func.sum(Execution.cost), func.avg(seconds_between(Execution.created_at, Execution.started_at, dialect)))
        .where(runs, finished, Execution.created_at >= start, Execution.created_at < end)
    ).one()  # fmt: skip
    count, completed = int(row[0]), int(row[1] or 0)
    return {
        "finished_executions": count,
        "success_rate": round(completed / count, 4) if count else None,
        "average_duration_ms": round(float(row[2]), 1) if row[2] is not None else None,
        "max_duration_ms": int(row[3]) if row[3] is not None else None,
        "tokens_used": int(row[4] or 0),
        "cost": round(float(row[5] or 0), 6),
        "average_start_latency_ms": round(float(row[6]) * 1000, 1) if row[6] is not None else None,
    }
