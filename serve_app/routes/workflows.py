"""Workflows and executions (docs/api.md "Workflows and executions").

A run is stored `pending` first and then handed to the run pool (`actors/run.py`); its progress is read
back from the database, which is what `GET /executions/{id}/stream` streams as Server-Sent Events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from core.errors import FieldIssue, ValidationFailed
from persistence.models import Agent, Execution, ExecutionLog, ExecutionStep, Workflow
from persistence.repositories.pages import MAX_OFFSET
from schedulers.execution_lifecycle import FINISHED, ExecutionStatus
from schedulers.execution_lifecycle import parse_status as parse_execution_status
from serve_app.deps import Context, CurrentPrincipal
from serve_app.pagination import PageParams, QueryTime, in_utc, page_params, paginated, refuse_nulls, words_pattern
from serve_app.routing import count_principal, protected_router
from serve_app.schemas.common import MessageResponse
from serve_app.schemas.workflows import (
    ExecuteRequest,
    ExecutionDetail,
    ExecutionList,
    ExecutionOut,
    ExecutionStarted,
    LogOut,
    LogPage,
    StartExecution,
    StepOut,
    WorkflowCreate,
    WorkflowList,
    WorkflowOut,
    WorkflowUpdate,
    WorkflowVersionList,
    WorkflowVersionOut,
)
from services import executions, workflows
from services.principal import Role

router = protected_router(tags=["workflows"], resource="workflows", write_role=Role.agent)
runs = protected_router(prefix="/executions", tags=["executions"], resource="executions", write_role=Role.agent)
START_LIMIT = [Depends(count_principal("executions"))]
STREAM_POLL_S = 0.25


@router.get("/agents/{agent_id}/workflows", response_model=WorkflowList)
def list_workflows(
    request: Request,
    agent_id: str,
    principal: CurrentPrincipal,
    context: Context,
    params: Annotated[PageParams, Depends(page_params)],
) -> dict:
    with context.db.session() as session:
        page = workflows.list_for_agent(session, principal, agent_id, page=params.page, limit=params.limit)
        items = [WorkflowOut.model_validate(item) for item in page.items]
    return paginated(request, "workflows", items, page)


@router.post("/agents/{agent_id}/workflows", status_code=status.HTTP_201_CREATED, response_model=WorkflowOut)
def create_workflow(
    agent_id: str, body: WorkflowCreate, principal: CurrentPrincipal, context: Context, response: Response
) -> WorkflowOut:
    """Create a workflow (version 1.0.0). The graph is validated: every problem is listed, by field."""
    with context.db.transaction() as session:
        out = WorkflowOut.model_validate(workflows.create(session, principal, agent_id, body.model_dump()))
    response.headers["Location"] = f"/api/v1/workflows/{out.id}"
    return out


@router.get("/workflows/{workflow_id}", response_model=WorkflowOut)
def get_workflow(workflow_id: str, principal: CurrentPrincipal, context: Context) -> WorkflowOut:
    with context.db.session() as session:
        return WorkflowOut.model_validate(workflows.get(session, principal, workflow_id))


def _update(workflow_id: str, body: WorkflowUpdate, principal: CurrentPrincipal, context: Context) -> WorkflowOut:
    changes = body.model_dump(exclude_unset=True)
    refuse_nulls(changes, Workflow.__table__)
    if "workflow_type" in changes:
        changes["workflow_type"] = changes["workflow_type"].lower()
    with context.db.transaction() as session:
        return WorkflowOut.model_validate(workflows.update(session, principal, workflow_id, changes))


@router.put("/workflows/{workflow_id}", response_model=WorkflowOut)
def update_workflow(
    workflow_id: str, body: WorkflowUpdate, principal: CurrentPrincipal, context: Context
) -> WorkflowOut:
    """Change the workflow; a new graph or name is a new version (1.0.0 → 1.1.0), the old one is kept.
    Runs already started keep the version they started with."""
    return _update(workflow_id, body, principal, context)


@router.patch("/workflows/{workflow_id}", response_model=WorkflowOut)
def patch_workflow(
    workflow_id: str, body: WorkflowUpdate, principal: CurrentPrincipal, context: Context
) -> WorkflowOut:
    return _update(workflow_id, body, principal, context)


@router.delete("/workflows/{workflow_id}", response_model=MessageResponse)
def delete_workflow(workflow_id: str, principal: CurrentPrincipal, context: Context) -> MessageResponse:
    with context.db.transaction() as session:
        workflows.delete(session, principal, workflow_id)
    return MessageResponse(message="Workflow deleted successfully")


@router.get("/workflows/{workflow_id}/versions", response_model=WorkflowVersionList)
def list_versions(workflow_id: str, principal: CurrentPrincipal, context: Context) -> WorkflowVersionList:
    """Every saved version, newest first."""
    with context.db.session() as session:
        items = workflows.versions(session, principal, workflow_id)
        return WorkflowVersionList(versions=[WorkflowVersionOut.model_validate(item) for item in items])


def _admit(request: dict[str, float], context: Context) -> None:
    """422 INSUFFICIENT_RESOURCES for a run no node (nor node type) could ever hold. Without a cluster
    view (an in-process app) Ray decides when the actor starts."""
    if request and context.actors.agents.on_cluster:
        context.actors.agents.admit(request)


def _start(
    context: Context,
    principal: CurrentPrincipal,
    workflow_id: str | None,
    agent_id: str | None,
    body: dict[str, Any],
    response: Response,
) -> ExecutionStarted:
    options = {k: v for k, v in body["execution_options"].items() if v is not None}
    with context.db.session() as session:
        workflow = (
            workflows.get(session, principal, workflow_id)
            if workflow_id
            else workflows.active_for_agent(session, principal, agent_id or "")
        )
        agent = session.get(Agent, workflow.agent_id)
        limits = agent.resource_limits if agent is not None else None
        request = executions.resources_of(options, limits)
    _admit(request, context)
    with context.db.transaction() as session:
        workflow = workflows.get(session, principal, workflow.id)
        run = executions.start(
            session,
            principal,
            workflow,
            input_data=body["input"],
            options=options,
            trigger=body["trigger"].lower(),
            environment=body["environment"].lower(),
            configuration=body.get("configuration"),
        )
        request = executions.resources_of(run.options, limits)  # with what the run's graph asks (isolation)
        out = ExecutionStarted(
            execution_id=run.id,
            status=run.status,
            started_at=run.started_at,
            created_at=run.created_at,
            correlation_id=run.correlation_id,
            workflow_id=run.workflow_id,
            workflow_version=run.workflow_version,
        )
    context.actors.runs.submit(out.execution_id, request)
    response.headers["Location"] = f"/api/v1/executions/{out.execution_id}"
    return out


@router.post(
    "/workflows/{workflow_id}/execute",
    status_code=status.HTTP_201_CREATED,
    response_model=ExecutionStarted,
    dependencies=START_LIMIT,
)
def execute_workflow(
    workflow_id: str, body: ExecuteRequest, principal: CurrentPrincipal, context: Context, response: Response
) -> ExecutionStarted:
    """Start a run of the workflow's current version: `{input_data, execution_options: {timeout (ms),
    retry_count, resources {cpu, memory (MB), gpu}}}`. 422 INSUFFICIENT_RESOURCES when no node (nor node
    type the autoscaler may add) can ever hold the resources; otherwise the run waits `pending` for them."""
    data = body.model_dump()
    data["input"] = data.pop("input_data")
    return _start(context, principal, workflow_id, None, data, response)


@runs.post("", status_code=status.HTTP_201_CREATED, response_model=ExecutionStarted, dependencies=START_LIMIT)
def start_execution(
    body: StartExecution, principal: CurrentPrincipal, context: Context, response: Response
) -> ExecutionStarted:
    """Run the agent's active workflow with `input`."""
    return _start(context, principal, None, body.agent_id, body.model_dump(), response)


@runs.get("", response_model=ExecutionList)
def list_executions(
    request: Request,
    principal: CurrentPrincipal,
    context: Context,
    params: Annotated[PageParams, Depends(page_params)],
    workflow_id: Annotated[str | None, Query(max_length=64)] = None,
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
    status_filter: Annotated[
        str | None, Query(alias="status", max_length=20, pattern=words_pattern(ExecutionStatus))
    ] = None,
    start_date: Annotated[QueryTime | None, Query()] = None,
    end_date: Annotated[QueryTime | None, Query()] = None,
    trigger: Annotated[str | None, Query(max_length=20)] = None,
    environment: Annotated[str | None, Query(max_length=20)] = None,
) -> dict:
    """Runs you may see, newest first."""
    try:
        wanted = parse_execution_status(status_filter) if status_filter else None
    except ValueError as exc:
        raise ValidationFailed("Invalid status filter", details=[FieldIssue("status", str(exc))]) from exc
    start_date, end_date = in_utc(start_date, end_date)
    with context.db.session() as session:
        page = executions.list_executions(
            session,
            principal,
            page=params.page,
            limit=params.limit,
            workflow_id=workflow_id,
            agent_id=agent_id,
            status=wanted,
            start_date=start_date,
            end_date=end_date,
            trigger=trigger.lower() if trigger else None,
            environment=environment.lower() if environment else None,
        )
        items = [ExecutionOut.model_validate(item) for item in page.items]
    return paginated(request, "executions", items, page)


@runs.get("/{execution_id}", response_model=ExecutionDetail)
def get_execution(execution_id: str, principal: CurrentPrincipal, context: Context) -> ExecutionDetail:
    """The run: status, progress, current step, output or error, every recorded step, its latest logs."""
    with context.db.session() as session:
        run = executions.get(session, principal, execution_id)
        detail = ExecutionDetail.model_validate(run)
        detail.steps = [StepOut.model_validate(step) for step in executions.steps(session, run.id)]
        logs, _ = executions.logs(session, run.id, level=None, limit=100, offset=0)
        detail.logs = [LogOut.model_validate(entry) for entry in logs]
    return detail


def _cancel(execution_id: str, principal: CurrentPrincipal, context: Context) -> ExecutionOut:
    with context.db.transaction() as session:
        run = executions.request_cancel(session, principal, execution_id)
        ended = run.status in FINISHED
    if not ended:  # a running run: its actor stops at its next check
        executions.wait_for_terminal(context.db, execution_id, timeout_s=5.0)
    with context.db.session() as session:
        return ExecutionOut.model_validate(session.get(Execution, execution_id))


@runs.delete("/{execution_id}", response_model=ExecutionOut)
def delete_execution(execution_id: str, principal: CurrentPrincipal, context: Context) -> ExecutionOut:
    """Cancel a pending, running or waiting run; the record stays."""
    return _cancel(execution_id, principal, context)


@runs.post("/{execution_id}/cancel", response_model=ExecutionOut)
def cancel_execution(execution_id: str, principal: CurrentPrincipal, context: Context) -> ExecutionOut:
    return _cancel(execution_id, principal, context)


@runs.get("/{execution_id}/logs", response_model=LogPage)
def execution_logs(
    execution_id: str,
    principal: CurrentPrincipal,
    context: Context,
    level: Annotated[str | None, Query(pattern="(?i)^(debug|info|warn|warning|error|fatal)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> LogPage:
    """The run's logs, oldest first; `level` keeps that level and above."""
    wanted = None if level is None else ("WARN" if level.upper() == "WARNING" else level.upper())
    with context.db.session() as session:
        run = executions.get(session, principal, execution_id)
        logs, total = executions.logs(session, run.id, level=wanted, limit=limit, offset=offset)
        items = [LogOut.model_validate(entry) for entry in logs]
    return LogPage(
        logs=items,
        pagination={"offset": offset, "limit": limit, "total": total, "has_more": offset + len(items) < total},
    )


@runs.get(
    "/{execution_id}/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
)
async def stream_execution(
    execution_id: str,
    principal: CurrentPrincipal,
    context: Context,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Server-Sent Events until the run ends: `step` (each recorded step), `log`, `execution_output` (what
    the run printed or an LLM streamed: `{execution_id, node_id, output, timestamp}`), `status` (status,
    progress, current step), and a final `end`. Reconnect with `Last-Event-ID` to continue after the last
    event received."""
    db = context.db

    def visible() -> None:  # 404 before the stream starts
        with db.session() as session:
            executions.get(session, principal, execution_id)

    def read(
        after_step: int, after_log: int, after_output: int
    ) -> tuple[dict[str, Any], list[ExecutionStep], list[ExecutionLog], list[dict[str, Any]]]:
        """What changed since the cursors: the run's status columns (not its graph or state), new steps, new
        logs, new output."""
        with db.session() as session:
            status, progress, current_step, error, output = session.execute(
                select(
                    Execution.status, Execution.progress, Execution.current_step, Execution.error, Execution.output
                ).where(Execution.id == execution_id)
            ).one()
            steps = executions.steps(session, execution_id, after_seq=after_step)
            logs, _ = executions.logs(session, execution_id, level=None, limit=1000, offset=after_log, with_total=False)
            outputs = executions.output_since(session, execution_id, after_output)
            ended = status in FINISHED
            view = {
                "status": status,
                "progress": progress,
                "current_step": current_step,
                "error": error,
                "output": output if ended else None,
            }
            for item in (*steps, *logs):
                session.expunge(item)
            return view, steps, logs, outputs

    cursor = list(_cursor(last_event_id))  # steps, logs, outputs seen
    await asyncio.to_thread(visible)
    first = await asyncio.to_thread(read, *cursor)

    async def events() -> AsyncIterator[bytes]:
        view, steps, logs, outputs = first
        last_view: dict[str, Any] | None = None
        while True:
            for step in steps:
                cursor[0] = step.seq
                yield _sse("step", StepOut.model_validate(step).model_dump(mode="json"), cursor)
            for entry in logs:
                cursor[1] += 1
                yield _sse("log", LogOut.model_validate(entry).model_dump(mode="json"), cursor)
            for piece in outputs:
                cursor[2] += 1
                yield _sse("execution_output", piece, cursor)
            if view != last_view:
                last_view = view
                yield _sse("status", view, cursor)
            if view["status"] in FINISHED:
                yield _sse("end", view, cursor)
                return
            await asyncio.sleep(STREAM_POLL_S)
            view, steps, logs, outputs = await asyncio.to_thread(read, *cursor)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def _cursor(last_event_id: str | None) -> tuple[int, int, int]:
    """`Last-Event-ID` is `<steps seen>:<logs seen>:<outputs seen>` (the output count may be absent)."""
    try:
        parts = [int(part) for part in (last_event_id or "0:0").split(":")]
    except ValueError:
        return 0, 0, 0
    if len(parts) not in (2, 3):
        return 0, 0, 0
    steps_seen, logs_seen, outputs_seen = (*parts, 0)[:3]
    return max(steps_seen, 0), max(logs_seen, 0), max(outputs_seen, 0)


def _sse(event: str, data: dict[str, Any], cursor: list[int]) -> bytes:
    seen = ":".join(str(n) for n in cursor)
    return f"id: {seen}\nevent: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()
