"""Hourly and daily execution rollups (`ExecutionRollup`), kept exact in the transaction that changes a run.

Mapper events on `Execution` take a run's contribution to its (owner, agent, hour) and (owner, agent,
day) rows out and put the new one in, as increments, so concurrent transactions never overwrite each
other's counts: whatever path writes a run through the ORM keeps the rollups right. The step loop's
Core checkpoint changes only a running run's progress, which no rollup counts (sums are over finished
runs). Migration 0012 fills the table from the runs already stored.
"""

from __future__ import annotations

import weakref
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, event, func, inspect, select, update
from sqlalchemy.dialects import postgresql, sqlite

from persistence.models import Execution, ExecutionRollup

FINISHED = ("completed", "failed", "cancelled", "timeout")
FAILED = ("failed", "timeout")
GRAINS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
NO_AGENT = ""

# The columns a contribution depends on; a change to any other leaves the rollup as it is.
_FIELDS = ("owner_type", "owner_id", "agent_id", "created_at", "status", "started_at", "duration_ms",
           "tokens_used", "cost")  # fmt: skip
SUMMED = ("runs", "completed", "failed", "finished", "duration_ms_total", "duration_count", "tokens_used", "cost",
           "start_latency_s_total", "start_latency_count")  # fmt: skip
_KEY = ("grain", "owner_type", "owner_id", "starts_at", "agent_id")


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

    def rollup_keys(self) -> list[tuple[str, str, str, datetime, str]]:
        return [(grain, self.owner_type, self.owner_id, start_of(grain, self.created_at), self.agent_id or NO_AGENT)
                for grain in GRAINS]  # fmt: skip

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def measures(self) -> dict[str, float]:
        counted: dict[str, float] = {"runs": 1, "completed": self.status == "completed",
                                     "failed": self.status in FAILED, "finished": self.finished}  # fmt: skip
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


# --- keeping it: one run's old contribution out, its new one in -------------------------------------

_before: weakref.WeakKeyDictionary[Execution, _Run] = weakref.WeakKeyDictionary()


@event.listens_for(Execution, "after_insert")
def _inserted(_mapper: Any, connection: Connection, run: Execution) -> None:
    _apply(connection, None, _current(run))


@event.listens_for(Execution, "before_update")
def _updating(_mapper: Any, connection: Connection, run: Execution) -> None:
    state = inspect(run)
    if any(state.attrs[name].history.has_changes() for name in _FIELDS):
        _before[run] = _previous(connection, run)


@event.listens_for(Execution, "after_update")
def _updated(_mapper: Any, connection: Connection, run: Execution) -> None:
    old = _before.pop(run, None)
    if old is not None:
        _apply(connection, old, _current(run))


@event.listens_for(Execution, "before_delete")
def _deleting(_mapper: Any, connection: Connection, run: Execution) -> None:
    _before[run] = _previous(connection, run)


@event.listens_for(Execution, "after_delete")
def _deleted(_mapper: Any, connection: Connection, run: Execution) -> None:
    old = _before.pop(run, None)
    if old is not None:
        _apply(connection, old, None)


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
            row = connection.execute(select(*(getattr(Execution, n) for n in _FIELDS))
                                     .where(Execution.id == run.id)).one()  # fmt: skip
            return _Run(*row)
    return _Run(*values)


def _apply(connection: Connection, old: _Run | None, new: _Run | None) -> None:
    deltas: dict[tuple, Counter] = {}
    for run, sign in ((old, -1), (new, 1)):
        if run is not None:
            for key in run.rollup_keys():
                counter = deltas.setdefault(key, Counter())
                for name, value in run.measures().items():
                    counter[name] += sign * value
    longest = new.duration_ms if new is not None and new.finished else None
    new_keys = new.rollup_keys() if new is not None else []
    for key, counter in deltas.items():
        if any(counter.values()) or (longest is not None and key in new_keys):
            _add(connection, key, counter, longest if key in new_keys else None)
    if old is not None and old.finished and old.duration_ms is not None:
        for key in old.rollup_keys():
            if key not in new_keys or longest is None or longest < old.duration_ms:
                _recount_longest(connection, key)  # a maximum cannot be decremented: recount the period's runs


def _add(connection: Connection, key: tuple, counter: Counter, longest: int | None) -> None:
    table = ExecutionRollup.__table__
    values = {**dict(zip(_KEY, key, strict=True)), **{name: counter.get(name, 0) for name in SUMMED},
              "duration_ms_max": longest}  # fmt: skip
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(values)
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
        .where(Execution.owner_type == owner_type, Execution.owner_id == owner_id, agent,
               Execution.created_at >= start, Execution.created_at < start + GRAINS[grain],
               Execution.status.in_(FINISHED))
        .scalar_subquery()
    )  # fmt: skip
    row = ExecutionRollup.__table__.c
    connection.execute(
        update(ExecutionRollup.__table__)
        .where(and_(row.grain == grain, row.owner_type == owner_type, row.owner_id == owner_id,
                    row.starts_at == start, row.agent_id == agent_id))
        .values(duration_ms_max=longest)
    )  # fmt: skip
