"""Human approvals (docs/api.md "Approvals, routing rules and events"): pending list, history, get, approve, reject.

P0/P1 tasks wait for one before routing. Reads need `user`, decisions `agent`; approvers see
the approvals of what they (or their organizations) own; the requester cannot approve their own request.
A decision is applied by the approval's actor (`approval:<id>`), started for it and released after.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query, Request, Response, status

from actors import approval_handles
from core.errors import FieldIssue, ValidationFailed
from schedulers.task_lifecycle import PRIORITY_WORDS, parse_priority
from serve_app.deps import Context, CurrentPrincipal
from serve_app.pagination import PageParams, QueryTime, in_utc, page_params, paginated, words_pattern
from serve_app.routing import protected_router
from serve_app.schemas.approvals import (
    ApprovalCreate,
    ApprovalDetail,
    ApprovalHistory,
    ApprovalList,
    ApprovalOut,
    DecisionIn,
    DecisionOut,
)
from services import approvals
from services.principal import Role

router = protected_router(prefix="/approvals", tags=["approvals"], resource="approvals", write_role=Role.agent)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApprovalOut)
def create_approval(
    body: ApprovalCreate, principal: CurrentPrincipal, context: Context, response: Response
) -> ApprovalOut:
    with context.db.transaction() as session:
        out = ApprovalOut.model_validate(approvals.create(session, principal, body.model_dump(), context.settings))
    response.headers["Location"] = f"/api/v1/approvals/{out.id}"
    return out


@router.get("/pending", response_model=ApprovalList)
def pending(
    request: Request,
    principal: CurrentPrincipal,
    context: Context,
    params: Annotated[PageParams, Depends(page_params)],
    execution_id: Annotated[str | None, Query(max_length=64)] = None,
    task_id: Annotated[str | None, Query(max_length=64)] = None,
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
    priority: Annotated[str | None, Query(max_length=10, pattern=words_pattern(PRIORITY_WORDS))] = None,
    expires_before: Annotated[QueryTime | None, Query()] = None,
    sort_by: Annotated[Literal["priority", "expires_at"], Query()] = "priority",
) -> dict:
    """Pending approvals you may decide or watch: most urgent (P0) and oldest first, or soonest to expire
    first (`sort_by=expires_at`); filters `execution_id`, `task_id`, `agent_id`, `priority`,
    `expires_before`."""
    [expires_before] = in_utc(expires_before)
    try:
        wanted = parse_priority(priority) if priority else None
    except ValueError as exc:
        raise ValidationFailed("Invalid priority", details=[FieldIssue("priority", str(exc))]) from exc
    filters = {"execution_id": execution_id, "task_id": task_id, "agent_id": agent_id, "priority": wanted}
    with context.db.session() as session:
        page = approvals.list_approvals(
            session,
            principal,
            pending=True,
            page=params.page,
            limit=params.limit,
            filters=filters,
            expires_before=expires_before,
            sort=sort_by,
        )
        items = [ApprovalOut.model_validate(item) for item in page.items]
    return {**paginated(request, "approvals", items, page), "count": page.total}


@router.get("/history", response_model=ApprovalHistory)
def history(
    request: Request,
    principal: CurrentPrincipal,
    context: Context,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> dict:
    """Decided and expired approvals, newest first (`limit`, default 100; `count` is this page's)."""
    with context.db.session() as session:
        found = approvals.list_approvals(session, principal, pending=False, page=page, limit=limit)
        items = [ApprovalOut.model_validate(item) for item in found.items]
    return {**paginated(request, "history", items, found), "count": len(items)}


@router.get("/{approval_id}", response_model=ApprovalDetail)
def get_approval(approval_id: str, principal: CurrentPrincipal, context: Context) -> ApprovalDetail:
    with context.db.session() as session:
        return ApprovalDetail.model_validate(approvals.get(session, principal, approval_id))


def _decide(
    approval_id: str, principal, context, approve: bool, reason: str | None, decision_input: dict | None = None
) -> DecisionOut:
    with context.db.session() as session:
        approvals.get(session, principal, approval_id)  # 404 for another tenant's, before any actor starts
    outcome = approval_handles.decide(
        context.db, context.settings, approval_id, principal.user_id, approve, reason, decision_input
    )
    verb = "Approved" if approve else "Rejected"
    return DecisionOut(
        approval_id=outcome["approval_id"],
        status=outcome["status"],
        task_id=outcome["task_id"],
        message=f"{verb} by {principal.user_id}",
    )


@router.post("/{approval_id}/approve", response_model=DecisionOut)
def approve(
    approval_id: str, principal: CurrentPrincipal, context: Context, body: DecisionIn | None = None
) -> DecisionOut:
    """Approve (optional body `{input, reason}`; `input` must match the approval's `input_schema`, and the
    resumed run receives it): the waiting task is released to routing, the waiting run resumes. 403 for your
    own request; 409 once decided, naming who decided."""
    body = body or DecisionIn()
    return _decide(approval_id, principal, context, True, body.reason, body.input)


@router.post("/{approval_id}/reject", response_model=DecisionOut)
def reject(
    approval_id: str,
    principal: CurrentPrincipal,
    context: Context,
    reason: Annotated[str | None, Query(max_length=2000)] = None,
) -> DecisionOut:
    """Reject (`?reason=`): the waiting task fails with the reason; a framework agent's tool call (`tool_call`)
    is not run, and its task goes back to the agent, whose model is told the call was rejected."""
    return _decide(approval_id, principal, context, False, reason)
