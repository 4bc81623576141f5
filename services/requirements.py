"""Requirements: a sentence of what someone wants, worked by a pipeline of role agents into
files of a project's workspace.

`submit` stores a task (type `requirement`) and a durable run of a graph built here: analyst →
implementer → validator → integrator, each a `role` node (runtime/roles.py). A role that the tenant has
active agents of (agent `type` = the role) is handed to them through the task router (task type
`requirement_<stage>`); any other is done by the built-in role agent with the LLM provider of the caller's
settings, else their organization's, else the platform's. A rejecting validator sends the work back to the
implementer, at most `max_rejections` times. `metadata.approve_after` (a list of stages, or true for all)
puts a human approval after those stages. The run ends the task: its stages' answers are the task's
`results`, its files are in the workspace.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import FieldIssue, ValidationFailed
from persistence.models import Agent, Execution, Project, Task
from runtime.roles import ROLES, STAGES
from schedulers.agent_lifecycle import AgentStatus
from schedulers.task_lifecycle import TaskStatus, parse_priority
from services import executions, owner_settings, ownership, projects, tasks
from services.principal import Principal

TASK_TYPE = "requirement"
DEFAULT_PROJECT = "Workspace"
MAX_REJECTIONS = 2
ESTIMATE = "2-5 minutes"


def submit(
    session: Session, principal: Principal, *, requirement: str, priority: str | None, metadata: dict[str, Any]
) -> tuple[Task, Execution]:
    """The requirement's task (`in_progress`) and its pipeline run (`pending`); the caller tells the run pool
    after commit. Without a priority, the caller's settings' `default_priority` applies."""
    if priority is None:
        priority = parse_priority(int(owner_settings.read(session, ("user", principal.user_id))["default_priority"]))
    metadata = {key: value for key, value in metadata.items() if key != "pipeline"}
    project = _project(session, principal, metadata.get("project_id") or metadata.get("projectId"))
    staffed = _staffed_roles(session, principal)
    agents = {role: staffed.get(role) or f"builtin-{role}" for role in ROLES}
    graph = pipeline_graph(
        delegated=frozenset(staffed),
        approve_after=_approve_after(metadata.get("approve_after")),
        max_rejections=MAX_REJECTIONS,
    )
    task = tasks.create_task(
        session,
        principal,
        {
            "type": TASK_TYPE,
            "title": requirement[:300],
            "description": requirement,
            "priority": priority,
            "project_id": project.id,
            "source": "requirements",
            "meta": {**metadata, "pipeline": {"agents": agents, "stage": STAGES["analyst"], "results": {}}},
        },
    )
    tasks.set_status(session, task, TaskStatus.assigned)
    tasks.set_status(session, task, TaskStatus.in_progress)
    run = executions.start_graph(
        session,
        graph=graph,
        owner=(task.owner_type, task.owner_id),
        created_by=principal.user_id,
        input_data={"requirement": requirement, "project_id": project.id},
        trigger=TASK_TYPE,
        configuration={executions.PLATFORM_KEY: {"project_id": project.id, "provider": "owner_settings"}},
        task_id=task.id,
    )
    task.meta = {**task.meta, "pipeline": {**task.meta["pipeline"], "execution_id": run.id}}
    return task, run


def pipeline_graph(*, delegated: frozenset[str], approve_after: frozenset[str], max_rejections: int) -> dict:
    """The pipeline as a workflow graph: node ids are the roles; approvals are `approve_<stage>`."""
    nodes: list[dict[str, Any]] = [{"id": "input", "type": "input"}]
    edges: list[dict[str, Any]] = []
    previous = "input"
    for role in ROLES:
        config: dict[str, Any] = {"role": role, "delegate": role in delegated}
        node: dict[str, Any] = {"id": role, "type": "role", "config": config, "retry_count": 2}
        if role == "validator":
            config["max_rejections"] = max_rejections
        if role == "implementer":
            node["allow_loops"] = True
        nodes.append(node)
        edges.append({"source": previous, "target": role})
        after = role
        if STAGES[role] in approve_after:
            gate = f"approve_{STAGES[role]}"
            nodes.append({"id": gate, "type": "approval", "config": {"reason": f"Approve the {STAGES[role]}?"}})
            edges.append({"source": role, "target": gate, **({"branch": "true"} if role == "validator" else {})})
            after = gate
        previous = after
    # The validator's verdict: approved goes on (through its approval, if any), rejected goes back.
    for edge in edges:
        if edge["source"] == "validator" and "branch" not in edge:
            edge["branch"] = "true"
    edges.append({"source": "validator", "target": "implementer", "branch": "false"})
    nodes.append({"id": "output", "type": "output"})
    edges.append({"source": previous, "target": "output"})
    return {"nodes": nodes, "edges": edges, "settings": {}}


def _project(session: Session, principal: Principal, project_id: Any) -> Project:
    """The project named in the metadata, else the caller's own default workspace (made on first use)."""
    if project_id is not None:
        if not isinstance(project_id, str):
            raise ValidationFailed("Invalid project", details=[FieldIssue("metadata.project_id", "a project id")])
        return projects.get_visible(session, principal, project_id)
    query = select(Project).where(
        Project.owner_type == "user", Project.owner_id == principal.user_id, Project.name == DEFAULT_PROJECT
    )
    found = session.scalars(query.order_by(Project.created_at).limit(1)).first()
    if found is not None:
        return found
    return projects.create_project(
        session, principal, {"name": DEFAULT_PROJECT, "description": "Requirements submitted without a project"}
    )


def _staffed_roles(session: Session, principal: Principal) -> dict[str, str]:
    """Roles the tenant has an active agent of (agent `type` = role): role → the first such agent's name."""
    query = (
        select(Agent.type, Agent.name)
        .where(
            Agent.type.in_(ROLES),
            Agent.status == AgentStatus.active.value,
            Agent.is_active.is_(True),
            ownership.owned_by(Agent, principal),
        )
        .order_by(Agent.created_at)
    )
    staffed: dict[str, str] = {}
    for role, name in session.execute(query):
        staffed.setdefault(role, name)
    return staffed


def _approve_after(value: Any) -> frozenset[str]:
    stages = frozenset(STAGES.values())
    if value is None or value is False:
        return frozenset()
    if value is True:
        return stages
    if isinstance(value, list) and all(isinstance(v, str) and v in stages for v in value):
        return frozenset(value)
    raise ValidationFailed(
        "Invalid metadata.approve_after",
        details=[FieldIssue("metadata.approve_after", "true, or a list of: " + ", ".join(STAGES.values()))],
    )
