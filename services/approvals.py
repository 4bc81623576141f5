"""Human approvals (a human in the loop): P0/P1 tasks wait `awaiting_approval` until a person decides.

An approval is a row while it waits (ten thousand pending approvals are rows, not processes); its actor
(`approval:<id>`, actors/approval.py) is started only to apply a decision. Expiry is a timer the
reconciler fires from the database (`expire_due`): the task fails, or escalates once to P0 with a new
deadline, per `ORCHESTRATOR_APPROVAL_ON_EXPIRY`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import isoformat_z, utcnow
from core.errors import Conflict, FieldIssue, NotFound, PermissionDenied, ValidationFailed
from core.previews import preview
from core.settings import Settings
from persistence.models import Agent, Approval, Execution, OrganizationMember, Task
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
        agent_id=assign_to or task.agent_id,
        priority=task.priority,
        reason=reason or task.title,
        status=ApprovalStatus.pending.value,
        requested_by=requested_by,
        owner_type=task.owner_type,
        owner_id=task.owner_id,
        assign_to=assign_to,
        context=context_of(task.description or task.title, {"type": task.type, "payload": task.payload}),
        expires_at=utcnow() + timedelta(seconds=ttl_s or settings.agents.approval_ttl_s),
    )
    return _requested(session, approval, gates=task)


def request_for_tool_call(
    session: Session,
    task_id: str,
    agent_id: str,
    call: dict[str, Any],
    settings: Settings,
    *,
    priority: str = "P1",
    ttl_s: float | None = None,
) -> Approval | None:
    """A framework agent's tool call waits for a person (frameworks.context): the task, in progress on this
    agent, waits `awaiting_approval` holding no process; the approval names the agent, the tool and its
    arguments. Either decision gives the task back to the agent, which runs it again: approved, the call
    goes on; rejected, the model is told so. None if the task is no longer this agent's in progress."""
    task = tasks.lock_task(session, task_id)
    if task is None or task.agent_id != agent_id or task.status != TaskStatus.in_progress.value:
        return None
    name, arguments = str(call.get("name")), call.get("args")
    agent = session.get(Agent, agent_id)
    approval = Approval(
        task_id=task.id,
        agent_id=agent_id,
        assign_to=agent_id,
        tool_call={"name": name, "arguments": arguments},
        priority=priority,
        reason=f"{agent.name if agent is not None else 'An agent'} wants to call {name}",
        status=ApprovalStatus.pending.value,
        requested_by=f"agent:{agent_id}",
        owner_type=task.owner_type,
        owner_id=task.owner_id,
        context=context_of(
            f"The agent wants to call the tool `{name}` while working on the task “{task.title}”.",
            {"tool": name, "arguments": arguments},
        ),
        expires_at=utcnow() + timedelta(seconds=ttl_s or settings.agents.approval_ttl_s),
    )
    return _requested(session, approval, gates=task)


def request_for_execution(
    session: Session,
    run: Execution,
    node_id: str,
    request: dict[str, Any],
    settings: Settings,
    state: dict[str, Any] | None = None,
) -> Approval:
    """An `approval` node: the run waits until a person decides (same transaction as the run's wait). The
    approver sees the node's description and a preview of the run's state."""
    priority = request.get("priority") if request.get("priority") in ("P0", "P1", "P2", "P3") else "P1"
    description = request.get("description") or request.get("reason") or f"Approve step {node_id}"
    approval = Approval(
        task_id=None,
        execution_id=run.id,
        node_id=node_id,
        agent_id=run.agent_id,
        context=context_of(str(description), state if state is not None else run.state),
        input_schema=request.get("input_schema"),
        priority=priority,
        reason=request.get("reason"),
        status=ApprovalStatus.pending.value,
        requested_by=run.created_by or "system",
        owner_type=run.owner_type,
        owner_id=run.owner_id,
        expires_at=utcnow() + timedelta(seconds=request.get("timeout_s") or settings.agents.approval_ttl_s),
    )
    return _requested(session, approval)


def _requested(session: Session, approval: Approval, gates: Task | None = None) -> Approval:
    """A new approval stored, with the task it `gates` waiting for it, its event and its approvers notified."""
    session.add(approval)
    session.flush()
    if gates is not None:
        tasks.set_status(session, gates, TaskStatus.awaiting_approval)
    _emit(session, approval, "approval.requested")
    _notify_approvers(session, approval)
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
    schema = data.get("input_schema")
    if schema is not None:
        check_schema(schema)
    approval = Approval(
        task_id=None,
        context=context_of(data.get("description") or data.get("reason") or "", data.get("preview")),
        input_schema=schema,
        priority=data.get("priority") or "P1",
        reason=data.get("reason"),
        status=ApprovalStatus.pending.value,
        requested_by=principal.user_id,
        owner_type=owner_type,
        owner_id=owner_id,
        expires_at=utcnow() + timedelta(seconds=data.get("expires_in") or settings.agents.approval_ttl_s),
    )
    return _requested(session, approval)


def get(session: Session, principal: Principal, approval_id: str) -> Approval:
    return ownership.get_visible(session, Approval, approval_id, principal)


FILTERS = ("execution_id", "task_id", "agent_id", "priority")


def list_approvals(
    session: Session,
    principal: Principal,
    *,
    pending: bool,
    page: int,
    limit: int,
    filters: dict[str, Any] | None = None,
    expires_before: datetime | None = None,
    sort: str = "priority",
) -> Page[Approval]:
    """`filters`: equality on execution_id, task_id, agent_id, priority. Pending ones come P0 first and
    oldest first, or with `sort="expires_at"` soonest to expire first."""
    query = select(Approval).where(ownership.visible_to(Approval, principal))
    for name, value in (filters or {}).items():
        if name in FILTERS and value is not None:
            query = query.where(getattr(Approval, name) == value)
    if expires_before is not None:
        query = query.where(Approval.expires_at <= expires_before)
    if pending:
        query = query.where(Approval.status == ApprovalStatus.pending.value)
        if sort == "expires_at":
            query = query.order_by(Approval.expires_at, Approval.id)
        else:
            query = query.order_by(Approval.priority, Approval.created_at, Approval.id)  # P0 first, oldest first
    else:
        query = query.where(Approval.status != ApprovalStatus.pending.value)
        query = query.order_by(Approval.decided_at.desc(), Approval.id.desc())
    return fetch_page(session, query, page=page, limit=limit)


def decide(
    session: Session,
    approval_id: str,
    decider_id: str,
    approve: bool,
    reason: str | None,
    settings: Settings,
    decision_input: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply a decision (called by the approval's actor through the store): the row locked, the state
    checked, the requester kept from approving their own request, the input checked against the approval's
    schema, the waiting task released. The first decision wins; a later one is a 409 saying who decided."""
    approval = session.get(Approval, approval_id, with_for_update=True, populate_existing=True)
    if approval is None:
        raise NotFound("Approval not found")
    if approval.status != ApprovalStatus.pending.value:
        by = f" by {approval.decided_by}" if approval.decided_by else ""
        when = f" at {isoformat_z(approval.decided_at)}" if approval.decided_at else ""
        raise Conflict(f"This approval is already {approval.status}{by}{when}")
    if approval.expires_at <= utcnow():
        _expire(session, approval, settings)
        raise Conflict("This approval has expired")
    if approve and approval.requested_by == decider_id and not settings.agents.allow_self_approval:
        raise PermissionDenied(
            "You cannot approve your own request: another member of the owning organization with the 'agent' "
            "role, or an admin, decides it"
        )
    if approve and approval.input_schema is not None:
        check_input(approval.input_schema, decision_input)
    approval.decision_input = decision_input if approve else None
    decision = ApprovalStatus.approved if approve else ApprovalStatus.rejected
    approval.status = transition(approval.status, decision).value
    approval.decided_by, approval.decided_at, approval.decision_reason = decider_id, utcnow(), reason
    task = tasks.lock_task(session, approval.task_id) if approval.task_id else None
    assigned = None
    if task is not None and task.status == TaskStatus.awaiting_approval.value:
        if approve or approval.tool_call is not None:  # a rejected tool call: the agent goes on without it
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
            "input": approval.decision_input,
        },
    )


MAX_NOTIFIED = 50


def _notify_approvers(session: Session, approval: Approval) -> None:
    """An in-app notification for those who may decide it: the owning user, or the owning organization's
    owners and admins (at most `MAX_NOTIFIED`), never the requester."""
    if approval.owner_type == "organization":
        query = (
            select(OrganizationMember.user_id)
            .where(
                OrganizationMember.organization_id == approval.owner_id,
                OrganizationMember.role.in_(("owner", "admin")),
            )
            .limit(MAX_NOTIFIED)
        )
        approvers = list(session.scalars(query))
    else:
        approvers = [approval.owner_id]
    for user_id in approvers:
        if user_id != approval.requested_by:
            notifications.notify(
                session,
                user_id,
                "approval_requested",
                f"Approval requested: {approval.reason or 'a decision'}"[:300],
                message=(approval.context or {}).get("description"),
                approval_id=approval.id,
                task_id=approval.task_id,
                execution_id=approval.execution_id,
                priority=approval.priority,
                expires_at=isoformat_z(approval.expires_at),
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
            "execution_id": approval.execution_id,
            "node_id": approval.node_id,
            "agent_id": approval.agent_id,
            "tool_call": approval.tool_call,
            "expires_at": isoformat_z(approval.expires_at),
            **extra,
        },
        source="approvals",
        owner=approval,
        subject_id=approval.task_id or approval.id,
    )


def context_of(description: str, subject: Any) -> dict[str, Any]:
    """What an approver is shown: the markdown description, and a preview of the state or arguments."""
    shown, truncated = preview(subject) if subject is not None else (None, False)
    return {"description": description[:10_000], "preview": shown, "truncated": truncated}


def check_schema(schema: Any) -> None:
    """422 unless `schema` is a JSON Schema (an object of Draft 2020-12)."""
    if not isinstance(schema, dict):
        raise ValidationFailed("Invalid input_schema", details=[FieldIssue("input_schema", "a JSON Schema object")])
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValidationFailed("Invalid input_schema", details=[FieldIssue("input_schema", exc.message)]) from None


def check_input(schema: dict[str, Any], value: Any) -> None:
    """422 naming each problem of a decision's input against the approval's schema."""
    problems = sorted(Draft202012Validator(schema).iter_errors(value if value is not None else {}), key=str)
    if problems:
        details = [
            FieldIssue("input" + "".join(f".{part}" for part in problem.absolute_path), problem.message)
            for problem in problems[:20]
        ]
        raise ValidationFailed("The approval's input does not match its schema", details=details)
