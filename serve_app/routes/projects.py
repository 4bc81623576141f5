"""Projects (docs/api.md "Tasks, projects and notifications").

Reads are for whoever can see the project (its tenant and its members); writes for its owners. Task counts,
progress, team size and agents at work are derived from the project's tasks on every read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request, Response, status

from core.errors import FieldIssue, ValidationFailed
from persistence.models import Project
from serve_app.deps import Context, CurrentPrincipal
from serve_app.pagination import (
    PRIORITY_FILTER,
    TASK_STATUS_FILTER,
    PageParams,
    QueryTime,
    page_params,
    paginated,
    refuse_nulls,
    words_pattern,
)
from serve_app.routes.tasks import list_task_page
from serve_app.routing import protected_router
from serve_app.schemas.common import MessageResponse
from serve_app.schemas.projects import (
    MemberIn,
    MemberOut,
    ProjectCreate,
    ProjectList,
    ProjectOut,
    ProjectUpdate,
    TaskCount,
)
from serve_app.schemas.tasks import TaskList
from services import projects

router = protected_router(prefix="/projects", tags=["projects"], resource="projects")


def _out(project: Project, figures: projects.Figures) -> ProjectOut:
    out = ProjectOut.model_validate(project)
    out.progress = figures.progress
    out.task_count = TaskCount(
        total=figures.total,
        completed=figures.completed,
        active=figures.active,
        pending=figures.pending,
        failed=figures.failed,
        cancelled=figures.cancelled,
    )
    out.team_size = len(project.members)
    out.assigned_agents = len(figures.agents)
    return out


def _one(session, project: Project) -> ProjectOut:
    return _out(project, projects.figures(session, [project])[project.id])


def _fields(body: ProjectCreate | ProjectUpdate, *, unset: bool) -> dict:
    data = body.model_dump(exclude_unset=unset, exclude_none=not unset)
    if "agents" in data:
        data["agent_ids"] = data.pop("agents")
    if data.get("budget") is not None:
        data["budget"] = {k: v for k, v in data["budget"].items() if v is not None}
    return data


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ProjectOut)
def create_project(
    body: ProjectCreate, principal: CurrentPrincipal, context: Context, response: Response
) -> ProjectOut:
    with context.db.transaction() as session:
        project = projects.create_project(session, principal, _fields(body, unset=False))
        out = _one(session, project)
    response.headers["Location"] = f"/api/v1/projects/{out.id}"
    return out


@router.get("", response_model=ProjectList)
def list_projects(
    request: Request,
    principal: CurrentPrincipal,
    context: Context,
    params: Annotated[PageParams, Depends(page_params)],
    status_filter: Annotated[
        str | None,
        Query(alias="status", max_length=20, pattern=words_pattern(projects.STATUS_SPELLINGS)),
    ] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
    member_id: Annotated[str | None, Query(max_length=64)] = None,
) -> dict:
    """Projects you own, your organizations own, or are a member of; newest first."""
    try:
        wanted = projects.parse_status(status_filter) if status_filter else None
    except ValueError as exc:
        raise ValidationFailed("Invalid status filter", details=[FieldIssue("status", str(exc))]) from exc
    with context.db.session() as session:
        page = projects.list_projects(
            session, principal, page=params.page, limit=params.limit, status=wanted, search=search, member_id=member_id
        )
        figures = projects.figures(session, page.items)
        items = [_out(project, figures[project.id]) for project in page.items]
    return paginated(request, "projects", items, page)


@router.get("/{project_id}", response_model=ProjectOut)
def get_project(project_id: str, principal: CurrentPrincipal, context: Context) -> ProjectOut:
    with context.db.session() as session:
        return _one(session, projects.get_visible(session, principal, project_id))


def _update(project_id: str, body: ProjectUpdate, principal: CurrentPrincipal, context: Context) -> ProjectOut:
    changes = _fields(body, unset=True)
    refuse_nulls(changes, Project.__table__)
    with context.db.transaction() as session:
        return _one(session, projects.update_project(session, principal, project_id, changes))


@router.put("/{project_id}", response_model=ProjectOut)
def replace_project(project_id: str, body: ProjectUpdate, principal: CurrentPrincipal, context: Context) -> ProjectOut:
    """Update the fields given; `status: completed` fires `project.completed`."""
    return _update(project_id, body, principal, context)


@router.patch("/{project_id}", response_model=ProjectOut)
def patch_project(project_id: str, body: ProjectUpdate, principal: CurrentPrincipal, context: Context) -> ProjectOut:
    return _update(project_id, body, principal, context)


@router.delete("/{project_id}", response_model=MessageResponse)
def delete_project(project_id: str, principal: CurrentPrincipal, context: Context) -> MessageResponse:
    """Delete the project. Its tasks are kept, outside any project."""
    with context.db.transaction() as session:
        detached = projects.delete_project(session, principal, project_id)
    return MessageResponse(message=f"Project deleted; {detached} task(s) kept without a project")


@router.get("/{project_id}/tasks", response_model=TaskList)
def project_tasks(
    request: Request,
    project_id: str,
    principal: CurrentPrincipal,
    context: Context,
    params: Annotated[PageParams, Depends(page_params)],
    status_filter: Annotated[str | None, Query(alias="status", max_length=200, pattern=TASK_STATUS_FILTER)] = None,
    priority: Annotated[str | None, Query(max_length=100, pattern=PRIORITY_FILTER)] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
    sort_by: Annotated[str, Query(pattern="^(created_at|updated_at|priority|due_date|title|status)$")] = "created_at",
    sort_order: Annotated[str, Query(pattern="(?i)^(asc|desc)$")] = "desc",
    created_after: Annotated[QueryTime | None, Query()] = None,
    created_before: Annotated[QueryTime | None, Query()] = None,
) -> dict:
    """The project's tasks, for anyone who can see the project (members included), with the task filters."""
    with context.db.session() as session:
        projects.get_visible(session, principal, project_id)
    return list_task_page(
        request,
        principal,
        context,
        params,
        project_id=project_id,
        whole_project=True,
        status_filter=status_filter,
        priority=priority,
        search=search,
        sort_by=sort_by,
        sort_order=sort_order,
        created_after=created_after,
        created_before=created_before,
    )


@router.post(
    "/{project_id}/members",
    response_model=MemberOut,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": MemberOut, "description": "already a member: their role and permissions changed"}},
)
def add_member(
    project_id: str, body: MemberIn, principal: CurrentPrincipal, context: Context, response: Response
) -> MemberOut:
    """Add a user to the team (201), or change a member's role and permissions (200)."""
    with context.db.transaction() as session:
        membership, created = projects.add_member(session, principal, project_id, body.model_dump())
        out = MemberOut.model_validate(membership)
    if not created:
        response.status_code = status.HTTP_200_OK
    return out


@router.delete("/{project_id}/members/{user_id}", response_model=MessageResponse)
def remove_member(project_id: str, user_id: str, principal: CurrentPrincipal, context: Context) -> MessageResponse:
    with context.db.transaction() as session:
        projects.remove_member(session, principal, project_id, user_id)
    return MessageResponse(message="Member removed")
