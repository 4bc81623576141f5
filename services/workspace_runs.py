"""Running a workspace file (`POST /projects/{id}/workspace/run/{path}`), and what a reset's archive
records of the project's work.

A run is an execution of a one-node graph (`sandbox`, runtime/nodes.py) owned like the project: the run
pool places it like any other run, its output streams as `execution.output` events (WebSocket, and
`/executions/{id}/stream`), `DELETE /executions/{id}` stops it, and its exit code, duration, CPU time and
memory are the execution's output.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import FieldIssue, WorkspaceError
from core.settings import Settings
from persistence.models import Execution, Project, Task
from services import executions
from services.principal import Principal
from services.workspaces import RUNNERS, Workspace

TRIGGER = "workspace"
RECORDED = 200  # the newest requirements and runs a manifest lists


def start(session: Session, principal: Principal, settings: Settings, project: Project, path: str) -> Execution:
    workspace = Workspace.of(settings, project.id)
    target = workspace.read(path)  # 404 for a missing file, 422 for a path that leaves the workspace
    relative = target.relative_to(workspace.files.resolve()).as_posix()
    if target.suffix.lower() not in RUNNERS:
        raise WorkspaceError(
            f"{relative} is not runnable", details=[FieldIssue("path", "runnable: " + ", ".join(sorted(RUNNERS)))]
        )
    limits = settings.workspaces
    node = {
        "id": "run",
        "type": "sandbox",
        "retry_count": 0,
        "config": {
            "path": relative,
            "min_tier": limits.sandbox_min_tier,
            "limits": {
                "cpu_s": limits.sandbox_cpu_s,
                "memory_mb": limits.sandbox_memory_mb,
                "processes": limits.sandbox_processes,
                "file_size_mb": limits.sandbox_file_size_mb,
                "wall_clock_s": limits.sandbox_wall_clock_s,
                "output_bytes": limits.sandbox_output_bytes,
            },
        },
    }
    dedicated = limits.sandbox_cpu > settings.workflows.run_pool_cpu
    resources = {"cpu": limits.sandbox_cpu, "memory": limits.sandbox_memory_mb} if dedicated else {}
    return executions.start_graph(
        session,
        graph={"nodes": [node], "edges": [], "settings": {}},
        owner=(project.owner_type, project.owner_id),
        created_by=principal.user_id,
        input_data={"path": relative},
        trigger=TRIGGER,
        configuration={executions.PLATFORM_KEY: {"project_id": project.id}},
        options={"resources": resources} if resources else {},
    )


def archive_context(session: Session, project_id: str) -> dict[str, Any]:
    """The project's requirements and workspace runs, newest first, for a reset's manifest."""
    requirements = session.execute(
        select(Task.id, Task.title, Task.status, Task.created_at)
        .where(Task.project_id == project_id, Task.type == "requirement")
        .order_by(Task.created_at.desc())
        .limit(RECORDED)
    ).all()
    of_project = Execution.configuration[(executions.PLATFORM_KEY, "project_id")].as_string() == project_id
    runs = session.execute(
        select(Execution.id, Execution.status, Execution.input, Execution.created_at)
        .where(Execution.trigger == TRIGGER, of_project)
        .order_by(Execution.created_at.desc())
        .limit(RECORDED)
    ).all()
    return {
        "requirements": [
            {"task_id": r.id, "requirement": r.title, "status": r.status, "created_at": r.created_at}
            for r in requirements
        ],
        "runs": [
            {"execution_id": r.id, "path": (r.input or {}).get("path"), "status": r.status, "created_at": r.created_at}
            for r in runs
        ],
    }
