"""The agent registry: creating, listing, changing and removing agent records (docs/api.md "Agents").

Deploying an agent (its Ray actor) builds on this in `actors/`; status changes go through
`schedulers.agent_lifecycle`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, not_, select
from sqlalchemy.orm import Session

from core.errors import PermissionDenied
from persistence.models import Agent
from persistence.repositories.json_arrays import array_contains
from persistence.repositories.pages import Page, fetch_page
from persistence.repositories.search import matches_text
from schedulers.agent_lifecycle import AgentStatus
from services import configurations, events, ownership
from services.principal import Principal

# Frameworks an agent may name (docs/api.md "Agents", Frameworks). Deploying needs an installed adapter.
FRAMEWORKS = (
    "native",
    "langgraph",
    "agno",
    "crewai",
    "n8n",
    "autogen",
    "metagpt",
    "autogpt",
    "babyagi",
    "camelai",
    "agentverse",
    "openagents",
    "miniagi",
    "orca",
    "pydantic-ai",
    "openai-agents",
    "smolagents",
    "custom",
)


def create_agent(session: Session, principal: Principal, data: dict[str, Any]) -> Agent:
    _check_public(principal, data.get("is_public"))
    owner_type, owner_id = ownership.resolve_owner(
        session, principal, data.pop("owner_type", None), data.pop("owner_id", None)
    )
    if not data.get("configuration_id"):  # "" as absent (a stored "" names no configuration: a foreign key error)
        data.pop("configuration_id", None)
    configuration_id = data.get("configuration_id")
    if configuration_id:
        template = configurations.record_use(session, principal, configuration_id)
        # The template provides defaults; what the request says wins.
        data["configuration"] = {**(template.configuration or {}), **(data.get("configuration") or {})}
        data.setdefault("framework", template.framework)
    data.setdefault("framework", "native")
    agent = Agent(
        owner_type=owner_type, owner_id=owner_id, created_by=principal.user_id, status=AgentStatus.draft.value, **data
    )
    session.add(agent)
    session.flush()
    events.emit(
        session,
        "agent.created",
        {
            "agent_id": agent.id,
            "name": agent.name,
            "framework": agent.framework,
            "type": agent.type,
            "status": agent.status,
        },
        source="agents",
        owner=agent,
        subject_id=agent.id,
    )
    return agent


def list_agents(
    session: Session,
    principal: Principal,
    *,
    page: int,
    limit: int,
    owner_type: str | None = None,
    framework: str | None = None,
    status: AgentStatus | None = None,
    agent_type: str | None = None,
    capabilities: list[str] | None = None,
    tags: list[str] | None = None,
    available: bool | None = None,
    search: str | None = None,
    load: str | None = None,
) -> Page[Agent]:
    """`load` narrows active agents by their work when a client's status word says so (`LOAD_WORDS`)."""
    dialect = session.get_bind().dialect.name
    query = select(Agent).where(ownership.visible_to(Agent, principal))
    if owner_type:
        query = query.where(Agent.owner_type == owner_type)
    if framework:
        query = query.where(Agent.framework == framework)
    if status is not None:
        query = query.where(Agent.status == status.value)
    if agent_type:
        query = query.where(Agent.type == agent_type)
    for capability in capabilities or []:
        query = query.where(array_contains(Agent.capabilities, capability, dialect))
    for tag in tags or []:
        query = query.where(array_contains(Agent.tags, tag, dialect))
    ready = and_(
        Agent.is_active.is_(True),
        Agent.status == AgentStatus.active.value,
        Agent.current_tasks < Agent.max_concurrent_tasks,
    )
    if available is not None:
        query = query.where(ready if available else not_(ready))
    if load in LOAD_WORDS:
        query = query.where(
            {
                "available": ready,
                "busy": Agent.current_tasks >= Agent.max_concurrent_tasks,
                "idle": Agent.current_tasks == 0,
                "running": Agent.current_tasks > 0,
            }[load]
        )
    if search:
        query = query.where(matches_text(search, Agent.name, Agent.description))
    query = query.order_by(Agent.created_at.desc(), Agent.id.desc())
    return fetch_page(session, query, page=page, limit=limit)


# Status words of other clients that mean an active agent with some load: `available` (can take a task now),
# `busy` (at its task limit), `idle` (no task), `running` (at least one task).
LOAD_WORDS = frozenset({"available", "busy", "idle", "running"})


def get_agent(session: Session, principal: Principal, agent_id: str) -> Agent:
    return ownership.get_visible(session, Agent, agent_id, principal)


def update_agent(session: Session, principal: Principal, agent_id: str, changes: dict[str, Any]) -> Agent:
    agent = ownership.get_writable(session, Agent, agent_id, principal)
    _check_public(principal, changes.get("is_public"))
    for field, value in changes.items():
        setattr(agent, field, value)
    session.flush()
    return agent


def set_enabled(session: Session, principal: Principal, agent_id: str, enabled: bool, reason: str | None) -> Agent:
    """Enable or disable: a disabled agent keeps its status but receives no new tasks."""
    agent = ownership.get_writable(session, Agent, agent_id, principal)
    agent.is_active = enabled
    agent.disabled_reason = None if enabled else reason
    session.flush()
    return agent


def delete_agent(session: Session, principal: Principal, agent_id: str) -> None:
    agent = ownership.get_writable(session, Agent, agent_id, principal)
    session.delete(agent)


def lock_agent(session: Session, agent_id: str) -> Agent | None:
    """The agent row, locked for the rest of the transaction (FOR UPDATE on Postgres; SQLite writers are
    already serialised by BEGIN IMMEDIATE)."""
    return session.get(Agent, agent_id, with_for_update=True, populate_existing=True)


def validate_framework(value: str) -> str:
    """The canonical framework name; ValueError (a validation error of the request) if unknown."""
    framework = value.strip().lower()
    if framework not in FRAMEWORKS:
        raise ValueError(f"one of {', '.join(FRAMEWORKS)}")
    return framework


def _check_public(principal: Principal, is_public: bool | None) -> None:
    # Platform-wide agents receive other tenants' tasks (docs/api.md "Agents"): only admins make them; users share
    # through the marketplace instead.
    if is_public and not principal.is_admin:
        raise PermissionDenied("Only platform admins can make an agent public; publish it to the marketplace")
