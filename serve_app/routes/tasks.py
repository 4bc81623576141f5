"""Tasks (API.md "Tasks"; seeds 002, 003): create (assigning directly when `agent_id` is given), read,
and status reports from the agent working on it. Routing of unassigned tasks by type and priority is the
task router actor's: an unassigned task is stored `pending` and the router is told.

Reads need the `user` role, writes `agent` (seed 002).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Query, Response, status
from pydantic import ValidationError

from actors import router_client
from core.errors import FieldIssue, ValidationFailed
from persistence.models import Agent
from serve_app.deps import Context, CurrentPrincipal
from serve_app.routing import protected_router
from serve_app.schemas.tasks import TaskCreate, TaskOut, TaskStatusOut, TaskStatusUpdate
from services import deployments, tasks
from services.principal import Role

log = logging.getLogger("orchestrator.tasks")
router = protected_router(prefix="/tasks", tags=["tasks"], resource="tasks", write_role=Role.agent)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TaskOut)
def create_task(body: TaskCreate, principal: CurrentPrincipal, context: Context, response: Response) -> TaskOut:
    """Create a task. With `agent_id` it is assigned at once (409 if the agent is disabled, not deployed or
    at its limit); a hosted agent starts it in its actor, an external agent's worker pulls it."""
    data = body.model_dump(exclude_none=True)
    data["meta"] = data.pop("metadata", {})
    with context.db.transaction() as session:
        task = tasks.create_task(session, principal, data)
        result = TaskOut.model_validate(task)
        agent = session.get(Agent, task.agent_id) if task.agent_id else None
        hosted = agent is not None and agent.mode == "hosted"
        options = deployments.actor_options(agent, context.settings) if hosted and agent else None
    if options is not None:
        _dispatch(context, result.agent_id, options, result.id)
    elif result.agent_id is None:
        router_client.notify(context.settings, "submit", result.id)
    response.headers["Location"] = f"/api/v1/tasks/{result.id}"
    return result


@router.get("/{task_id}", response_model=TaskOut)
def get_task(task_id: str, principal: CurrentPrincipal, context: Context) -> TaskOut:
    with context.db.session() as session:
        return TaskOut.model_validate(tasks.get_task(session, principal, task_id))


@router.patch("/{task_id}/status", response_model=TaskStatusOut)
def update_task_status(
    task_id: str,
    principal: CurrentPrincipal,
    context: Context,
    status_param: Annotated[str | None, Query(alias="status", max_length=32)] = None,
    error: Annotated[str | None, Query(max_length=10_000)] = None,
    body: TaskStatusUpdate | None = None,
) -> TaskStatusOut:
    """Seed 002: `?status=in_progress|completed|failed[&error=…]`, or the same fields (plus `result`,
    `progress`) as JSON. Checked by the task state machine (409 INVALID_TRANSITION)."""
    if body is None:
        try:
            body = TaskStatusUpdate.model_validate({"status": status_param, "error": error})
        except ValidationError as exc:
            details = [
                FieldIssue(
                    ".".join(str(p) for p in issue["loc"]) or "status", issue["msg"].removeprefix("Value error, ")
                )
                for issue in exc.errors()
            ]
            raise ValidationFailed("Invalid status report", details=details) from exc
    with context.db.transaction() as session:
        task = tasks.report_status(session, principal, task_id, body.status, error=body.error or error,
                                   result=body.result, progress=body.progress)  # fmt: skip
        out = TaskOut.model_validate(task)
    if out.status in ("completed", "failed", "cancelled", "pending"):
        router_client.notify(context.settings, "agents_changed")  # a slot freed (or a task to route again)
    return TaskStatusOut(task_id=out.id, status=out.status, task=out)


def _dispatch(context, agent_id: str | None, options: dict, task_id: str) -> None:
    from actors import agent_handles

    try:
        agent_handles.dispatch(context.settings, agent_id, options, "run_task", task_id)
    except Exception as exc:  # the task is stored as assigned: the reconciler hands it over later
        log.warning("task %s stored; dispatch deferred: %s", task_id, exc)
