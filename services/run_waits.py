"""The end of a run's wait: an approval decided or expired, a task finished. The waiting run becomes
`pending` with the outcome recorded, and is resumed from it (by whoever tells the run pool, or by the
reconciler's next pass). Written in the transaction of the decision or the task's change."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from persistence.models import Execution
from schedulers.execution_lifecycle import ExecutionStatus, transition


def resolve(session: Session, execution_id: str | None, waited_id: str, outcome: dict[str, Any]) -> bool:
    """Record `outcome` for the run waiting on `waited_id` (an approval or task id). False if the run is
    not waiting on it (cancelled meanwhile, or already resumed)."""
    if not execution_id:
        return False
    run = session.get(Execution, execution_id, with_for_update=True, populate_existing=True)
    waiting = run is not None and run.status == ExecutionStatus.waiting and run.waiting_on
    if not waiting or run.waiting_on.get("id") != waited_id:
        return False
    run.waiting_on = {**run.waiting_on, "outcome": outcome}
    run.status = transition(run.status, ExecutionStatus.pending).value
    return True
