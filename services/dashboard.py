"""The dashboard (docs/api.md "Dashboard"), computed from recorded data for a timeframe and the one
before it, over what the caller may see. Whole days and hours are summed from the rollups and their
unfolded deltas (`persistence.execution_rollups`), the partial hours at either end from the runs
themselves (owner+created index), so each figure is exact and its cost does not grow with the runs stored."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, case, distinct, func, literal, select, union_all
from sqlalchemy.orm import Session

from core.clock import isoformat_z, utcnow
from persistence.execution_rollups import GRAINS, MEASURES, NO_AGENT, combine, no_measures, start_of
from persistence.models import Agent, Configuration, Execution, ExecutionRollup, ExecutionRollupDelta
from persistence.repositories.time_sql import seconds_between
from schedulers.execution_lifecycle import FAILED, FINISHED, ExecutionStatus
from services import ownership
from services.principal import Principal

TIMEFRAMES = {
    "24h": (timedelta(hours=24), "hour"),
    "7d": (timedelta(days=7), "day"),
    "30d": (timedelta(days=30), "day"),
    "90d": (timedelta(days=90), "day"),
}


def metrics(session: Session, principal: Principal, timeframe: str, now: datetime | None = None) -> dict[str, Any]:
    span, unit = TIMEFRAMES[timeframe]
    end = now or utcnow()
    start, previous_start = end - span, end - 2 * span
    current = _Runs(session, principal, start, end, unit)
    previous = _Runs(session, principal, previous_start, start, unit)
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
    by_bucket = current.sums(MEASURES, by="time")
    totals = no_measures()
    for row in by_bucket.values():
        combine(totals, row)
    runs_now, runs_before = current.runs_by_agent(), previous.runs_by_agent()
    # The agents those runs name, if they still exist (a deleted agent's runs no longer name it), and
    # whether the caller may see them (only those count in the framework distribution).
    named = sorted({agent for runs in (runs_now, runs_before) for agent, count in runs.items() if agent and count})
    known = (
        {
            row[0]: (row[1], row[2])
            for row in session.execute(
                select(Agent.id, Agent.framework, case((agents, True), else_=False)).where(Agent.id.in_(named))
            )
        }
        if named
        else {}
    )
    return {
        "timeframe": timeframe,
        "period": {"start": start, "end": end},
        "overview": {
            "active_agents": _counted(
                sum(agent in known for agent in runs_now if runs_now[agent]),
                sum(agent in known for agent in runs_before if runs_before[agent]),
            ),
            "frameworks": {"value": frameworks_now, "change": frameworks_now - frameworks_before},
            "executions": _counted(int(totals["runs"]), int(sum(runs_before.values()))),
            "saved_configs": {"value": configs_now, "change": configs_new},
        },
        "charts": {
            "execution_trends": _trends(by_bucket),
            "framework_distribution": _frameworks(session, agents, runs_now, known),
            "performance": _performance(totals),
        },
        "recent_activity": list(
            session.scalars(
                select(Execution)
                .where(ownership.owned_by(Execution, principal))
                .order_by(Execution.created_at.desc(), Execution.id.desc())
                .limit(10)
            )
        ),
    }


def _counted(now: int, before: int) -> dict[str, Any]:
    """A value with its change against the previous period, in percent, and the trend."""
    change = round((now - before) / before * 100, 1) if before else (100.0 if now else 0.0)
    return {"value": now, "previous": before, "change": change, "trend": "up" if now >= before else "down"}


def _trends(by_bucket: dict[datetime, dict[str, float]]) -> list[dict]:
    return [
        {
            "date": isoformat_z(key),
            "total": int(row["runs"]),
            "successful": int(row["completed"]),
            "failed": int(row["failed"]),
        }
        for key, row in sorted(by_bucket.items())
        if row["runs"]
    ]


def _frameworks(
    session: Session, agents: ColumnElement[bool], runs: dict[str, float], known: dict[str, tuple[str, bool]]
) -> list[dict]:
    counts = dict(session.execute(select(Agent.framework, func.count()).where(agents).group_by(Agent.framework)).all())
    executions: dict[str, float] = {}
    for agent, count in runs.items():
        framework, visible = known.get(agent, (None, False))
        if visible:
            executions[framework] = executions.get(framework, 0) + count
    total = sum(counts.values()) or 1
    return [
        {
            "framework": name,
            "agents": count,
            "percentage": round(count / total * 100, 1),
            "executions": int(executions.get(name, 0)),
        }
        for name, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


def _performance(totals: dict[str, float]) -> dict[str, Any]:
    count, completed = int(totals["finished"]), int(totals["completed"])
    durations, latencies = totals["duration_count"], totals["start_latency_count"]
    return {
        "finished_executions": count,
        "success_rate": round(completed / count, 4) if count else None,
        "average_duration_ms": round(totals["duration_ms_total"] / durations, 1) if durations else None,
        "max_duration_ms": int(totals["duration_ms_max"]) if totals["duration_ms_max"] is not None else None,
        "tokens_used": int(totals["tokens_used"]),
        "cost": round(float(totals["cost"]), 6),
        "average_start_latency_ms": round(totals["start_latency_s_total"] / latencies * 1000, 1) if latencies else None,
    }


class _Runs:
    """The caller's runs created in [start, end), in pieces: whole days from the daily rollups (unless the
    figures go by hour), whole hours from the hourly ones, and the partial hours at either end from the
    runs themselves. Each measure is one SQL expression per source, summed (a maximum: maxed) across them."""

    def __init__(self, session: Session, principal: Principal, start: datetime, end: datetime, unit: str) -> None:
        self.session, self.principal = session, principal
        self.dialect, self.unit = session.get_bind().dialect.name, unit
        self.pieces: list[tuple[str | None, datetime, datetime]] = []  # (grain, or None for the runs; from, to)
        self._split(start, end, ["day", "hour"] if unit == "day" else ["hour"])

    def _split(self, start: datetime, end: datetime, grains: list[str]) -> None:
        if not grains:  # the runs themselves, a piece per hour they fall in (each then one trend bucket)
            while start < end:
                cut = min(end, start_of("hour", start) + GRAINS["hour"])
                self.pieces.append((None, start, cut))
                start = cut
            return
        grain, finer = grains[0], grains[1:]
        first = start_of(grain, start)
        first += GRAINS[grain] if first < start else timedelta(0)
        last = start_of(grain, end)
        if first >= last:
            self._split(start, end, finer)
            return
        if start < first:
            self._split(start, first, finer)
        self.pieces.append((grain, first, last))
        if last < end:
            self._split(last, end, finer)

    def sums(self, names: tuple[str, ...], *, by: str | None = None) -> dict[Any, dict[str, float]]:
        """{key: {measure: value}}: one key (None), or by "time" (the start of each trend bucket, hour or day
        as `unit`), or by "agent" (its id, "" for runs without one)."""
        merged: dict[Any, dict[str, float]] = {} if by is not None else {None: no_measures()}
        for grain, a, b in self.pieces:
            if grain is None:
                table, moment, agent = Execution, Execution.created_at, func.coalesce(Execution.agent_id, NO_AGENT)
                columns = [_raw_measure(name, self.dialect) for name in names]
            else:
                table = self._rolled_up(grain, a, b)
                moment, agent = table.c.starts_at, table.c.agent_id
                columns = [(func.max if name == "duration_ms_max" else func.sum)(table.c[name]) for name in names]
            # Rollup rows group by their own start (no per-row date arithmetic); a piece of runs lies in one hour.
            key = agent if by == "agent" else moment if by == "time" and grain else literal(None)
            statement = select(key, *columns).select_from(table)
            if grain is None:
                statement = statement.where(*self._runs_between(a, b))
            if by == "agent" or (by == "time" and grain):
                statement = statement.group_by(key)
            for row in self.session.execute(statement).all():
                found = row[0] if by == "agent" else start_of(self.unit, row[0] if grain else a) if by else None
                # Postgres sums integers as numeric (Decimal): made float to add up with the other sources.
                values = {
                    name: float(value) if isinstance(value, Decimal) else value
                    for name, value in zip(names, row[1:], strict=True)
                }
                combine(merged.setdefault(found, no_measures()), values)
        return merged

    def runs_by_agent(self) -> dict[str, float]:
        return {agent: row["runs"] for agent, row in self.sums(("runs",), by="agent").items()}

    def _runs_between(self, a: datetime, b: datetime) -> list[ColumnElement[bool]]:
        # Runs are never public (nothing sets it), so what the caller sees of them is what it owns.
        return [ownership.owned_by(Execution, self.principal), Execution.created_at >= a, Execution.created_at < b]

    def _rolled_up(self, grain: str, a: datetime, b: datetime) -> Any:
        """The caller's rollup rows of `grain` in [a, b) and the deltas not folded into them yet, read in one
        statement (one snapshot: a fold committing in between cannot count a delta twice or not at all)."""
        columns = ("starts_at", "agent_id", *MEASURES)
        rows = select(*(getattr(ExecutionRollup, name) for name in columns)).where(
            ExecutionRollup.grain == grain,
            ownership.owned_by(ExecutionRollup, self.principal),
            ExecutionRollup.starts_at >= a,
            ExecutionRollup.starts_at < b,
        )
        deltas = select(*(getattr(ExecutionRollupDelta, name) for name in columns)).where(
            ownership.owned_by(ExecutionRollupDelta, self.principal),
            ExecutionRollupDelta.starts_at >= a,
            ExecutionRollupDelta.starts_at < b,
        )
        return union_all(rows, deltas).subquery()


def _raw_measure(name: str, dialect: str) -> ColumnElement[Any]:
    """The same measure over the runs themselves (as `persistence.execution_rollups` counts each run)."""
    finished = Execution.status.in_(FINISHED)
    timed = finished & Execution.duration_ms.is_not(None)
    started = finished & Execution.started_at.is_not(None)
    if name == "runs":
        return func.count()
    if name == "duration_ms_max":
        return func.max(case((finished, Execution.duration_ms)))
    value, when = {
        "completed": (1, Execution.status == ExecutionStatus.completed.value),
        "failed": (1, Execution.status.in_(FAILED)),
        "finished": (1, finished),
        "duration_ms_total": (Execution.duration_ms, timed),
        "duration_count": (1, timed),
        "tokens_used": (Execution.tokens_used, finished),
        "cost": (Execution.cost, finished),
        "start_latency_s_total": (seconds_between(Execution.created_at, Execution.started_at, dialect), started),
        "start_latency_count": (1, started),
    }[name]
    return func.sum(case((when, value), else_=0))
