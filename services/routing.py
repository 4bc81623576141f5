"""The task router's view of the database: pending tasks and live agents as the routing policy's plain
values, and the one transaction that makes a routing decision durable.

The router (actors/router.py) decides in memory; `assign_routed` applies a decision only if it still
holds in the database (task still pending, agent still active, enabled and below its limit), under row
locks, so a task is never assigned twice, whatever the router's restarts and races.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.orm import Session

from persistence.models import Agent, OrganizationMember, RoutingRule, Task
from schedulers.agent_lifecycle import AgentStatus
from schedulers.routing import DEFAULT_RULES, PRIORITY_LEVELS, AgentSelector, AgentSlot, QueuedTask
from schedulers.task_lifecycle import TaskStatus
from services import tasks
from services.agents import lock_agent

MAX_LOADED_TASKS = 100_000


@dataclass(frozen=True, slots=True)
class Assigned:
    task_id: str
    agent_id: str
    hosted: bool
    options: dict[str, Any] | None


def owner_key(owner_type: str, owner_id: str) -> str:
    return f"{owner_type}:{owner_id}"


def pending_tasks(session: Session, *, clock_offset: float) -> list[QueuedTask]:
    """Every pending task, oldest first, as the router queues it. `clock_offset` turns the database's
    creation times into the router's clock (seconds)."""
    rows = session.execute(
        select(Task.id, Task.priority, Task.type, Task.owner_type, Task.owner_id, Task.created_at)
        .where(Task.status == TaskStatus.pending.value, Task.agent_id.is_(None))
        .order_by(Task.created_at, Task.id)
        .limit(MAX_LOADED_TASKS)
    ).all()
    memberships = _organizations_of(session, {row.owner_id for row in rows if row.owner_type == "user"})
    return [_queued(row, memberships, clock_offset) for row in rows]


@dataclass(frozen=True, slots=True)
class NewTask:
    """A task created pending and unassigned, as its creator tells the router (`submit`): the router
    queues it from this without reading the task back (the assignment re-checks it under lock)."""

    id: str
    priority: str
    type: str
    owner_type: str
    owner_id: str
    created_at: datetime

    @classmethod
    def of(cls, task: Task) -> NewTask:
        return cls(task.id, task.priority, task.type, task.owner_type, task.owner_id, task.created_at)


def queued_new_task(connection: Connection, task: NewTask, *, clock_offset: float) -> QueuedTask:
    memberships = _organizations_of(connection, {task.owner_id} if task.owner_type == "user" else set())
    return _queued(task, memberships, clock_offset)


def queued_task(session: Session, task_id: str, *, clock_offset: float) -> QueuedTask | None:
    task = session.get(Task, task_id)
    if task is None or task.status != TaskStatus.pending.value or task.agent_id is not None:
        return None
    memberships = _organizations_of(session, {task.owner_id} if task.owner_type == "user" else set())
    return _queued(task, memberships, clock_offset)


def _queued(task: Any, memberships: dict[str, set[str]], clock_offset: float) -> QueuedTask:
    """A task row (ORM object or result row) as the routing policy queues it."""
    return QueuedTask(
        task_id=task.id,
        priority=PRIORITY_LEVELS.index(task.priority),
        task_type=task.type,
        tenant=owner_key(task.owner_type, task.owner_id),
        enqueued_at=task.created_at.timestamp() - clock_offset,
        allowed_owners=_allowed(task.owner_type, task.owner_id, memberships),
    )


def agent_slots(session: Session) -> list[AgentSlot]:
    """Agents that can receive tasks now: deployed (`active`) and enabled."""
    rows = session.execute(
        select(Agent).where(Agent.status == AgentStatus.active.value, Agent.is_active.is_(True))
    ).scalars()
    return [
        AgentSlot(
            agent_id=agent.id,
            owner=owner_key(agent.owner_type, agent.owner_id),
            is_public=agent.is_public,
            agent_type=(agent.type or "").lower() or None,
            capabilities=frozenset(agent.capabilities or ()),
            tags=frozenset(agent.tags or ()),
            max_tasks=agent.max_concurrent_tasks,
            current_tasks=agent.current_tasks,
        )
        for agent in rows
    ]


def assign_routed(session: Session, task_id: str, agent_id: str, settings: Any) -> Assigned | None:
    """Make the router's decision durable if it still holds; None if the task or agent changed meanwhile."""
    task = tasks.lock_task(session, task_id)
    if task is None or task.status != TaskStatus.pending.value or task.agent_id is not None:
        return None
    agent = lock_agent(session, agent_id)
    if (
        agent is None
        or agent.status != AgentStatus.active.value
        or not agent.is_active
        or agent.current_tasks >= agent.max_concurrent_tasks
    ):
        return None
    task.agent_id = agent.id
    tasks.set_status(session, task, TaskStatus.assigned)
    hosted = agent.mode == "hosted"
    options = None
    if hosted:
        from services.deployments import actor_options

        options = actor_options(agent, settings)
    return Assigned(task_id=task.id, agent_id=agent.id, hosted=hosted, options=options)


def _organizations_of(connection: Connection | Session, user_ids: set[str]) -> dict[str, set[str]]:
    if not user_ids:
        return {}
    rows = connection.execute(_MEMBERSHIPS, {"users": list(user_ids)}).all()
    result: dict[str, set[str]] = {}
    for user_id, organization_id in rows:
        result.setdefault(user_id, set()).add(organization_id)
    return result


# Built once (a submit runs it for every task created by a user).
_MEMBERSHIPS = select(OrganizationMember.user_id, OrganizationMember.organization_id).where(
    OrganizationMember.user_id.in_(bindparam("users", expanding=True))
)


def _allowed(owner_type: str, owner_id: str, memberships: dict[str, set[str]]) -> frozenset[str]:
    """Owners whose agents a task may use: its own owner, and the organizations of a user owner."""
    allowed = {owner_key(owner_type, owner_id)}
    if owner_type == "user":
        allowed |= {owner_key("organization", org) for org in memberships.get(owner_id, ())}
    return frozenset(allowed)


def rules(session: Session) -> dict[str, AgentSelector]:
    """The effective rules: seed 002's defaults, overridden per task type by the stored ones."""
    effective = dict(DEFAULT_RULES)
    for row in session.scalars(select(RoutingRule)):
        effective[row.task_type] = AgentSelector.from_dict(row.selector)
    return effective


def replace_rules(session: Session, new_rules: dict[str, dict[str, Any]], updated_by: str) -> dict[str, AgentSelector]:
    """Store the given rules as the overrides (a type absent from them falls back to its default)."""
    session.execute(delete(RoutingRule))
    for task_type, selector in new_rules.items():
        session.add(RoutingRule(task_type=task_type, selector=AgentSelector.from_dict(selector).as_dict(),
                                updated_by=updated_by))  # fmt: skip
    session.flush()
    return rules(session)
