"""The agent registry (API.md "Agents"): CRUD with every list filter, enable/disable.

Reads need the `user` role, writes `agent` (API.md). Deploy/undeploy, containers, metrics and the
marketplace build on these records.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request, Response, status

from core.errors import FieldIssue, ValidationFailed
from persistence.models import Agent
from schedulers.agent_lifecycle import parse_status
from serve_app.deps import Context, CurrentPrincipal
from serve_app.pagination import PageParams, page_params, paginated
from serve_app.routing import protected_router
from serve_app.schemas.agents import AgentCreate, AgentList, AgentOut, AgentToggle, AgentUpdate
from serve_app.schemas.common import MessageResponse
from services import agents
from services.principal import Role

router = protected_router(prefix="/agents", tags=["agents"], resource="agents", write_role=Role.agent)


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


@router.get("", response_model=AgentList)
def list_agents(
    request: Request,
    principal: CurrentPrincipal,
    context: Context,
    params: Annotated[PageParams, Depends(page_params)],
    owner_type: Annotated[str | None, Query(pattern="(?i)^(user|organization)$")] = None,
    framework: Annotated[str | None, Query(max_length=32)] = None,
    status_filter: Annotated[str | None, Query(alias="status", max_length=32)] = None,
    type: Annotated[str | None, Query(max_length=32, description="role: coding, analysis, ops …")] = None,
    capabilities: Annotated[str | None, Query(max_length=1000, description="comma-separated; all required")] = None,
    tags: Annotated[str | None, Query(max_length=1000, description="comma-separated; all required")] = None,
    available: Annotated[bool | None, Query(description="enabled, active and below its task limit")] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
) -> dict:
    try:
        wanted_status = parse_status(status_filter) if status_filter else None
    except ValueError as exc:
        raise ValidationFailed("Invalid status filter", details=[FieldIssue("status", str(exc))]) from exc
    with context.db.session() as session:
        page = agents.list_agents(
            session,
            principal,
            page=params.page,
            limit=params.limit,
            owner_type=owner_type.lower() if owner_type else None,
            framework=framework.lower() if framework else None,
            status=wanted_status,
            agent_type=type.lower() if type else None,
            capabilities=_csv(capabilities),
            tags=_csv(tags),
            available=available,
            search=search,
        )
        items = [AgentOut.model_validate(agent) for agent in page.items]
    return paginated(request, "agents", items, page)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AgentOut)
def create_agent(body: AgentCreate, principal: CurrentPrincipal, context: Context, response: Response) -> AgentOut:
    """Create an agent in `draft`. `configuration_id` starts it from a saved configuration or template."""
    data = body.model_dump(exclude_none=True)
    if body.resource_limits is not None:
        data["resource_limits"] = body.resource_limits.model_dump(exclude_none=True)
    with context.db.transaction() as session:
        result = AgentOut.model_validate(agents.create_agent(session, principal, data))
    response.headers["Location"] = f"/api/v1/agents/{result.id}"
    return result


@router.get("/{agent_id}", response_model=AgentOut)
def get_agent(agent_id: str, principal: CurrentPrincipal, context: Context) -> AgentOut:
    with context.db.session() as session:
        return AgentOut.model_validate(agents.get_agent(session, principal, agent_id))


def _update(agent_id: str, body: AgentUpdate, principal: CurrentPrincipal, context: Context) -> AgentOut:
    changes = body.model_dump(exclude_unset=True)
    if body.resource_limits is not None:
        changes["resource_limits"] = body.resource_limits.model_dump(exclude_none=True)
    # A field whose column cannot be NULL cannot be cleared: refuse an explicit null for it.
    required = [field for field, value in changes.items() if value is None and not Agent.__table__.c[field].nullable]
    if required:
        raise ValidationFailed("Field cannot be null", details=[FieldIssue(f, "must not be null") for f in required])
    with context.db.transaction() as session:
        return AgentOut.model_validate(agents.update_agent(session, principal, agent_id, changes))


@router.put("/{agent_id}", response_model=AgentOut)
def replace_agent(agent_id: str, body: AgentUpdate, principal: CurrentPrincipal, context: Context) -> AgentOut:
    """Update the fields given (seed 000 sends only the ones that change)."""
    return _update(agent_id, body, principal, context)


@router.patch("/{agent_id}", response_model=AgentOut)
def patch_agent(agent_id: str, body: AgentUpdate, principal: CurrentPrincipal, context: Context) -> AgentOut:
    return _update(agent_id, body, principal, context)


@router.delete("/{agent_id}", response_model=MessageResponse)
def delete_agent(agent_id: str, principal: CurrentPrincipal, context: Context) -> MessageResponse:
    with context.db.transaction() as session:
        agents.delete_agent(session, principal, agent_id)
    return MessageResponse(message="Agent deleted successfully")


@router.post("/{agent_id}/enable", response_model=AgentOut)
def enable_agent(agent_id: str, principal: CurrentPrincipal, context: Context) -> AgentOut:
    with context.db.transaction() as session:
        return AgentOut.model_validate(agents.set_enabled(session, principal, agent_id, True, None))


@router.post("/{agent_id}/disable", response_model=AgentOut)
def disable_agent(
    agent_id: str, principal: CurrentPrincipal, context: Context, body: AgentToggle | None = None
) -> AgentOut:
    """A disabled agent keeps its status and receives no new tasks."""
    with context.db.transaction() as session:
        agent = agents.set_enabled(session, principal, agent_id, False, body.reason if body else None)
        return AgentOut.model_validate(agent)
