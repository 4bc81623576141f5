"""Human approvals (a human in the loop): P0/P1 tasks wait `awaiting_approval` until a person decides.

An approval is a row while it waits (ten thousand pending approvals are rows, not processes); its actor
(`approval:<id>`, actors/approval.py) is started only to apply a decision. Expiry is a timer the
reconciler fires from the database (`expire_due`): the task fails, or escalates once to P0 with a new
deadline, per `ORCHESTRATOR_APPROVAL_ON_EXPIRY`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.errors import Conflict, NotFound, PermissionDenied
from core.settings import Settings
from persistence.models import Approval, Execution, Task
from persistence.repositories.pages import Page, fetch_page
from schedulers.approval_lifecycle import ApprovalStatus, transition
from schedulers.task_lifecycle import TaskStatus
from services import events, notifications, ownership, routing, run_waits, tasks
from services.principal import Principal


def needs_approval(priority: str, settings: Settings) -> bool:
    return priority in settings.agents.approval_priority_set


def request_for_task(
    session: Session,
    task: Task,
    requested_by: str,
    settings: Settings,
    *,
    reason: str | None = None,
    assign_to: str | None = None,
    ttl_s: float | None = None,
) -> Approval:
    """Gate a pending task: it waits `awaiting_approval` until the decision (same transaction)."""
    approval = Approval(
        task_id=task.id,
        priority=task.priority,
        reason=reason or task.title,
        status=ApprovalStatus.pending.value,
        requested_by=requested_by,
        owner_type=task.owner_type,
        owner_id=task.owner_id,
        assign_to=assign_to,
        expires_at=utcnow() + timedelta(seconds=ttl_s or settings.agents.approval_ttl_s),
    )
    session.add(approval)
    session.flush()
    tasks.set_status(session, task, TaskStatus.awaiting_approval)
    _emit(session, approval, "approval.requested")
    return approval


def request_for_execution(
    session: Session, run: Execution, node_id: str, request: dict[str, Any], settings: Settings
) -> Approval:
    """An `approval` node: the run waits until a person decides (same transaction as the run's wait)."""
    priority = request.get("priority") if request.get("priority") in ("P0", "P1", "P2", "P3") else "P1"
    approval = Approval(
        task_id=None,
        execution_id=run.id,
        priority=priority,
        reason=request.get("reason"),
        status=ApprovalStatus.pending.value,
        requested_by=run.created_by or "system",
        owner_type=run.owner_type,
        owner_id=run.owner_id,
        expires_at=utcnow() + timedelta(seconds=request.get("timeout_s") or settings.agents.approval_ttl_s),
    )
    session.add(approval)
    session.flush()
    _emit(session, approval, "approval.requested", execution_id=run.id, node_id=node_id)
    return approval


def create(session: Session, principal: Principal, data: dict[str, Any], settings: Settings) -> Approval:
    """`POST /approvals`: gate one of the caller's pending tasks, or ask for a free-standing decision."""
    task_id = data.get("task_id")
    if task_id:
        task = tasks.lock_task(session, task_id)
        if task is None or not ownership.can_write(session, task, principal):
            raise NotFound("Task not found")
        if task.status != TaskStatus.pending.value:
            raise Conflict(f"Only a pending task can wait for approval (this one is {task.status})")
        return request_for_task(
            session, task, principal.user_id, settings, reason=data.get("reason"), ttl_s=data.get("expires_in")
        )
    owner_type, owner_id = ownership.resolve_owner(session, principal, data.get("owner_type"), data.get("owner_id"))
    approval = Approval(
        task_id=None,
        priority=data.get("priority") or "P1",
        reason=data.get("reason"),
        status=ApprovalStatus.pending.value,
        requested_by=principal.user_id,
        owner_type=owner_type,
        owner_id=owner_id,
        expires_at=utcnow() + timedelta(seconds=data.get("expires_in") or settings.agents.approval_ttl_s),
    )
    session.add(approval)
    session.flush()
    _emit(session, approval, "approval.requested")
    return approval


def get(session: Session, principal: Principal, approval_id: str) -> Approval:
    return ownership.get_visible(session, Approval, approval_id, principal)


def list_approvals(session: Session, principal: Principal, *, pending: bool, page: int, limit: int) -> Page[Approval]:
    query = select(Approval).where(ownership.visible_to(Approval, principal))
    if pending:
        query = query.where(Approval.status == ApprovalStatus.pending.value)
        query = query.order_by(Approval.priority, Approval.created_at, Approval.id)  # P0 first, oldest first
    else:
        query = query.where(Approval.status != ApprovalStatus.pending.value)
        query = query.order_by(Approval.decided_at.desc(), Approval.id.desc())
    return fetch_page(session, query, page=page, limit=limit)


def decide(
    session: Session, approval_id: str, decider_id: str, approve: bool, reason: str | None, settings: Settings
) -> dict[str, Any]:
    """Apply a decision (called by the approval's actor through the store): the row locked, the state
    checked, the requester kept from approving their own request, the waiting task released."""
    approval = session.get(Approval, approval_id, with_for_update=True, populate_existing=True)
    if approval is None:
        raise NotFound("Approval not found")
    if approval.status != ApprovalStatus.pending.value:
        raise Conflict(f"This approval is already {approval.status}")
    if approval.expires_at <= utcnow():
        _expire(session, approval, settings)
        raise Conflict("This approval has expired")
    if approve and approval.requested_by == decider_id and not settings.agents.allow_self_approval:
        raise PermissionDenied("You cannot approve your own request")
    decision = ApprovalStatus.approved if approve else ApprovalStatus.rejected
    approval.status = transition(approval.status, decision).value
    approval.decided_by, approval.decided_at, approval.decision_reason = decider_id, utcnow(), reason
    task = tasks.lock_task(session, approval.task_id) if approval.task_id else None
    assigned = None
    if task is not None and task.status == TaskStatus.awaiting_approval.value:
        if approve:
            tasks.set_status(session, task, TaskStatus.pending)  # the router routes it now …
            if approval.assign_to:  # … unless it was created for an agent that can take it now
                assigned = routing.assign_routed(session, task.id, approval.assign_to, settings)
        else:
            tasks.set_status(session, task, TaskStatus.failed, error=f"rejected: {reason or 'no reason given'}")
    _emit(session, approval, "approval.approved" if approve else "approval.rejected")
    _notify_requester(session, approval)
    resumed = _resume_run(session, approval)
    return {
        "approval_id": approval.id,
        "status": approval.status,
        "task_id": approval.task_id,
        "assigned": assigned,
        "execution_id": approval.execution_id if resumed else None,
    }


def expire_due(session: Session, settings: Settings, limit: int = 500) -> list[str]:
    """Fire the expiry timers that are due (the reconciler's pass)."""
    due = session.scalars(
        select(Approval)
        .where(Approval.status == ApprovalStatus.pending.value, Approval.expires_at <= utcnow())
        .order_by(Approval.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for approval in due:
        _expire(session, approval, settings)
    return [approval.id for approval in due]


def _expire(session: Session, approval: Approval, settings: Settings) -> None:
    task = tasks.lock_task(session, approval.task_id) if approval.task_id else None
    if settings.agents.approval_on_expiry == "escalate" and approval.escalations == 0:
        # Once: the request becomes critical and gets a new deadline.
        approval.escalations += 1
        approval.priority = "P0"
        approval.expires_at = utcnow() + timedelta(seconds=settings.agents.approval_ttl_s)
        if task is not None:
            task.priority = "P0"
        _emit(session, approval, "approval.expired", escalated=True)
        return
    approval.status = transition(approval.status, ApprovalStatus.expired).value
    approval.decided_at = utcnow()
    if task is not None and task.status == TaskStatus.awaiting_approval.value:
        tasks.set_status(session, task, TaskStatus.failed, error="approval expired")
    _emit(session, approval, "approval.expired", escalated=False)
    _notify_requester(session, approval)
    _resume_run(session, approval)


def _resume_run(session: Session, approval: Approval) -> bool:
    return run_waits.resolve(
        session,
        approval.execution_id,
        approval.id,
        {
            "kind": "approval",
            "approval_id": approval.id,
            "status": approval.status,
            "decided_by": approval.decided_by,
            "reason": approval.decision_reason,
        },
    )


def _notify_requester(session: Session, approval: Approval) -> None:
    notifications.notify(
        session,
        approval.requested_by,
        "approval_decided",
        f"Your approval request was {approval.status}",
        message=approval.decision_reason,
        approval_id=approval.id,
        task_id=approval.task_id,
        status=approval.status,
        decided_by=approval.decided_by,
    )


def _emit(session: Session, approval: Approval, event_type: str, **extra: Any) -> None:
    events.emit(
        session,
        event_type,
        {
            "approval_id": approval.id,
            "task_id": approval.task_id,
            "priority": approval.priority,
            "status": approval.status,
            "requested_by": approval.requested_by,
            "decided_by": approval.decided_by,
            "reason": approval.decision_reason or approval.reason,
            **extra,
        },
        source="approvals",
        owner=approval,
        subject_id=approval.task_id or approval.id,
    )
