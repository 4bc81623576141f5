"""The task router's view of the database: pending tasks and live agents as the routing policy's plain
values, and the one transaction that makes a routing decision durable.

The router (actors/router.py) decides in memory; `assign_routed` applies a decision only if it still
holds in the database (task still pending, agent still active, enabled and below its limit), under row
locks, so a task is never assigned twice, whatever the router's restarts and races.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.orm import Session

from persistence.db import Database
from persistence.models import Agent, OrganizationMember, RoutingRule, Task
from schedulers.agent_lifecycle import AgentStatus
from schedulers.routing import DEFAULT_RULES, PRIORITY_LEVELS, AgentSelector, AgentSlot, QueuedTask
from schedulers.task_lifecycle import TaskStatus
from services import tasks
from services.agents import lock_agent
from services.deployments import actor_options
from services.ports import AgentActors

log = logging.getLogger("orchestrator.routing")

MAX_LOADED_TASKS = 100_000
MAX_KNOWN_USERS = 100_000


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
    users = {row.owner_id for row in rows if row.owner_type == "user"}
    memberships = Memberships({user: set() for user in users} | _organizations_of(session, users))
    return [queued(row, memberships, session, clock_offset=clock_offset) for row in rows]


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


class Memberships:
    """The organizations of task-owning users, as the router decides with them: each user read once, then
    kept up to `max_age_s` (None: for this object's life). A task is queued with what was known when it
    arrived and keeps it until it is queued again: a membership removed meanwhile is caught where it
    matters, when `assign_routed` re-checks the decision under lock (and the task is queued again with its
    owner's organizations read anew); one added meanwhile is seen by the tasks queued after the entry aged
    out or by the router's periodic re-read of every pending task."""

    def __init__(self, known: dict[str, set[str]] | None = None, *, max_age_s: float | None = None) -> None:
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        now = time.monotonic()
        self._known = {user_id: (organizations, now) for user_id, organizations in (known or {}).items()}

    def organizations(self, user_id: str, reader: Connection | Session | Database) -> set[str]:
        """`reader`: to read a user not known; the caller's connection or session when it holds one (never
        a second connection of the pool in one thread), otherwise the database (a connection only then)."""
        now = time.monotonic()
        with self._lock:  # the router delivers several processes' batches at once
            entry = self._known.get(user_id)
        if entry is not None and (self._max_age_s is None or now - entry[1] <= self._max_age_s):
            return entry[0]
        if isinstance(reader, Database):
            with reader.connect() as connection:
                organizations = _organizations_of(connection, {user_id}).get(user_id, set())
        else:
            organizations = _organizations_of(reader, {user_id}).get(user_id, set())
        with self._lock:
            self._known[user_id] = (organizations, now)
            if len(self._known) > MAX_KNOWN_USERS:  # forget the oldest half
                for stale in sorted(self._known, key=lambda user: self._known[user][1])[: MAX_KNOWN_USERS // 2]:
                    del self._known[stale]
        return organizations

    def forget(self, user_id: str) -> None:
        with self._lock:
            self._known.pop(user_id, None)


def queued_task(
    session: Session, task_id: str, memberships: Memberships, *, clock_offset: float, reread: bool = False
) -> QueuedTask | None:
    """The task as the router queues it, if it is still pending (`reread`: its owner's organizations read
    again, after a decision made with them did not hold)."""
    task = session.get(Task, task_id)
    if task is None or task.status != TaskStatus.pending.value or task.agent_id is not None:
        return None
    if reread:
        memberships.forget(task.owner_id)
    return queued(task, memberships, session, clock_offset=clock_offset)


def queued(
    task: Any, memberships: Memberships, reader: Connection | Session | Database, *, clock_offset: float
) -> QueuedTask:
    """A task row (ORM object, result row or `NewTask`) as the routing policy queues it (`reader`: where to
    read its owner's organizations if they are not known)."""
    return QueuedTask(
        task_id=task.id,
        priority=PRIORITY_LEVELS.index(task.priority),
        task_type=task.type,
        tenant=owner_key(task.owner_type, task.owner_id),
        enqueued_at=task.created_at.timestamp() - clock_offset,
        allowed_owners=_allowed(task.owner_type, task.owner_id, memberships, reader),
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
        or not _may_use(session, task, agent)
    ):
        return None
    task.agent_id = agent.id
    tasks.set_status(session, task, TaskStatus.assigned)
    return assigned_to(task.id, agent, settings)


def assigned_to(task_id: str, agent: Agent, settings: Any) -> Assigned:
    """A task now assigned to `agent`, with what its actor needs if the agent is hosted."""
    hosted = agent.mode == "hosted"
    return Assigned(
        task_id=task_id, agent_id=agent.id, hosted=hosted, options=actor_options(agent, settings) if hosted else None
    )


def hand_over(agents: AgentActors, assigned: Assigned | None) -> None:
    """The one way an assigned task reaches its agent: a hosted agent's actor is sent it (started if it
    was passivated); an external agent's worker polls for it. Stored as assigned first, so a failed send
    is only a delay: the reconciler sends it again."""
    if assigned is None or not assigned.hosted or assigned.options is None:
        return
    try:
        agents.dispatch(assigned.agent_id, assigned.options, assigned.task_id)
    except Exception as exc:
        log.warning(
            "task %s stored as assigned; its dispatch to agent %s is deferred: %s",
            assigned.task_id,
            assigned.agent_id,
            exc,
        )


def _may_use(session: Session, task: Task, agent: Agent) -> bool:
    """The router's choice re-checked against the stored memberships: its memberships may be seconds old."""
    if agent.is_public or (agent.owner_type, agent.owner_id) == (task.owner_type, task.owner_id):
        return True
    if task.owner_type != "user" or agent.owner_type != "organization":
        return False
    return agent.owner_id in _organizations_of(session, {task.owner_id}).get(task.owner_id, set())


def _organizations_of(connection: Connection | Session, user_ids: set[str]) -> dict[str, set[str]]:
    if not user_ids:
        return {}
    rows = connection.execute(_MEMBERSHIPS, {"users": list(user_ids)}).all()
    result: dict[str, set[str]] = {}
    for user_id, organization_id in rows:
        result.setdefault(user_id, set()).add(organization_id)
    return result


# Built once (the router runs it for every owner it does not know yet).
_MEMBERSHIPS = select(OrganizationMember.user_id, OrganizationMember.organization_id).where(
    OrganizationMember.user_id.in_(bindparam("users", expanding=True))
)


def _allowed(
    owner_type: str, owner_id: str, memberships: Memberships, reader: Connection | Session | Database
) -> frozenset[str]:
    """Owners whose agents a task may use: its own owner, and the organizations of a user owner."""
    allowed = {owner_key(owner_type, owner_id)}
    if owner_type == "user":
        allowed |= {owner_key("organization", org) for org in memberships.organizations(owner_id, reader)}
    return frozenset(allowed)


def rules(session: Session) -> dict[str, AgentSelector]:
    """The effective rules: the built-in defaults (`DEFAULT_RULES`), overridden per task type by the stored ones."""
    effective = dict(DEFAULT_RULES)
    for row in session.scalars(select(RoutingRule)):
        effective[row.task_type] = AgentSelector.from_dict(row.selector)
    return effective


def replace_rules(session: Session, new_rules: dict[str, dict[str, Any]], updated_by: str) -> dict[str, AgentSelector]:
    """Store the given rules as the overrides (a type absent from them falls back to its default)."""
    session.execute(delete(RoutingRule))
    for task_type, selector in new_rules.items():
        session.add(
            RoutingRule(
                task_type=task_type, selector=AgentSelector.from_dict(selector).as_dict(), updated_by=updated_by
            )
        )
    session.flush()
    return rules(session)
