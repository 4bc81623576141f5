"""Projects: tasks grouped under a project, a team of members, and figures derived from the tasks.

A project is owned like every resource (a user or an organization). Its members see it and its tasks
even when they are outside the owning organization; changing it, or its team, is for its owners.
Task counts and progress are never stored: they are counted from the project's tasks when read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.errors import FieldIssue, NotFound, PermissionDenied, ValidationFailed, refuse_read_only
from persistence.models import Agent, Project, ProjectMember, Task, User
from persistence.repositories.pages import Page, fetch_page
from persistence.repositories.search import matches_text
from schedulers.task_lifecycle import ACTIVE, WAITING, TaskStatus
from services import events, ownership
from services.principal import Principal

STATUSES = ("active", "on-hold", "completed", "archived")
# Every spelling parse_status reads (in any case): `on_hold` too.
STATUS_SPELLINGS = (*STATUSES, *(status.replace("-", "_") for status in STATUSES if "-" in status))
EDITABLE = frozenset(
    {"name", "description", "status", "priority", "start_date", "end_date", "budget", "tags", "agent_ids"}
)


def parse_status(value: str) -> str:
    word = value.strip().lower().replace("_", "-")
    if word not in STATUSES:
        raise ValueError(f"one of {', '.join(STATUSES)}")
    return word


@dataclass(slots=True)
class Figures:
    """What a project shows of its tasks (`task_count`, `progress`, `team_size`, `assigned_agents`)."""

    total: int = 0
    completed: int = 0
    active: int = 0
    pending: int = 0
    failed: int = 0
    cancelled: int = 0
    agents: set[str] = field(default_factory=set)

    @property
    def progress(self) -> float:
        """Completed over the tasks still meant to be done (cancelled ones are not)."""
        planned = self.total - self.cancelled
        return round(self.completed / planned, 4) if planned else 0.0


def visible_to(principal: Principal) -> ColumnElement[bool]:
    """Projects the caller may see: owned (theirs or their organizations'), public, or theirs as a member."""
    if principal.is_admin:
        return ownership.visible_to(Project, principal)
    member_of = select(ProjectMember.project_id).where(ProjectMember.user_id == principal.user_id)
    return or_(ownership.visible_to(Project, principal), Project.id.in_(member_of))


def is_member(session: Session, project_id: str | None, user_id: str) -> bool:
    return project_id is not None and session.get(ProjectMember, (project_id, user_id)) is not None


# Team roles that may work the project's tasks by hand; other members need the `tasks:write` permission.
TASK_WORKER_ROLES = frozenset({"owner", "manager", "project-manager", "project_manager"})


def may_work_tasks(session: Session, project_id: str | None, user_id: str) -> bool:
    """Whether a team member may take, progress and finish the project's tasks by hand."""
    member = session.get(ProjectMember, (project_id, user_id)) if project_id is not None else None
    return member is not None and (member.role in TASK_WORKER_ROLES or "tasks:write" in member.permissions)


def get_visible(session: Session, principal: Principal, project_id: str) -> Project:
    project = session.get(Project, project_id)
    if project is None or not (
        ownership.can_see(session, project, principal) or is_member(session, project.id, principal.user_id)
    ):
        raise NotFound("Project not found")
    return project


def get_writable(session: Session, principal: Principal, project_id: str) -> Project:
    project = get_visible(session, principal, project_id)
    if not ownership.can_write(session, project, principal):
        raise PermissionDenied("Only the project's owners can change it or its team")
    return project


def check_task_project(session: Session, principal: Principal, project_id: str | None) -> None:
    """A task may join a project its creator can see; any other id is refused, naming the field."""
    if project_id is None:
        return
    try:
        get_visible(session, principal, project_id)
    except NotFound:
        raise ValidationFailed(
            "Unknown project", details=[FieldIssue("project_id", "no project with this id is visible to you")]
        ) from None


def create_project(session: Session, principal: Principal, data: dict[str, Any]) -> Project:
    owner_type, owner_id = ownership.resolve_owner(
        session, principal, data.pop("owner_type", None), data.pop("owner_id", None)
    )
    team = data.pop("team_members", [])
    data["agent_ids"] = _visible_agents(session, principal, data.pop("agent_ids", []), "agents")
    _check_dates(data.get("start_date"), data.get("end_date"))
    project = Project(owner_type=owner_type, owner_id=owner_id, created_by=principal.user_id, **data)
    session.add(project)
    session.flush()
    if principal.is_user_account and all(member["user_id"] != principal.user_id for member in team):
        team = [{"user_id": principal.user_id, "role": "owner", "permissions": []}, *team]
    for index, member in enumerate(team):
        _add(session, project, member, principal, f"team_members[{index}].user_id")
    events.emit(session, "project.created", _summary(project), source="projects", owner=project, subject_id=project.id)
    session.flush()
    return project


def update_project(session: Session, principal: Principal, project_id: str, changes: dict[str, Any]) -> Project:
    project = get_writable(session, principal, project_id)
    refuse_read_only(changes, EDITABLE)
    if "agent_ids" in changes:
        changes["agent_ids"] = _visible_agents(session, principal, changes["agent_ids"], "agents")
    previous = project.status
    for name, value in changes.items():
        setattr(project, name, value)
    _check_dates(project.start_date, project.end_date)
    if project.status != previous:
        project.completed_at = utcnow() if project.status == "completed" else None
    completed = project.status == "completed" and previous != "completed"
    events.emit(
        session,
        "project.completed" if completed else "project.updated",
        {**_summary(project), "changed": sorted(changes)},
        source="projects",
        owner=project,
        subject_id=project.id,
    )
    session.flush()
    return project


def delete_project(session: Session, principal: Principal, project_id: str) -> int:
    """Delete the project; its tasks stay, no longer in a project. Returns how many were detached."""
    project = get_writable(session, principal, project_id)
    detached = session.execute(update(Task).where(Task.project_id == project.id).values(project_id=None)).rowcount
    events.emit(
        session,
        "project.deleted",
        {**_summary(project), "tasks_detached": detached},
        source="projects",
        owner=project,
        subject_id=project.id,
    )
    session.delete(project)
    return detached or 0


def add_member(
    session: Session, principal: Principal, project_id: str, member: dict[str, Any]
) -> tuple[ProjectMember, bool]:
    """Add a user to the team, or change their role: (membership, whether it is new)."""
    project = get_writable(session, principal, project_id)
    existing = session.get(ProjectMember, (project.id, member["user_id"]))
    if existing is not None:
        existing.role, existing.permissions = member["role"], member["permissions"]
        session.flush()
        return existing, False
    added = _add(session, project, member, principal, "user_id")
    session.flush()
    return added, True


def remove_member(session: Session, principal: Principal, project_id: str, user_id: str) -> None:
    project = get_writable(session, principal, project_id)
    membership = session.get(ProjectMember, (project.id, user_id))
    if membership is None:
        raise NotFound("This user is not a member of the project")
    project.members.remove(membership)
    session.flush()


def list_projects(
    session: Session,
    principal: Principal,
    *,
    page: int,
    limit: int,
    status: str | None = None,
    search: str | None = None,
    member_id: str | None = None,
) -> Page[Project]:
    query = select(Project).where(visible_to(principal))
    if status:
        query = query.where(Project.status == status)
    if search:
        query = query.where(matches_text(search, Project.name, Project.description))
    if member_id:
        query = query.where(Project.id.in_(select(ProjectMember.project_id).where(ProjectMember.user_id == member_id)))
    return fetch_page(session, query.order_by(Project.created_at.desc(), Project.id.desc()), page=page, limit=limit)


def figures(session: Session, projects: list[Project]) -> dict[str, Figures]:
    """Task counts and the agents at work, for a page of projects in two grouped queries."""
    result = {project.id: Figures(agents=set(project.agent_ids or [])) for project in projects}
    if not result:
        return result
    ids = list(result)
    counts = session.execute(
        select(Task.project_id, Task.status, func.count())
        .where(Task.project_id.in_(ids))
        .group_by(Task.project_id, Task.status)
    ).all()
    for project_id, status, count in counts:
        figure = result[project_id]
        figure.total += count
        if status == TaskStatus.completed:
            figure.completed += count
        elif status in ACTIVE:
            figure.active += count
        elif status in WAITING:
            figure.pending += count
        elif status == TaskStatus.failed:
            figure.failed += count
        elif status == TaskStatus.cancelled:
            figure.cancelled += count
    agents = session.execute(
        select(Task.project_id, Task.agent_id)
        .where(Task.project_id.in_(ids), Task.agent_id.is_not(None))
        .group_by(Task.project_id, Task.agent_id)
    ).all()
    for project_id, agent_id in agents:
        result[project_id].agents.add(agent_id)
    return result


def member_user_ids(session: Session, project_id: str) -> set[str]:
    return set(session.scalars(select(ProjectMember.user_id).where(ProjectMember.project_id == project_id)))


def _add(session: Session, project: Project, member: dict[str, Any], principal: Principal, where: str) -> ProjectMember:
    if session.get(User, member["user_id"]) is None:
        raise ValidationFailed("Unknown user", details=[FieldIssue(where, "no user with this id")])
    membership = ProjectMember(
        project_id=project.id,
        user_id=member["user_id"],
        role=member.get("role") or "member",
        permissions=member.get("permissions") or [],
        added_by=principal.user_id,
    )
    project.members.append(membership)
    return membership


def _visible_agents(session: Session, principal: Principal, agent_ids: list[str], where: str) -> list[str]:
    for index, agent_id in enumerate(agent_ids):
        agent = session.get(Agent, agent_id)
        if agent is None or not ownership.can_see(session, agent, principal):
            raise ValidationFailed("Unknown agent", details=[FieldIssue(f"{where}[{index}]", "no agent with this id")])
    return list(dict.fromkeys(agent_ids))


def _check_dates(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end < start:
        raise ValidationFailed("End before start", details=[FieldIssue("end_date", "must not be before start_date")])


def _summary(project: Project) -> dict[str, Any]:
    return {"project_id": project.id, "name": project.name, "status": project.status}
