"""Hourly and daily execution rollups (`ExecutionRollup`), exact at every moment.

Mapper events on `Execution` take a run's old contribution to its (owner, agent, hour) out and put the new
one in, as a delta row inserted in the same transaction (`ExecutionRollupDelta`): insert only, so runs
never wait on a shared row, and no code path that writes runs through the ORM can skip it. `fold` moves
deltas into the hourly and daily rows in one transaction (the reconciler calls it every pass); readers
add the deltas not folded yet in the same statement. The step loop's Core checkpoint changes only a
running run's progress, which no rollup counts (sums are over finished runs). Migration 0012 fills the
rollups from the runs already stored.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, delete, event, func, insert, inspect, select, update
from sqlalchemy.dialects import postgresql, sqlite

from persistence.models import Execution, ExecutionRollup, ExecutionRollupDelta
from schedulers.execution_lifecycle import FAILED, FINISHED, ExecutionStatus

GRAINS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
NO_AGENT = ""

# The columns a contribution depends on; a change to any other leaves the rollup as it is.
_FIELDS = (
    "owner_type",
    "owner_id",
    "agent_id",
    "created_at",
    "status",
    "started_at",
    "duration_ms",
    "tokens_used",
    "cost",
)
SUMMED = (
    "runs",
    "completed",
    "failed",
    "finished",
    "duration_ms_total",
    "duration_count",
    "tokens_used",
    "cost",
    "start_latency_s_total",
    "start_latency_count",
)
MEASURES = (*SUMMED, "duration_ms_max")
_KEY = ("grain", "owner_type", "owner_id", "starts_at", "agent_id")


def no_measures() -> dict[str, Any]:
    return {**dict.fromkeys(SUMMED, 0), "duration_ms_max": None}


def combine(into: dict[str, Any], values: dict[str, Any]) -> None:
    """Adds `values` (measures) to `into`: sums add up, the longest duration is the larger of the two."""
    for name, value in values.items():
        if name == "duration_ms_max":
            if value is not None and (into[name] is None or value > into[name]):
                into[name] = value
        else:
            into[name] += value or 0


@dataclass(frozen=True, slots=True)
class _Run:
    owner_type: str
    owner_id: str
    agent_id: str | None
    created_at: datetime
    status: str
    started_at: datetime | None
    duration_ms: int | None
    tokens_used: int | None
    cost: float | None

    @property
    def hour_key(self) -> tuple[str, str, datetime, str]:
        return self.owner_type, self.owner_id, start_of("hour", self.created_at), self.agent_id or NO_AGENT

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def measures(self) -> dict[str, float]:
        counted: dict[str, float] = {
            "runs": 1,
            "completed": self.status == ExecutionStatus.completed,
            "failed": self.status in FAILED,
            "finished": self.finished,
        }
        if self.finished:
            if self.duration_ms is not None:
                counted["duration_ms_total"], counted["duration_count"] = self.duration_ms, 1
            counted["tokens_used"], counted["cost"] = self.tokens_used or 0, self.cost or 0.0
            if self.started_at is not None:
                counted["start_latency_s_total"] = (self.started_at - self.created_at).total_seconds()
                counted["start_latency_count"] = 1
        return counted


def start_of(grain: str, moment: datetime) -> datetime:
    """The start of the hour or day (UTC) that `moment` falls in."""
    hour = moment.replace(minute=0, second=0, microsecond=0)
    return hour.replace(hour=0) if grain == "day" else hour


# --- keeping it: one run's old contribution out, its new one in, as deltas ---------------------------

_before: weakref.WeakKeyDictionary[Execution, _Run] = weakref.WeakKeyDictionary()


@event.listens_for(Execution, "after_insert")
def _inserted(_mapper: Any, connection: Connection, run: Execution) -> None:
    _record(connection, None, _current(run))


@event.listens_for(Execution, "before_update")
def _updating(_mapper: Any, connection: Connection, run: Execution) -> None:
    state = inspect(run)
    if any(state.attrs[name].history.has_changes() for name in _FIELDS):
        _before[run] = _previous(connection, run)


@event.listens_for(Execution, "after_update")
def _updated(_mapper: Any, connection: Connection, run: Execution) -> None:
    old = _before.pop(run, None)
    if old is not None:
        _record(connection, old, _current(run))


@event.listens_for(Execution, "before_delete")
def _deleting(_mapper: Any, connection: Connection, run: Execution) -> None:
    _before[run] = _previous(connection, run)


@event.listens_for(Execution, "after_delete")
def _deleted(_mapper: Any, connection: Connection, run: Execution) -> None:
    old = _before.pop(run, None)
    if old is not None:
        _record(connection, old, None)


def _current(run: Execution) -> _Run:
    return _Run(*(getattr(run, name) for name in _FIELDS))


def _previous(connection: Connection, run: Execution) -> _Run:
    """The run as the database holds it now (before this flush writes it): from the attributes' history,
    or, for one that was changed without being loaded first, from its row."""
    state = inspect(run)
    values = []
    for name in _FIELDS:
        history = state.attrs[name].history
        if history.deleted:
            values.append(history.deleted[0])
        elif history.unchanged:
            values.append(history.unchanged[0])
        else:
            row = connection.execute(
                select(*(getattr(Execution, n) for n in _FIELDS)).where(Execution.id == run.id)
            ).one()
            return _Run(*row)
    return _Run(*values)


def _record(connection: Connection, old: _Run | None, new: _Run | None) -> None:
    rows: dict[tuple, dict[str, Any]] = {}
    for run, sign in ((old, -1), (new, 1)):
        if run is not None:
            row = rows.setdefault(run.hour_key, {**no_measures(), "recount": False})
            for name, value in run.measures().items():
                row[name] += sign * value
    if new is not None and new.finished and new.duration_ms is not None:
        rows[new.hour_key]["duration_ms_max"] = new.duration_ms
    if old is not None and old.finished and old.duration_ms is not None:
        longest = rows[old.hour_key]["duration_ms_max"]  # set if the run is still finished in that hour
        rows[old.hour_key]["recount"] = longest is None or longest < old.duration_ms  # a max cannot be decremented
    columns = ("owner_type", "owner_id", "starts_at", "agent_id")
    inserts = [
        {**dict(zip(columns, key, strict=True)), **row}
        for key, row in rows.items()
        if row["recount"] or row["duration_ms_max"] is not None or any(map(row.get, SUMMED))
    ]
    if inserts:
        connection.execute(insert(ExecutionRollupDelta), inserts)


# --- folding: deltas into the hourly and daily rows ---------------------------------------------------


def fold(connection: Connection, batch: int = 10_000) -> int:
    """Moves up to `batch` deltas into the rollups, in the caller's transaction; returns how many. On
    Postgres concurrent folders take disjoint deltas (SKIP LOCKED) and rows in one order."""
    deltas = ExecutionRollupDelta.__table__
    claim = select(deltas).order_by(deltas.c.id).limit(batch)
    if connection.dialect.name == "postgresql":
        claim = claim.with_for_update(skip_locked=True)
    claimed = connection.execute(claim).mappings().all()
    if not claimed:
        return 0
    connection.execute(delete(deltas).where(deltas.c.id.in_([row["id"] for row in claimed])))
    totals: dict[tuple, dict[str, Any]] = {}
    recount: set[tuple] = set()
    for row in claimed:
        for grain in GRAINS:
            key = (grain, row["owner_type"], row["owner_id"], start_of(grain, row["starts_at"]), row["agent_id"])
            combine(totals.setdefault(key, no_measures()), {name: row[name] for name in MEASURES})
            if row["recount"]:
                recount.add(key)
    for key in sorted(totals):
        _add(connection, key, totals[key])
    for key in sorted(recount):
        _recount_longest(connection, key)
    return len(claimed)


def fold_all(db: Any) -> int:
    """Folds every delta waiting, a batch per transaction (`db`: a `persistence.db.Database`)."""
    folded = 0
    while True:
        with db.transaction() as session:
            count = fold(session.connection())
        folded += count
        if count == 0:
            return folded


def _add(connection: Connection, key: tuple, values: dict[str, Any]) -> None:
    table = ExecutionRollup.__table__
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values({**dict(zip(_KEY, key, strict=True)), **values})
    excluded, kept = statement.excluded, table.c.duration_ms_max
    changes = {name: table.c[name] + excluded[name] for name in SUMMED}
    longer = excluded.duration_ms_max
    changes["duration_ms_max"] = case((kept.is_(None), longer), (longer > kept, longer), else_=kept)
    connection.execute(statement.on_conflict_do_update(index_elements=list(_KEY), set_=changes))


def _recount_longest(connection: Connection, key: tuple) -> None:
    grain, owner_type, owner_id, start, agent_id = key
    agent = Execution.agent_id.is_(None) if agent_id == NO_AGENT else Execution.agent_id == agent_id
    longest = (
        select(func.max(Execution.duration_ms))
        .where(
            Execution.owner_type == owner_type,
            Execution.owner_id == owner_id,
            agent,
            Execution.created_at >= start,
            Execution.created_at < start + GRAINS[grain],
            Execution.status.in_(FINISHED),
        )
        .scalar_subquery()
    )
    row = ExecutionRollup.__table__.c
    connection.execute(
        update(ExecutionRollup.__table__)
        .where(
            and_(
                row.grain == grain,
                row.owner_type == owner_type,
                row.owner_id == owner_id,
                row.starts_at == start,
                row.agent_id == agent_id,
            )
        )
        .values(duration_ms_max=longest)
    )
