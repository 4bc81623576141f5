"""Tasks: creating, assigning to an agent, status reports, an agent's queue and metrics.

Status changes go through `set_status` (the task state machine of `schedulers.task_lifecycle`, the row
locked, the agent's load counter kept, the event written to the outbox). Routing of unassigned tasks by
type and priority is the task router's job; here a task is assigned when the caller names the agent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session, make_transient_to_detached

from core.clock import utcnow
from core.errors import Conflict, DomainError, FieldIssue, NotFound, ValidationFailed, refuse_read_only
from core.ids import new_id
from persistence.models import Agent, Approval, Event, Execution, Task
from persistence.repositories.json_arrays import array_contains
from persistence.repositories.pages import Page, fetch_page
from persistence.repositories.search import matches_text
from persistence.repositories.statements import column_defaults, prepared_insert
from persistence.repositories.time_sql import hour_of_day, seconds_between
from schedulers.agent_lifecycle import AgentStatus
from schedulers.execution_lifecycle import ACTIVE as RUN_ACTIVE
from schedulers.task_lifecycle import ACTIVE, PRIORITIES, TERMINAL, WAITING, TaskStatus, transition
from services import events, notifications, ownership, projects, run_waits
from services.agents import lock_agent
from services.principal import Principal

# A new task's row: what the request and the checks give (and `status`, `pending`), the model's defaults
# for the rest.
_SUPPLIED = (
    "id",
    "title",
    "type",
    "priority",
    "status",
    "owner_type",
    "owner_id",
    "created_by",
    "created_at",
    "updated_at",
    "sla_due_at",
)
_new_task_defaults = column_defaults(Task, *_SUPPLIED)
_INSERT_TASK = prepared_insert(Task, *_SUPPLIED, *_new_task_defaults.attributes)

T = TypeVar("T")

EVENT_OF_STATUS = {
    TaskStatus.assigned: "task.assigned",
    TaskStatus.completed: "task.completed",
    TaskStatus.failed: "task.failed",
}


def create_task(
    session: Session,
    principal: Principal,
    data: dict[str, Any],
    *,
    approval_gate: Callable[[Task, str | None], Any] | None = None,
) -> Task:
    """Create a task. `approval_gate(task, agent_id)` is asked first whether it must wait for a human
    (P0/P1 by default): then it is not assigned until approved. Tasks that are neither gated nor assigned
    at once are created in groups by `create_tasks` (the API's group commit)."""
    agent_id = data.pop("agent_id", None)
    [task] = _insert(session, [new_task_row(session, principal, data)], [events.current_correlation_id()])
    # The object is the row just written, persistent in the session without a read, for the approval gate
    # and direct assignment below.
    make_transient_to_detached(task)
    session.add(task)
    if agent_id:
        ownership.get_visible(session, Agent, agent_id, principal)  # 404 for an agent the owner cannot use
    if approval_gate is not None and approval_gate(task, agent_id):
        return task
    if agent_id:
        assign(session, principal, task, agent_id)
    return task


@dataclass(frozen=True, slots=True)
class NewTaskRequest:
    """One request's new task for `create_tasks`: its fields (no `agent_id`, not gated for approval)."""

    principal: Principal
    data: dict[str, Any]
    correlation_id: str | None


def create_tasks(session: Session, requests: Sequence[NewTaskRequest]) -> list[Task | DomainError]:
    """Many requests' new tasks in one transaction, each stored `pending` for the router: every request's
    checks (owner, project; reads only), then all rows and their `task.created` events in two statements.
    A request whose checks fail gets its error and the others are written."""
    outcomes: list[DomainError | None] = []
    rows, correlation_ids = [], []
    for request in requests:
        try:
            rows.append(new_task_row(session, request.principal, dict(request.data)))
        except DomainError as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)
            correlation_ids.append(request.correlation_id)
    written = iter(_insert(session, rows, correlation_ids) if rows else ())
    return [next(written) if outcome is None else outcome for outcome in outcomes]


def new_task_row(session: Session, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
    """A new task's row from the request's fields, after the checks (which only read): that the caller may
    create for the owner, and sees the project."""
    owner_type, owner_id = ownership.resolve_owner(
        session, principal, data.pop("owner_type", None), data.pop("owner_id", None)
    )
    projects.check_task_project(session, principal, data.get("project_id"))
    data.setdefault("title", _default_title(data))
    now = utcnow()
    row = _new_task_defaults()
    row.update(
        data,
        id=new_id(),
        status=TaskStatus.pending.value,
        owner_type=owner_type,
        owner_id=owner_id,
        created_by=principal.user_id,
        created_at=now,
        updated_at=now,
        sla_due_at=_sla_due(now, data.get("sla_target")),
    )
    return row


def _insert(session: Session, rows: list[dict[str, Any]], correlation_ids: list[str | None]) -> list[Task]:
    """New tasks and their `task.created` events as two prepared Core inserts (the ORM's flush of the same
    rows costs twice the CPU; many rows are still one statement each). Returns the tasks as transient
    objects of the rows just written."""
    session.execute(_INSERT_TASK, rows)
    tasks = [Task(**row) for row in rows]
    events.emit_rows(
        session,
        [
            events.row_of(
                "task.created",
                summary(task),
                source="tasks",
                owner=task,
                subject_id=task.id,
                correlation_id=correlation_id,
            )
            for task, correlation_id in zip(tasks, correlation_ids, strict=True)
        ],
    )
    return tasks


def assign(session: Session, principal: Principal, task: Task, agent_id: str) -> Agent:
    """Give the task to an agent its owner may use: one they can see, enabled, deployed, with capacity."""
    agent = lock_agent(session, ownership.get_visible(session, Agent, agent_id, principal).id)
    assert agent is not None
    if not agent.is_active:
        raise Conflict(f"Agent '{agent.name}' is disabled and receives no new tasks")
    if agent.status != AgentStatus.active.value:
        raise Conflict(f"Agent '{agent.name}' is {agent.status}; deploy it before assigning tasks")
    if agent.current_tasks >= agent.max_concurrent_tasks:
        raise Conflict(f"Agent '{agent.name}' is at its limit of {agent.max_concurrent_tasks} concurrent tasks")
    task.agent_id = agent.id
    set_status(session, task, TaskStatus.assigned)
    return agent


def set_status(
    session: Session,
    task: Task,
    target: TaskStatus,
    *,
    error: str | None = None,
    result: dict[str, Any] | None = None,
    progress: float | None = None,
    by: str | None = None,
) -> Task:
    """One transition of the task, with its timestamps, the agent's load and the event (naming the person
    or identity that made it, `by`, where one did)."""
    previous, previous_agent_id = TaskStatus(task.status), task.agent_id
    task.status = transition(previous, target).value
    now = utcnow()
    if target is TaskStatus.assigned:
        task.assigned_at = now
        notifications.notify(
            session,
            task.created_by,
            "task_assigned",
            f"Task assigned: {task.title}",
            task_id=task.id,
            agent_id=task.agent_id,
        )
    elif target is TaskStatus.in_progress:
        task.started_at = task.started_at or now
    elif target in TERMINAL:
        task.completed_at = now
        task.progress = 1.0 if target is TaskStatus.completed else task.progress
    if target is TaskStatus.pending:
        task.agent_id, task.assigned_at, task.started_at = None, None, None
    if error is not None or target is TaskStatus.failed:
        task.error = error
    if result is not None:
        task.result = result
    if progress is not None:
        task.progress = progress
    _count_load(session, previous_agent_id or task.agent_id, previous, target)
    if target in TERMINAL and task.meta.get("execution_id"):  # a workflow's `task` node waits for this
        _resume_run(session, task)
    events.emit(
        session,
        EVENT_OF_STATUS.get(target, "task.updated"),
        {**summary(task), "previous_status": previous.value, "error": task.error, "changed_by": by},
        source="tasks",
        owner=task,
        subject_id=task.id,
    )
    session.flush()
    return task


# What a worker (or the task's owner) may report: progress and outcomes, or giving a task back to the
# queue. Assignment is the router's (or `agent_id` on create); approval states are the approvals'.
REPORTABLE = frozenset(
    {TaskStatus.in_progress, TaskStatus.completed, TaskStatus.failed, TaskStatus.cancelled, TaskStatus.pending}
)


def report_status(
    session: Session,
    principal: Principal,
    task_id: str,
    target: TaskStatus,
    *,
    error: str | None = None,
    result: dict[str, Any] | None = None,
    progress: float | None = None,
) -> Task:
    """A worker (or the task's owner) reports progress: allowed to whoever may change the task or its agent."""
    task = lock_task(session, task_id)
    if task is None or not _may_report(session, principal, task):
        raise NotFound("Task not found")
    return _report(session, principal, task, target, error=error, result=result, progress=progress)


def _report(
    session: Session,
    principal: Principal,
    task: Task,
    target: TaskStatus,
    *,
    error: str | None = None,
    result: dict[str, Any] | None = None,
    progress: float | None = None,
) -> Task:
    """A reported move of a locked task. A pending task is taken by hand: `completed` goes through
    `in_progress`, so that its history shows when the person started and finished."""
    if target not in REPORTABLE:
        raise ValidationFailed(
            f"'{target.value}' cannot be reported",
            details=[FieldIssue("status", f"one of {', '.join(sorted(s.value for s in REPORTABLE))}")],
        )
    if task.status == TaskStatus.pending.value and target is TaskStatus.completed:
        set_status(session, task, TaskStatus.in_progress, by=principal.user_id)
    return set_status(
        session, task, target, error=error, result=json_safe(result), progress=progress, by=principal.user_id
    )


def get_task(session: Session, principal: Principal, task_id: str) -> Task:
    task = session.get(Task, task_id)
    if task is None or not can_see_task(session, principal, task):
        raise NotFound("Task not found")
    return task


def get_attached(session: Session, principal: Principal, task_id: str, model: type[T], item_id: str, what: str) -> T:
    """A record attached to a task the caller can see (a comment, a file); 404 for another task's."""
    task = get_task(session, principal, task_id)
    item = session.get(model, item_id)
    if item is None or item.task_id != task.id:
        raise NotFound(f"{what} not found")
    return item


def can_see_task(session: Session, principal: Principal, task: Task) -> bool:
    """Its tenant, the owners of the agent working on it, and the members of its project."""
    return (
        ownership.can_see(session, task, principal)
        or _agent_writable(session, principal, task.agent_id)
        or projects.is_member(session, task.project_id, principal.user_id)
    )


def lock_task(session: Session, task_id: str) -> Task | None:
    return session.get(Task, task_id, with_for_update=True, populate_existing=True)


def list_agent_tasks(
    session: Session, principal: Principal, agent_id: str, *, statuses: set[TaskStatus] | None, page: int, limit: int
) -> Page[Task]:
    """An agent's tasks, oldest first (a worker takes them in order), for whoever can see the agent."""
    agent = ownership.get_visible(session, Agent, agent_id, principal)
    query = select(Task).where(Task.agent_id == agent.id)
    if not ownership.can_write(session, agent, principal):
        # A shared (public) agent works for many tenants: others see only their own tasks on it.
        query = query.where(ownership.visible_to(Task, principal))
    if statuses:
        query = query.where(Task.status.in_([status.value for status in statuses]))
    query = query.order_by(Task.created_at, Task.id)
    return fetch_page(session, query, page=page, limit=limit)


def agent_metrics(
    session: Session, principal: Principal, agent_id: str, *, start: datetime, end: datetime
) -> dict[str, Any]:
    """An agent's metrics (`GET /agents/{id}/metrics`), computed from the agent's recorded tasks in [start, end)."""
    agent = ownership.get_visible(session, Agent, agent_id, principal)
    dialect = session.get_bind().dialect.name
    in_period = (Task.agent_id == agent.id, Task.created_at >= start, Task.created_at < end)
    counts = dict(session.execute(select(Task.status, func.count()).where(*in_period).group_by(Task.status)).all())
    total = sum(counts.values())
    completed, failed = counts.get(TaskStatus.completed, 0), counts.get(TaskStatus.failed, 0)
    run_s = seconds_between(Task.started_at, Task.completed_at, dialect)
    wait_s = seconds_between(Task.assigned_at, Task.started_at, dialect)
    finished = Task.status.in_([s.value for s in TERMINAL])
    timing = session.execute(
        select(
            func.avg(case((Task.status == TaskStatus.completed.value, run_s))),
            func.avg(wait_s),
            func.sum(case((finished, run_s))),
        ).where(*in_period, Task.started_at.is_not(None))
    ).one()
    # Postgres answers NUMERIC (Decimal) for epoch arithmetic, SQLite floats.
    timing = [float(value) if value is not None else None for value in timing]
    hours = session.execute(
        select(hour_of_day(Task.started_at, dialect).label("hour"), func.count())
        .where(*in_period, Task.started_at.is_not(None))
        .group_by("hour")
        .order_by(func.count().desc(), "hour")
        .limit(2)
    ).all()
    period_hours = (end - start).total_seconds() / 3600
    active_hours = (timing[2] or 0.0) / 3600
    decided = completed + failed
    return {
        "agent_id": agent.id,
        "period": {"start": start, "end": end},
        "task_metrics": {
            "total_tasks": total,
            "completed_tasks": completed,
            "failed_tasks": failed,
            "cancelled_tasks": counts.get(TaskStatus.cancelled, 0),
            "in_progress_tasks": sum(counts.get(s.value, 0) for s in ACTIVE),
            "pending_tasks": sum(counts.get(s, 0) for s in WAITING),
            "success_rate": round(completed / decided, 4) if decided else None,
            "average_completion_time": _hours(timing[0]),
        },
        "performance_metrics": {
            # Seconds from assignment until the agent started: how quickly it picks work up.
            "average_response_time": round(timing[1], 3) if timing[1] is not None else None,
            # Not recorded by the platform, so not invented: null until a source exists.
            "quality_score": None,
        },
        "utilization_metrics": {
            "total_hours": round(period_hours, 2),
            "active_hours": round(active_hours, 4),
            "utilization_rate": round(active_hours / (period_hours * agent.max_concurrent_tasks), 6)
            if period_hours
            else None,
            "peak_hours": [f"{int(hour):02d}:00-{(int(hour) + 1) % 24:02d}:00" for hour, _ in hours],
        },
        "execution_metrics": {
            "total_executions": agent.total_executions,
            "successful_executions": agent.successful_executions,
            "average_execution_time": agent.avg_execution_time,
        },
    }


def default_period(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    end = end or utcnow()
    return start or end - timedelta(days=30), end


# --- what the agent's actor reports through the store ------------------------------------------------


def start_for_agent(session: Session, task_id: str, agent_id: str, *, retake: bool = False) -> dict[str, Any] | None:
    """A hosted agent's actor takes an assigned task: in_progress, and its input. None if it is not (or no
    longer) this agent's assigned task, which makes a repeated dispatch harmless. With `retake` (the caller is
    the agent's current actor, which runs no such task now), a task already `in_progress` on this agent is
    given again, unchanged (`retaken`): the answer to the call that took it was lost (the store died after
    committing it, and Ray's retry of the call finds it taken), and nothing else would ever run it."""
    task = lock_task(session, task_id)
    if task is None or task.agent_id != agent_id:
        return None
    retaken = retake and task.status == TaskStatus.in_progress.value
    if task.status != TaskStatus.assigned.value and not retaken:
        return None
    if not retaken:
        set_status(session, task, TaskStatus.in_progress)
    return {
        "retaken": retaken,
        "id": task.id,
        "type": task.type,
        "title": task.title,
        "description": task.description,
        "payload": task.payload,
        "metadata": task.meta,
        "correlation_id": task.correlation_id,
        "tool_decisions": tool_decisions(session, task.id),
    }


def tool_decisions(session: Session, task_id: str) -> list[dict[str, Any]]:
    """The people's decisions on the task's tool calls so far (`frameworks.context.TaskContext`): a task
    held for one runs again from its start, and the decided calls go on without asking again."""
    query = select(Approval.tool_call, Approval.status, Approval.decision_reason).where(
        Approval.task_id == task_id, Approval.tool_call.is_not(None), Approval.status.in_(("approved", "rejected"))
    )
    return [
        {"name": call.get("name"), "args": call.get("arguments"), "approved": status == "approved", "reason": reason}
        for call, status, reason in session.execute(query)
    ]


def finish_for_agent(
    session: Session,
    task_id: str,
    agent_id: str,
    result: dict | None,
    error: str | None,
    cost_per_1k_tokens: float = 0.0,
) -> bool:
    """The agent's outcome of its task. A framework agent's result names the tokens it used (`usage`): they
    are the task's `tokens_used`, priced by the agent's `configuration.llm.cost_per_1k_tokens`, else
    `cost_per_1k_tokens`."""
    task = lock_task(session, task_id)
    if task is None or task.agent_id != agent_id or task.status != TaskStatus.in_progress.value:
        return False
    tokens = tokens_of(result)
    if tokens:
        agent = session.get(Agent, agent_id)
        llm = (agent.configuration or {}).get("llm") if agent is not None else None
        price = llm.get("cost_per_1k_tokens") if isinstance(llm, dict) else None
        price = float(price) if isinstance(price, int | float) and price >= 0 else cost_per_1k_tokens
        task.tokens_used = (task.tokens_used or 0) + tokens
        task.cost = round((task.cost or 0.0) + tokens / 1000 * price, 6)
    target = TaskStatus.failed if error is not None else TaskStatus.completed
    set_status(session, task, target, error=error, result=json_safe(result))
    return True


def tokens_of(result: dict[str, Any] | None) -> int:
    """`usage.total_tokens` of a framework agent's result (else input + output), 0 without one."""
    usage = result.get("usage") if isinstance(result, dict) else None
    if not isinstance(usage, dict):
        return 0
    total = usage.get("total_tokens")
    if not isinstance(total, int):
        total = sum(
            value for value in (usage.get("input_tokens"), usage.get("output_tokens")) if isinstance(value, int)
        )
    return max(0, int(total))


def emit_output(session: Session, task_id: str, agent_id: str, pieces: list[dict[str, Any]]) -> bool:
    """Pieces of a running task's output (text streamed by the model, tool calls and results) as one
    `task.output` event; nothing once the task is no longer this agent's in progress."""
    task = session.get(Task, task_id)
    if task is None or task.agent_id != agent_id or task.status != TaskStatus.in_progress.value:
        return False
    events.emit(
        session,
        "task.output",
        {"task_id": task.id, "agent_id": agent_id, "items": json_safe({"items": pieces})["items"]},
        source="agents",
        owner=task,
        subject_id=task.id,
    )
    return True


def json_safe(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A result as JSON can store it: what a handler returns (datetimes, objects, NaN) must not make the
    task's completion fail to save."""
    if value is None:
        return None
    return json.loads(json.dumps(_finite(value), default=str))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def has_assigned(session: Session, agent_id: str) -> bool:
    query = select(Task.id).where(Task.agent_id == agent_id, Task.status == TaskStatus.assigned.value).limit(1)
    return session.scalar(query) is not None


def fail_interrupted(session: Session, agent_id: str, reason: str) -> int:
    """A hosted agent's process is new: the tasks it had `in_progress` died with the old one (not those
    its workflow runs, which live on their own actors and resume by themselves)."""
    in_a_run = select(Execution.id).where(Execution.task_id == Task.id, Execution.status.in_(RUN_ACTIVE))
    query = select(Task).where(
        Task.agent_id == agent_id, Task.status == TaskStatus.in_progress.value, ~in_a_run.exists()
    )
    interrupted = list(session.scalars(query.with_for_update()))
    for task in interrupted:
        set_status(session, task, TaskStatus.failed, error=reason)
    return len(interrupted)


def release_agent_tasks(session: Session, agent_id: str, reason: str) -> None:
    """The agent stops (undeploy, delete): tasks it had not started go back to the queue to be routed
    again; those it had started fail, saying why."""
    query = select(Task).where(Task.agent_id == agent_id, Task.status.in_([s.value for s in ACTIVE]))
    for task in session.scalars(query.with_for_update()):
        if task.status == TaskStatus.assigned.value:
            set_status(session, task, TaskStatus.pending)
        else:
            set_status(session, task, TaskStatus.failed, error=reason)


def assigned_hosted_tasks(session: Session, older_than: datetime) -> list[tuple[str, str]]:
    """(task id, agent id) of hosted agents' tasks assigned before `older_than` and not started: their
    dispatch to the actor was lost (the reconciler sends them again)."""
    query = (
        select(Task.id, Task.agent_id)
        .join(Agent, Agent.id == Task.agent_id)
        .where(
            Task.status == TaskStatus.assigned.value,
            Task.assigned_at < older_than,
            Agent.mode == "hosted",
            Agent.status == AgentStatus.active.value,
        )
        .order_by(Task.assigned_at)
        .limit(500)
    )
    return [(task_id, agent_id) for task_id, agent_id in session.execute(query).all()]


def _resume_run(session: Session, task: Task) -> None:
    run_waits.resolve(
        session,
        task.meta.get("execution_id"),
        task.id,
        {
            "kind": "task",
            "task_id": task.id,
            "status": task.status,
            "result": task.result,
            "error": task.error,
            "tokens_used": task.tokens_used or 0,
            "cost": task.cost or 0.0,
        },
    )


def breach_slas(session: Session, limit: int = 500) -> list[str]:
    """The SLA sweep (the reconciler's): an open task past `created_at + sla_target` fires
    `task.sla_breached` once and moves up one priority (P0 stays P0), so the router takes it sooner."""
    due = session.scalars(
        select(Task)
        .where(
            Task.sla_due_at <= utcnow(),
            Task.sla_breached_at.is_(None),
            Task.status.not_in([status.value for status in TERMINAL]),
        )
        .order_by(Task.sla_due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    now = utcnow()
    for task in due:
        previous = task.priority
        task.priority = PRIORITIES[max(PRIORITIES.index(previous) - 1, 0)]
        task.sla_breached_at = now
        overdue = (now - task.sla_due_at).total_seconds() if task.sla_due_at else 0.0
        events.emit(
            session,
            "task.sla_breached",
            {
                **summary(task),
                "sla_target": task.sla_target,
                "overdue_s": round(overdue, 3),
                "previous_priority": previous,
            },
            source="tasks",
            owner=task,
            subject_id=task.id,
        )
    return [task.id for task in due]


def _sla_due(created_at: datetime, sla_target: int | None) -> datetime | None:
    return created_at + timedelta(seconds=sla_target) if sla_target else None


def _count_load(session: Session, agent_id: str | None, previous: TaskStatus, target: TaskStatus) -> None:
    """Keep `agents.current_tasks` equal to the agent's assigned + in-progress tasks, as one SQL increment
    (concurrent reports on the same agent do not lose counts)."""
    was, now = previous in ACTIVE, target in ACTIVE
    if was == now or agent_id is None:
        return
    delta = 1 if now else -1
    larger = func.greatest if session.get_bind().dialect.name == "postgresql" else func.max
    session.execute(
        update(Agent).where(Agent.id == agent_id).values(current_tasks=larger(Agent.current_tasks + delta, 0))
    )


def _may_report(session: Session, principal: Principal, task: Task) -> bool:
    return ownership.can_write(session, task, principal) or _agent_writable(session, principal, task.agent_id)


def _agent_writable(session: Session, principal: Principal, agent_id: str | None) -> bool:
    if agent_id is None:
        return False
    agent = session.get(Agent, agent_id)
    return agent is not None and ownership.can_write(session, agent, principal)


def _default_title(data: dict[str, Any]) -> str:
    payload = data.get("payload") or {}
    text = data.get("description") or payload.get("description") or payload.get("title")
    return str(text)[:300] if text else str(data.get("type") or "task")


def summary(task: Task) -> dict[str, Any]:
    return {
        "task_id": task.id,
        "type": task.type,
        "priority": task.priority,
        "status": task.status,
        "agent_id": task.agent_id,
        "project_id": task.project_id,
    }


def _hours(seconds: float | None) -> float | None:
    return round(seconds / 3600, 4) if seconds is not None else None


def queue_stats(session: Session) -> dict[str, Any]:
    """`GET /stats`, counted from the tasks table (platform-wide, no tenant detail)."""
    by_status = dict(session.execute(select(Task.status, func.count()).group_by(Task.status)).all())
    pending_by_priority = dict(
        session.execute(
            select(Task.priority, func.count()).where(Task.status == TaskStatus.pending.value).group_by(Task.priority)
        ).all()
    )
    return {
        "pending_tasks": by_status.get(TaskStatus.pending, 0),
        "awaiting_approval": by_status.get(TaskStatus.awaiting_approval, 0),
        "processing_tasks": sum(by_status.get(status.value, 0) for status in ACTIVE),
        "completed_tasks": by_status.get(TaskStatus.completed, 0),
        "failed_tasks": by_status.get(TaskStatus.failed, 0),
        "total_tasks": sum(by_status.values()),
        "pending_by_priority": {level: pending_by_priority.get(level, 0) for level in ("P0", "P1", "P2", "P3")},
    }


SORTABLE = {
    "created_at": Task.created_at,
    "updated_at": Task.updated_at,
    "priority": Task.priority,
    "due_date": Task.due_date,
    "title": Task.title,
    "status": Task.status,
}


def list_tasks(
    session: Session,
    principal: Principal,
    *,
    page: int,
    limit: int,
    statuses: set[TaskStatus] | None = None,
    priorities: set[str] | None = None,
    task_type: str | None = None,
    agent_id: str | None = None,
    project_id: str | None = None,
    whole_project: bool = False,
    tags: list[str] | None = None,
    search: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    sort_by: str = "created_at",
    sort_order: str = "desc",
) -> Page[Task]:
    """The task list: what the caller may see, every filter, sorted (newest first by default)."""
    dialect = session.get_bind().dialect.name
    query = select(Task)
    if not (whole_project and project_id):  # (the caller was checked to see the project: all of its tasks)
        query = query.where(ownership.visible_to(Task, principal))
    if statuses:
        query = query.where(Task.status.in_([status.value for status in statuses]))
    if priorities:
        query = query.where(Task.priority.in_(priorities))
    if task_type:
        query = query.where(Task.type == task_type)
    if agent_id:
        query = query.where(Task.agent_id == agent_id)
    if project_id:
        query = query.where(Task.project_id == project_id)
    for tag in tags or []:
        query = query.where(array_contains(Task.tags, tag, dialect))
    if search:
        query = query.where(matches_text(search, Task.title, Task.description))
    if created_after is not None:
        query = query.where(Task.created_at >= created_after)
    if created_before is not None:
        query = query.where(Task.created_at < created_before)
    column = SORTABLE[sort_by]
    # P0 is the most urgent: "priority desc" puts it first, as a user means it.
    descending = (sort_order == "desc") != (sort_by == "priority")
    query = query.order_by(column.desc() if descending else column.asc(), Task.id.desc() if descending else Task.id)
    return fetch_page(session, query, page=page, limit=limit)


EDITABLE = frozenset(
    {
        "title",
        "description",
        "priority",
        "tags",
        "requirements",
        "acceptance_criteria",
        "estimated_hours",
        "actual_hours",
        "progress",
        "due_date",
        "sla_target",
        "project_id",
        "payload",
        "meta",
        "type",
    }
)


# What a project member with `tasks:write` changes when working a task by hand.
BY_HAND = frozenset({"status", "progress", "actual_hours"})


def update_task(session: Session, principal: Principal, task_id: str, changes: dict[str, Any]) -> Task:
    """Change a task's fields (its owner); `status` goes through the state machine like a report. A project
    member who may work the project's tasks moves them by hand: `status`, `progress` and `actual_hours`."""
    task = lock_task(session, task_id)
    if task is None or not (
        ownership.can_write(session, task, principal)
        or (changes.keys() <= BY_HAND and projects.may_work_tasks(session, task.project_id, principal.user_id))
    ):
        raise NotFound("Task not found")
    target = changes.pop("status", None)
    refuse_read_only(changes, EDITABLE)
    if ("payload" in changes or "type" in changes) and task.status != TaskStatus.pending.value:
        raise Conflict("A task's payload and type can change only while it is pending")
    if changes.get("project_id") not in (None, task.project_id):
        projects.check_task_project(session, principal, changes["project_id"])
    for field, value in changes.items():
        setattr(task, field, value)
    if "sla_target" in changes:
        task.sla_due_at = _sla_due(task.created_at, task.sla_target)
        task.sla_breached_at = None if task.sla_due_at is None or task.sla_due_at > utcnow() else task.sla_breached_at
    if target is not None and TaskStatus(target).value != task.status:
        _report(session, principal, task, TaskStatus(target))
    else:
        events.emit(
            session,
            "task.updated",
            {**summary(task), "changed": sorted(changes), "changed_by": principal.user_id},
            source="tasks",
            owner=task,
            subject_id=task.id,
        )
    session.flush()
    return task


def assign_task(session: Session, principal: Principal, task_id: str, agent_id: str) -> Task:
    """`POST /tasks/{id}/assign`: a pending task to an agent its owner may use."""
    task = lock_task(session, task_id)
    if task is None or not ownership.can_write(session, task, principal):
        raise NotFound("Task not found")
    if task.status not in (TaskStatus.pending.value,):
        raise Conflict(f"Only a pending task can be assigned (this one is {task.status})")
    assign(session, principal, task, agent_id)
    return task


def delete_task(session: Session, principal: Principal, task_id: str, reason: str | None) -> None:
    task = lock_task(session, task_id)
    if task is None or not ownership.can_write(session, task, principal):
        raise NotFound("Task not found")
    if task.status in {status.value for status in ACTIVE}:
        _count_load(session, task.agent_id, TaskStatus(task.status), TaskStatus.cancelled)
    events.emit(
        session,
        "task.updated",
        {**summary(task), "deleted": True, "reason": reason},
        source="tasks",
        owner=task,
        subject_id=task.id,
    )
    if task.meta.get("execution_id") and task.status not in {status.value for status in TERMINAL}:
        task.status = transition(task.status, TaskStatus.cancelled).value
        task.error = f"deleted: {reason or 'no reason given'}"
        _resume_run(session, task)
    session.delete(task)


def history(session: Session, task_id: str) -> list[dict[str, Any]]:
    """Every recorded change of the task, oldest first, from the event outbox, with who made it."""
    creator = session.scalar(select(Task.created_by).where(Task.id == task_id))
    rows = session.scalars(
        select(Event)
        .where(Event.subject_id == task_id, Event.event_type.like("task.%"))
        .order_by(Event.created_at, Event.id)
    )
    return [
        {
            "id": row.id,
            "action": row.event_type.removeprefix("task."),
            "from": row.data.get("previous_status"),
            "to": row.data.get("status"),
            "user": row.data.get("changed_by") or (creator if row.event_type == "task.created" else None),
            "timestamp": row.created_at,
            "correlation_id": row.correlation_id,
        }
        for row in rows
    ]


def task_metrics(task: Task) -> dict[str, Any]:
    """The per-task metrics the platform records (quality scores it does not)."""
    end = task.completed_at or utcnow()
    spent = (end - task.started_at).total_seconds() / 3600 if task.started_at else None
    waited = (task.assigned_at - task.created_at).total_seconds() / 3600 if task.assigned_at else None
    return {
        "time_spent": round(spent, 4) if spent is not None else None,
        "completion_rate": task.progress,
        "wait_time": round(waited, 4) if waited is not None else None,
    }
