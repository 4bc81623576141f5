"""The execution (workflow run) lifecycle as data.

`pending → running`, and `running → waiting → pending` around each wait, ending
`completed | failed | timeout | cancelled`. A run is stored `pending`; the run actor that claims it makes it
`running` (`services.executions.DatabaseRunStore.claim`); a node that waits for a person or a task makes it
`waiting`, and the end of that wait makes it `pending` again (`services.run_waits`) until an actor claims
it and resumes. Every change goes through `transition`.
"""

from __future__ import annotations

from enum import StrEnum

from schedulers.lifecycle import checked, require_complete


class ExecutionStatus(StrEnum):
    pending = "pending"  # stored, or its wait ended: waiting for a run actor to claim it
    running = "running"  # a run actor holds its lease and executes its steps
    waiting = "waiting"  # paused at an approval or task node; no actor holds it (`waiting_on` says what for)
    completed = "completed"  # every node ran; `output` is the result
    failed = "failed"  # a node failed (after its retries) or could not resume
    cancelled = "cancelled"  # cancelled by a person: at once if pending or waiting, at its next check if running
    timeout = "timeout"  # ran past its `timeout` option (or the graph's)


# Not ended: the reconciler makes sure each has (or gets) an actor.
ACTIVE = frozenset({ExecutionStatus.pending, ExecutionStatus.running, ExecutionStatus.waiting})
# Ended: no move leaves these; the dashboard's rollups count them as finished.
FINISHED = frozenset(
    {ExecutionStatus.completed, ExecutionStatus.failed, ExecutionStatus.cancelled, ExecutionStatus.timeout}
)
# Ended in error: counted as failures.
FAILED = frozenset({ExecutionStatus.failed, ExecutionStatus.timeout})
# A run actor may claim these (a `running` one only when its lease ran out: it is taken over).
CLAIMABLE = frozenset({ExecutionStatus.pending, ExecutionStatus.running})

ALLOWED: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    ExecutionStatus.pending: frozenset({ExecutionStatus.running, ExecutionStatus.cancelled}),
    # running → running: another actor takes over a run whose lease ran out.
    ExecutionStatus.running: frozenset(
        {
            ExecutionStatus.running,
            ExecutionStatus.waiting,
            ExecutionStatus.completed,
            ExecutionStatus.failed,
            ExecutionStatus.cancelled,
            ExecutionStatus.timeout,
        }
    ),
    ExecutionStatus.waiting: frozenset({ExecutionStatus.pending, ExecutionStatus.cancelled}),
    ExecutionStatus.completed: frozenset(),
    ExecutionStatus.failed: frozenset(),
    ExecutionStatus.cancelled: frozenset(),
    ExecutionStatus.timeout: frozenset(),
}
require_complete(ExecutionStatus, ALLOWED, ACTIVE, FINISHED)


def parse_status(value: str) -> ExecutionStatus:
    """A status filter's word; ValueError listing the statuses."""
    try:
        return ExecutionStatus(value.strip().lower())
    except ValueError:
        raise ValueError(f"one of {', '.join(ExecutionStatus)}") from None


def transition(current: ExecutionStatus | str, target: ExecutionStatus | str) -> ExecutionStatus:
    """The new status, or InvalidTransition (409) naming both ends."""
    return checked(ALLOWED, ExecutionStatus, "An execution", current, target)
