"""Requirements, project workspaces, archives and settings (docs/api.md "Requirements and workspaces").

`POST /requirements` starts a requirement's pipeline (services/requirements.py). A project's workspace
holds the files its pipelines write: listed and read by whoever sees the project, run in the sandbox by
agents (and admins), reset into an archive and restored from it by those who may change the project.
Paths and archive names never leave the project's directory (422 `WORKSPACE_ERROR` otherwise).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request, Response, status
from fastapi.responses import FileResponse

from core.crypto import SecretBox
from runtime.roles import ROLES
from serve_app.deps import Context, CurrentPrincipal
from serve_app.routing import count_principal, protected_router
from serve_app.schemas.common import ErrorResponse
from serve_app.schemas.workspaces import (
    ArchiveFiles,
    ArchiveList,
    RequirementAccepted,
    RequirementIn,
    ResetResult,
    SettingsIn,
    SettingsOut,
    WorkspaceFile,
    WorkspaceFileList,
    WorkspaceRunStarted,
)
from services import executions, owner_settings, projects, requirements, workspace_runs
from services.principal import Principal, Role
from services.workspaces import Workspace

requirement_routes = protected_router(tags=["requirements"], resource="tasks", min_role=Role.agent)
files = protected_router(prefix="/projects", tags=["workspaces"], resource="projects", write_role=Role.agent)
archives = protected_router(prefix="/projects", tags=["workspaces"], resource="projects", min_role=Role.agent)
settings_routes = protected_router(prefix="/settings", tags=["settings"], resource="settings")

FILE_LIMIT = [Depends(count_principal("files"))]
ARCHIVE_LIMIT = [Depends(count_principal("archives"))]
WORKSPACE_ERRORS = {422: {"description": "WORKSPACE_ERROR: a path outside the workspace, or past its limits"}}


@requirement_routes.post(
    "/requirements",
    status_code=status.HTTP_201_CREATED,
    response_model=RequirementAccepted,
    dependencies=[Depends(count_principal("requirements"))],
)
def submit_requirement(
    body: RequirementIn, principal: CurrentPrincipal, context: Context, response: Response
) -> RequirementAccepted:
    """Start the pipeline (analyst → implementer → validator → integrator) on a requirement. The task it
    creates shows `stage`, `progress`, `agents` and `results`; its files land in the project's workspace."""
    with context.db.transaction() as session:
        task, run = requirements.submit(
            session, principal, requirement=body.requirement, priority=body.priority, metadata=body.metadata
        )
        agents = dict(task.meta["pipeline"]["agents"])
        accepted = RequirementAccepted(
            task_id=task.id,
            status="created",
            agents_assigned=[agents[role] for role in ROLES],
            agents=agents,
            estimated_completion=requirements.ESTIMATE,
            execution_id=run.id,
            project_id=task.project_id or "",
        )
    context.actors.runs.submit(accepted.execution_id, {})
    response.headers["Location"] = f"/api/v1/tasks/{accepted.task_id}"
    return accepted


def _workspace(context: Context, principal: Principal, project_id: str, *, write: bool = False) -> Workspace:
    with context.db.session() as session:
        if write:
            projects.get_writable(session, principal, project_id)
        else:
            projects.get_visible(session, principal, project_id)
    return Workspace.of(context.settings, project_id)


@files.get("/{project_id}/workspace/files", response_model=WorkspaceFileList, dependencies=FILE_LIMIT)
def list_workspace_files(project_id: str, principal: CurrentPrincipal, context: Context) -> dict:
    """The workspace's files: name, path, size, created, whether it can be run and its command."""
    return {"files": _workspace(context, principal, project_id).list_files()}


@files.get(
    "/{project_id}/workspace/files/{path:path}",
    response_class=FileResponse,
    dependencies=FILE_LIMIT,
    responses={200: {"content": {"text/plain": {}, "application/octet-stream": {}}}, **WORKSPACE_ERRORS},
)
def read_workspace_file(project_id: str, path: str, principal: CurrentPrincipal, context: Context) -> FileResponse:
    """The file's raw content: text as `text/plain` (never rendered as a page), anything else as a download."""
    target = _workspace(context, principal, project_id).read(path)
    head = target.open("rb").read(8192)
    try:
        head.decode("utf-8")
        media_type, disposition = "text/plain; charset=utf-8", "inline"
    except UnicodeDecodeError:
        media_type, disposition = "application/octet-stream", "attachment"
    return FileResponse(target, media_type=media_type, filename=target.name, content_disposition_type=disposition)


@files.post(
    "/{project_id}/workspace/run/{path:path}",
    status_code=status.HTTP_201_CREATED,
    response_model=WorkspaceRunStarted,
    dependencies=FILE_LIMIT,
    responses=WORKSPACE_ERRORS,
)
def run_workspace_file(
    project_id: str, path: str, request: Request, principal: CurrentPrincipal, context: Context, response: Response
) -> WorkspaceRunStarted:
    """Run the file in the sandbox (no network, a copy of the workspace, CPU, memory, process, file-size and
    wall-clock limits). Its output streams over `output_stream` (WebSocket) and `stream_url` (SSE); stop it
    with `DELETE /executions/{execution_id}`; its exit code, duration and resource usage are the execution's
    output."""
    with context.db.transaction() as session:
        project = projects.get_visible(session, principal, project_id)
        run = workspace_runs.start(session, principal, context.settings, project, path)
        execution_id, run_status, needs = run.id, run.status, executions.resources_of(run.options, None)
    context.actors.runs.submit(execution_id, needs)
    base = str(request.base_url).rstrip("/")
    ws_base = "wss" + base[5:] if base.startswith("https") else "ws" + base[4:]
    response.headers["Location"] = f"/api/v1/executions/{execution_id}"
    return WorkspaceRunStarted(
        execution_id=execution_id,
        status=run_status,
        process_id=None,
        output_stream=f"{ws_base}/ws/execution/{execution_id}",
        stream_url=f"{base}/api/v1/executions/{execution_id}/stream",
    )


@archives.post(
    "/{project_id}/reset", response_model=ResetResult, dependencies=ARCHIVE_LIMIT, responses=WORKSPACE_ERRORS
)
def reset_project(project_id: str, principal: CurrentPrincipal, context: Context) -> dict:
    """Archive the workspace (a compressed archive and a manifest: files, sizes, SHA-256, the project's
    requirements and runs), then clear it."""
    with context.db.session() as session:
        projects.get_writable(session, principal, project_id)
        recorded = workspace_runs.archive_context(session, project_id)
    return Workspace.of(context.settings, project_id).reset(context=recorded)


@archives.get("/{project_id}/archives", response_model=ArchiveList, dependencies=ARCHIVE_LIMIT)
def list_archives(project_id: str, principal: CurrentPrincipal, context: Context) -> dict:
    """The project's archives, newest first."""
    return {"archives": _workspace(context, principal, project_id).list_archives()}


@archives.get(
    "/{project_id}/archives/{name}/files",
    response_model=ArchiveFiles,
    dependencies=ARCHIVE_LIMIT,
    responses=WORKSPACE_ERRORS,
)
def browse_archive(project_id: str, name: str, principal: CurrentPrincipal, context: Context) -> dict:
    """An archive's manifest: its files (path, size, SHA-256), and the requirements and runs it recorded."""
    return _workspace(context, principal, project_id).manifest(name)


@archives.post(
    "/{project_id}/archives/{name}/restore/{path:path}",
    response_model=WorkspaceFile,
    dependencies=ARCHIVE_LIMIT,
    responses=WORKSPACE_ERRORS,
)
def restore_archived_file(project_id: str, name: str, path: str, principal: CurrentPrincipal, context: Context) -> dict:
    """Copy one file of the archive back into the workspace (replacing the file at that path)."""
    return _workspace(context, principal, project_id, write=True).restore(name, path)


@settings_routes.get(
    "",
    response_model=SettingsOut,
    responses={404: {"model": ErrorResponse, "description": "NOT_FOUND: an organization you are not a member of"}},
)
def read_settings(
    principal: CurrentPrincipal,
    context: Context,
    organization_id: Annotated[str | None, Query(alias="organization_id", max_length=64)] = None,
) -> dict:
    """Your settings (or, with `organization_id`, your organization's): provider keys masked."""
    with context.db.session() as session:
        owner = owner_settings.owner_of(session, principal, organization_id, write=False)
        return owner_settings.read(session, owner)


@settings_routes.post("", response_model=SettingsOut)
def save_settings(
    body: SettingsIn,
    principal: CurrentPrincipal,
    context: Context,
    organization_id: Annotated[str | None, Query(alias="organization_id", max_length=64)] = None,
) -> dict:
    """Save the fields given (the others keep their values). Provider keys are encrypted at rest, returned
    masked, and used by your requirement pipelines' role agents (yours first, then your organization's,
    then the platform's). An organization's settings are changed by its owners and admins."""
    changes = body.model_dump(exclude_unset=True)
    with context.db.transaction() as session:
        owner = owner_settings.owner_of(session, principal, organization_id, write=True)
        return owner_settings.save(session, owner, changes, SecretBox.from_settings(context.settings))
