"""Tasks (docs/api.md "Tasks, projects and notifications"): create (assigning directly when `agent_id` is given), read,
and status reports from the agent working on it. Routing of unassigned tasks by type and priority is the
task router actor's: an unassigned task is stored `pending` and the router is told.

Reads need the `user` role, writes `agent`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, File, Form, Header, Query, Request, Response, UploadFile, status
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session
from starlette.concurrency import run_in_threadpool

from core.errors import FieldIssue, NotFound, ValidationFailed
from persistence.models import Agent, Task
from persistence.repositories.pages import fetch_page
from schedulers.task_lifecycle import TERMINAL, TaskStatus, parse_priority
from serve_app.context import AppContext
from serve_app.deps import Context, CurrentPrincipal
from serve_app.pagination import (
    PRIORITY_FILTER,
    TASK_STATUS_FILTER,
    PageParams,
    QueryTime,
    csv_param,
    in_utc,
    page_params,
    paginated,
    refuse_nulls,
    task_status_filter,
    words_pattern,
)
from serve_app.routing import protected_router
from serve_app.schemas.common import MessageResponse, ResponseModel
from serve_app.schemas.tasks import (
    REPORTED_STATUS,
    CommentCreate,
    CommentList,
    CommentOut,
    FileList,
    FileOut,
    TaskAssign,
    TaskCreate,
    TaskDetail,
    TaskHistoryEntry,
    TaskList,
    TaskMetrics,
    TaskOut,
    TaskStatusOut,
    TaskStatusUpdate,
    TaskUpdate,
)
from services import approvals, events, idempotency, routing, task_comments, task_files, tasks
from services.ports import AgentsChanged, TasksRequeued, TaskSubmitted
from services.principal import Principal, Role

log = logging.getLogger("orchestrator.tasks")
# `include=a,b` on GET /tasks/{id}.
TASK_INCLUDES = ("comments", "files", "history", "metrics")
router = protected_router(prefix="/tasks", tags=["tasks"], resource="tasks", write_role=Role.agent)


IDEMPOTENT_ROUTE = "POST /tasks"


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TaskOut)
async def create_task(
    body: TaskCreate,
    principal: CurrentPrincipal,
    context: Context,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=idempotency.HEADER,
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="a key of your choosing (printable ASCII, up to 255): the same key and body again, within "
            "a day, answer the task the first request created (header `Idempotent-Replayed: true`) instead of "
            "creating another; the same key with another body is a 422",
        ),
    ] = None,
) -> TaskOut:
    """Create a task. With `agent_id` it is assigned at once (409 if the agent is disabled, not deployed or
    at its limit); a hosted agent starts it in its actor, an external agent's worker pulls it. Without, it
    is stored `pending` (or waiting for an approval) and the router is told. A client that may retry (no
    answer, a timeout) sends an `Idempotency-Key`."""
    data = body.model_dump(exclude_none=True)
    data["meta"] = data.pop("metadata", {})
    if not data.get("agent_id"):  # "" as absent
        data.pop("agent_id", None)
    if idempotency_key is not None:
        result, replayed = await run_in_threadpool(_create_once, principal, context, data, idempotency_key)
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
    elif "agent_id" in data or approvals.needs_approval(data["priority"], context.settings):
        result = await run_in_threadpool(_create_now, principal, context, data)
    else:  # the common case: written with the other requests' new tasks of the moment, in one transaction
        request = tasks.NewTaskRequest(principal, data, events.current_correlation_id())
        # Shielded: a request cancelled once its task is being written still tells the router of it.
        result = await asyncio.shield(asyncio.ensure_future(_create_grouped(context, request)))
    response.headers["Location"] = f"/api/v1/tasks/{result.id}"
    return result


async def _create_grouped(context: AppContext, request: tasks.NewTaskRequest) -> TaskOut:
    task = await context.new_tasks.submit(request)
    context.actors.router.send(TaskSubmitted(task.id, routing.NewTask.of(task)))
    return TaskOut.model_validate(task)


def _create_once(principal: Principal, context: AppContext, data: dict, key: str) -> tuple[TaskOut, bool]:
    """The task this key created (and True), or a new one remembered under the key."""
    request_hash = idempotency.digest(data)
    ttl_s = context.settings.api.idempotency_ttl_s

    def created_before() -> TaskOut | None:
        with context.db.session() as session:
            task_id = idempotency.find(session, principal.user_id, IDEMPOTENT_ROUTE, key, request_hash, ttl_s)
            return TaskOut.model_validate(tasks.get_task(session, principal, task_id)) if task_id else None

    earlier = created_before()
    if earlier is not None:
        return earlier, True
    try:
        return _create_now(principal, context, data, key=(key, request_hash)), False
    except (IntegrityError, idempotency.Taken):  # a request with the same key committed first: its task
        earlier = created_before()
        if earlier is None:
            raise
        return earlier, True


def _create_now(principal: Principal, context: AppContext, data: dict, key: tuple[str, str] | None = None) -> TaskOut:
    with context.db.transaction() as session:
        task = tasks.create_task(session, principal, data, approval_gate=_gate(principal, context))
        if key is not None:
            ttl_s = context.settings.api.idempotency_ttl_s
            idempotency.remember(session, principal.user_id, IDEMPOTENT_ROUTE, key[0], key[1], task.id, ttl_s)
        result = TaskOut.model_validate(task)
        agent = session.get(Agent, task.agent_id) if task.agent_id else None
        assigned = routing.assigned_to(task.id, agent, context.settings) if agent is not None else None
    if assigned is not None:
        routing.hand_over(context.actors.agents, assigned)
    elif result.status == TaskStatus.pending.value and result.agent_id is None:  # not waiting for an approval
        context.actors.router.send(TaskSubmitted(result.id, routing.NewTask.of(task)))
    return result


@router.get("", response_model=TaskList)
def list_tasks(
    request: Request,
    principal: CurrentPrincipal,
    context: Context,
    params: Annotated[PageParams, Depends(page_params)],
    status_filter: Annotated[
        str | None,
        Query(
            alias="status",
            max_length=200,
            pattern=TASK_STATUS_FILTER,
            description="comma-separated; active = assigned or in_progress",
        ),
    ] = None,
    priority: Annotated[
        str | None, Query(max_length=100, pattern=PRIORITY_FILTER, description="comma-separated, any spelling")
    ] = None,
    type: Annotated[str | None, Query(max_length=64)] = None,
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
    project_id: Annotated[str | None, Query(max_length=64)] = None,
    tags: Annotated[str | None, Query(max_length=1000, description="comma-separated; all required")] = None,
    search: Annotated[str | None, Query(max_length=200, description="title or description")] = None,
    created_after: Annotated[QueryTime | None, Query()] = None,
    created_before: Annotated[QueryTime | None, Query()] = None,
    sort_by: Annotated[str, Query(pattern="^(created_at|updated_at|priority|due_date|title|status)$")] = "created_at",
    sort_order: Annotated[str, Query(pattern="(?i)^(asc|desc)$")] = "desc",
) -> dict:
    """Tasks you may see, with every filter, search and sort (newest first by default)."""
    return list_task_page(
        request,
        principal,
        context,
        params,
        status_filter=status_filter,
        priority=priority,
        task_type=type,
        agent_id=agent_id,
        project_id=project_id,
        tags=tags,
        search=search,
        created_after=created_after,
        created_before=created_before,
        sort_by=sort_by,
        sort_order=sort_order,
    )


def list_task_page(
    request: Request,
    principal: CurrentPrincipal,
    context: Context,
    params: PageParams,
    *,
    status_filter: str | None = None,
    priority: str | None = None,
    task_type: str | None = None,
    agent_id: str | None = None,
    project_id: str | None = None,
    whole_project: bool = False,
    tags: str | None = None,
    search: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    sort_by: str = "created_at",
    sort_order: str = "desc",
) -> dict:
    """A page of tasks with the list's filters; `whole_project`: every task of a project the caller was
    checked to see (its members see them all)."""
    statuses = task_status_filter(status_filter)
    try:
        priorities = {parse_priority(word) for word in csv_param(priority)}
    except ValueError as exc:
        raise ValidationFailed("Invalid priority filter", details=[FieldIssue("priority", str(exc))]) from exc
    created_after, created_before = in_utc(created_after, created_before)
    with context.db.session() as session:
        page = tasks.list_tasks(
            session,
            principal,
            page=params.page,
            limit=params.limit,
            statuses=statuses,
            priorities=priorities,
            task_type=task_type.lower() if task_type else None,
            agent_id=agent_id,
            project_id=project_id,
            whole_project=whole_project,
            tags=csv_param(tags),
            search=search,
            created_after=created_after,
            created_before=created_before,
            sort_by=sort_by,
            sort_order=sort_order.lower(),
        )
        items = [TaskOut.model_validate(task) for task in page.items]
    return paginated(request, "tasks", items, page)


@router.get("/{task_id}", response_model=TaskDetail, response_model_by_alias=True)
def get_task(
    task_id: str,
    principal: CurrentPrincipal,
    context: Context,
    include: Annotated[
        str | None,
        Query(
            max_length=200,
            description="comments, files, history, metrics (comma-separated)",
            # Checked below (422 naming `include` and the unknown words).
            json_schema_extra={"pattern": words_pattern(TASK_INCLUDES, listed=True, blanks=True)},
        ),
    ] = None,
) -> TaskDetail:
    """The task; `include=` adds its comments, files, every recorded change (history), and metrics."""
    wanted = {part.lower() for part in csv_param(include)}
    unknown = wanted - set(TASK_INCLUDES)
    if unknown:
        raise ValidationFailed("Unknown include", details=[FieldIssue("include", f"not available: {sorted(unknown)}")])
    with context.db.session() as session:
        task = tasks.get_task(session, principal, task_id)
        detail = TaskDetail.model_validate(task)
        if "comments" in wanted:
            detail.comments = [CommentOut.model_validate(c) for c in task_comments.list_comments(session, task.id)]
        if "files" in wanted:
            detail.files = [FileOut.model_validate(f) for f in task_files.list_files(session, task.id)]
        if "history" in wanted:
            detail.history = [
                TaskHistoryEntry(from_=entry.pop("from"), **entry) for entry in tasks.history(session, task.id)
            ]
        if "metrics" in wanted:
            detail.metrics = TaskMetrics(**tasks.task_metrics(task))
    return detail


def _update(task_id: str, body: TaskUpdate, principal: CurrentPrincipal, context: Context) -> TaskOut:
    changes = body.model_dump(exclude_unset=True)
    if "metadata" in changes:
        changes["meta"] = changes.pop("metadata")
    refuse_nulls(changes, Task.__table__, {"meta": "metadata"})
    with context.db.transaction() as session:
        was_gated = "priority" in changes and _gated(session, task_id, context)
        task = tasks.update_task(session, principal, task_id, changes)
        # Raised into the approval priorities while it waits for an agent: a person decides first, as at creation.
        if "priority" in changes and not was_gated and task.status == TaskStatus.pending.value:
            _gate(principal, context)(task, None)
        out = TaskOut.model_validate(task)
    if out.status in TERMINAL | {TaskStatus.pending}:
        context.actors.router.send(AgentsChanged())
    return out


def _gated(session: Session, task_id: str, context: Context) -> bool:
    priority = session.scalar(select(Task.priority).where(Task.id == task_id))
    return priority is not None and approvals.needs_approval(priority, context.settings)


@router.put("/{task_id}", response_model=TaskOut)
def replace_task(task_id: str, body: TaskUpdate, principal: CurrentPrincipal, context: Context) -> TaskOut:
    """Update the fields given."""
    return _update(task_id, body, principal, context)


@router.patch("/{task_id}", response_model=TaskOut)
def patch_task(task_id: str, body: TaskUpdate, principal: CurrentPrincipal, context: Context) -> TaskOut:
    return _update(task_id, body, principal, context)


@router.delete("/{task_id}", response_model=MessageResponse)
def delete_task(
    task_id: str,
    principal: CurrentPrincipal,
    context: Context,
    reason: Annotated[str | None, Query(max_length=500)] = None,
) -> MessageResponse:
    with context.db.transaction() as session:
        tasks.delete_task(session, principal, task_id, reason)
    task_files.store_for(context.settings).delete_prefix(task_id)  # its rows went with the task
    context.actors.router.send(TasksRequeued())
    return MessageResponse(message="Task deleted successfully")


@router.post("/{task_id}/assign", response_model=TaskOut)
def assign_task(task_id: str, body: TaskAssign, principal: CurrentPrincipal, context: Context) -> TaskOut:
    """Assign a pending task to an agent directly (409 if the agent is disabled, not deployed or full)."""
    with context.db.transaction() as session:
        task = tasks.assign_task(session, principal, task_id, body.agent_id)
        out = TaskOut.model_validate(task)
        agent = session.get(Agent, body.agent_id)
        assigned = routing.assigned_to(task.id, agent, context.settings) if agent is not None else None
    routing.hand_over(context.actors.agents, assigned)
    context.actors.router.send(TasksRequeued())
    return out


@router.patch("/{task_id}/status", response_model=TaskStatusOut)
def update_task_status(
    task_id: str,
    principal: CurrentPrincipal,
    context: Context,
    # The report checks the status itself (422 naming `status`: an unknown word, or one a report cannot name).
    status_param: Annotated[
        str | None, Query(alias="status", max_length=32, json_schema_extra={"pattern": REPORTED_STATUS})
    ] = None,
    error: Annotated[str | None, Query(max_length=10_000)] = None,
    body: TaskStatusUpdate | None = None,
) -> TaskStatusOut:
    """`?status=in_progress|completed|failed[&error=…]` as query parameters, or the same fields (plus `result`,
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
        task = tasks.report_status(
            session,
            principal,
            task_id,
            body.status,
            error=body.error or error,
            result=body.result,
            progress=body.progress,
        )
        out = TaskOut.model_validate(task)
    if out.status in TERMINAL | {TaskStatus.pending}:
        context.actors.router.send(AgentsChanged())  # a slot freed (or a task to route again)
    return TaskStatusOut(task_id=out.id, status=out.status, task=out)


@router.post("/{task_id}/comments", status_code=status.HTTP_201_CREATED, response_model=CommentOut)
def add_comment(
    task_id: str, body: CommentCreate, principal: CurrentPrincipal, context: Context, response: Response
) -> CommentOut:
    """Comment on a task you can see; each mentioned user (id or email, who can see the task) is notified."""
    with context.db.transaction() as session:
        out = CommentOut.model_validate(
            task_comments.add_comment(session, principal, task_id, body.content, body.mentions)
        )
    response.headers["Location"] = f"/api/v1/tasks/{task_id}/comments/{out.id}"
    return out


@router.get("/{task_id}/comments/{comment_id}", response_model=CommentOut)
def get_comment(task_id: str, comment_id: str, principal: CurrentPrincipal, context: Context) -> CommentOut:
    with context.db.session() as session:
        return CommentOut.model_validate(task_comments.get_comment(session, principal, task_id, comment_id))


@router.get("/{task_id}/comments", response_model=CommentList)
def list_comments(
    task_id: str,
    request: Request,
    principal: CurrentPrincipal,
    context: Context,
    params: Annotated[PageParams, Depends(page_params)],
) -> dict:
    """A task's comments, oldest first."""
    return _attached_page(
        request, principal, context, params, task_id, "comments", task_comments.comments_query, CommentOut
    )


@router.post("/{task_id}/files", status_code=status.HTTP_201_CREATED, response_model=FileOut)
def upload_file(
    task_id: str,
    principal: CurrentPrincipal,
    context: Context,
    response: Response,
    file: Annotated[UploadFile, File(description="the file (multipart/form-data)")],
    description: Annotated[str | None, Form(max_length=2000)] = None,
) -> FileOut:
    """Attach a file (multipart field `file`, optional `description`). Up to ORCHESTRATOR_MAX_UPLOAD_BYTES
    (413 beyond); the type must be accepted and the content must match it (422)."""
    record = task_files.upload(
        context.db,
        context.settings,
        principal,
        task_id,
        file.file,
        filename=file.filename,
        declared_type=file.content_type,
        description=description,
    )
    response.headers["Location"] = f"/api/v1/tasks/{task_id}/files/{record.id}"
    return FileOut.model_validate(record)


@router.get("/{task_id}/files", response_model=FileList)
def list_files(
    task_id: str,
    request: Request,
    principal: CurrentPrincipal,
    context: Context,
    params: Annotated[PageParams, Depends(page_params)],
) -> dict:
    """A task's files (their records; each one's bytes at `/files/{file_id}`), oldest first."""
    return _attached_page(request, principal, context, params, task_id, "files", task_files.files_query, FileOut)


def _attached_page(
    request: Request,
    principal: Principal,
    context: AppContext,
    params: PageParams,
    task_id: str,
    key: str,
    query_of: Callable[[str], Select[Any]],
    out: type[ResponseModel],
) -> dict:
    """A page of the records attached to a task the caller can see (`query_of(task_id)`), as `out`."""
    with context.db.session() as session:
        task = tasks.get_task(session, principal, task_id)
        page = fetch_page(session, query_of(task.id), page=params.page, limit=params.limit)
        return paginated(request, key, [out.model_validate(item) for item in page.items], page)


@router.get(
    "/{task_id}/files/{file_id}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "the file's bytes"}},
)
def download_file(task_id: str, file_id: str, principal: CurrentPrincipal, context: Context) -> StreamingResponse:
    """The file's bytes, as an attachment with its recorded type (never rendered inline)."""
    with context.db.session() as session:
        record = task_files.get_file(session, principal, task_id, file_id)
        key, name, kind, size, digest = record.storage_key, record.name, record.mime_type, record.size, record.sha256
    store = task_files.store_for(context.settings)
    if not store.exists(key):
        raise NotFound("The file's content is missing from the file store")
    headers = {
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
        "Content-Length": str(size),
        "X-Content-Type-Options": "nosniff",
        "ETag": f'"{digest}"',
    }
    return StreamingResponse(store.read(key), media_type=kind, headers=headers)


def _gate(principal: CurrentPrincipal, context: Context):
    """P0/P1 tasks (ORCHESTRATOR_APPROVAL_PRIORITIES) wait for a human before any agent gets them."""

    def gate(task: Task, agent_id: str | None) -> bool:
        if not approvals.needs_approval(task.priority, context.settings):
            return False
        session = object_session(task)
        approvals.request_for_task(session, task, principal.user_id, context.settings, assign_to=agent_id)
        return True

    return gate
