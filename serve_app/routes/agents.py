"""Agents (docs/api.md "Agents"): the registry with every list filter, enable/disable, deploy/undeploy, the
container (the agent's Ray actor: status, restart, logs) and external workers' heartbeats.

Reads need the `user` role, writes `agent`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request, Response, status

from core.errors import FieldIssue, ValidationFailed
from persistence.models import Agent
from schedulers.agent_lifecycle import SYNONYMS, AgentStatus, parse_status
from serve_app.context import AppContext
from serve_app.deps import Context, CurrentPrincipal
from serve_app.pagination import (
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
from serve_app.schemas.agents import (
    AgentCreate,
    AgentList,
    AgentOut,
    AgentToggle,
    AgentUpdate,
    ContainerOut,
    DeployResponse,
    HeartbeatResponse,
    LogsResponse,
    RestartResponse,
    UndeployResponse,
)
from serve_app.schemas.common import MessageResponse
from serve_app.schemas.tasks import AgentMetrics, TaskList, TaskOut
from services import agents, deployments, tasks
from services.ports import AgentsChanged, TasksRequeued
from services.principal import Role

router = protected_router(prefix="/agents", tags=["agents"], resource="agents", write_role=Role.agent)


def agent_out(agent: Agent, context: AppContext) -> AgentOut:
    out = AgentOut.model_validate(agent)
    out.online = deployments.is_online(agent, context.settings)
    return out


@router.get("", response_model=AgentList)
def list_agents(
    request: Request,
    principal: CurrentPrincipal,
    context: Context,
    params: Annotated[PageParams, Depends(page_params)],
    owner_type: Annotated[str | None, Query(pattern="(?i)^(user|organization)$")] = None,
    framework: Annotated[str | None, Query(max_length=32)] = None,
    status_filter: Annotated[
        str | None, Query(alias="status", max_length=32, pattern=words_pattern([*AgentStatus, *SYNONYMS]))
    ] = None,
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
            load=status_filter.strip().lower() if status_filter else None,
            agent_type=type.lower() if type else None,
            capabilities=csv_param(capabilities),
            tags=csv_param(tags),
            available=available,
            search=search,
        )
        items = [agent_out(agent, context) for agent in page.items]
    return paginated(request, "agents", items, page)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AgentOut)
def create_agent(body: AgentCreate, principal: CurrentPrincipal, context: Context, response: Response) -> AgentOut:
    """Create an agent in `draft`. `configuration_id` starts it from a saved configuration or template."""
    data = body.model_dump(exclude_none=True)
    if body.resource_limits is not None:
        data["resource_limits"] = body.resource_limits.model_dump(exclude_none=True)
    with context.db.transaction() as session:
        result = agent_out(agents.create_agent(session, principal, data), context)
    response.headers["Location"] = f"/api/v1/agents/{result.id}"
    return result


@router.get("/{agent_id}", response_model=AgentOut)
def get_agent(agent_id: str, principal: CurrentPrincipal, context: Context) -> AgentOut:
    with context.db.session() as session:
        return agent_out(agents.get_agent(session, principal, agent_id), context)


def _update(agent_id: str, body: AgentUpdate, principal: CurrentPrincipal, context: Context) -> AgentOut:
    changes = body.model_dump(exclude_unset=True)
    if body.resource_limits is not None:
        changes["resource_limits"] = body.resource_limits.model_dump(exclude_none=True)
    refuse_nulls(changes, Agent.__table__)
    with context.db.transaction() as session:
        return agent_out(agents.update_agent(session, principal, agent_id, changes), context)


@router.put("/{agent_id}", response_model=AgentOut)
def replace_agent(agent_id: str, body: AgentUpdate, principal: CurrentPrincipal, context: Context) -> AgentOut:
    """Update the fields given (clients may send only the ones that change)."""
    return _update(agent_id, body, principal, context)


@router.patch("/{agent_id}", response_model=AgentOut)
def patch_agent(agent_id: str, body: AgentUpdate, principal: CurrentPrincipal, context: Context) -> AgentOut:
    return _update(agent_id, body, principal, context)


@router.delete("/{agent_id}", response_model=MessageResponse)
def delete_agent(agent_id: str, principal: CurrentPrincipal, context: Context) -> MessageResponse:
    """Delete the agent; a deployed agent's actor is stopped first."""
    deployments.delete(context.db, context.actors.agents, principal, agent_id)
    context.actors.router.send(TasksRequeued())
    return MessageResponse(message="Agent deleted successfully")


@router.post("/{agent_id}/enable", response_model=AgentOut)
def enable_agent(agent_id: str, principal: CurrentPrincipal, context: Context) -> AgentOut:
    with context.db.transaction() as session:
        result = agent_out(agents.set_enabled(session, principal, agent_id, True, None), context)
    context.actors.router.send(AgentsChanged())
    return result


@router.post("/{agent_id}/disable", response_model=AgentOut)
def disable_agent(
    agent_id: str, principal: CurrentPrincipal, context: Context, body: AgentToggle | None = None
) -> AgentOut:
    """A disabled agent keeps its status and receives no new tasks."""
    with context.db.transaction() as session:
        agent = agents.set_enabled(session, principal, agent_id, False, body.reason if body else None)
        return agent_out(agent, context)


@router.post(
    "/{agent_id}/deploy",
    response_model=DeployResponse,
    responses={202: {"model": DeployResponse, "description": "placed later: the cluster must free or add resources"}},
)
def deploy_agent(agent_id: str, principal: CurrentPrincipal, context: Context, response: Response) -> DeployResponse:
    """Start the agent's actor with its resource limits. 200 `active` once it runs; 202 `deploying` while
    the cluster frees or adds the resources. FRAMEWORK_UNAVAILABLE, INSUFFICIENT_RESOURCES (no node can
    ever hold it) and DEPLOYMENT_FAILED (its runtime failed to load) answer 422; 409 if already deployed."""
    outcome = deployments.deploy(context.db, context.settings, context.actors.agents, principal, agent_id)
    if outcome.placed:
        context.actors.router.send(AgentsChanged())
    if not outcome.placed:
        response.status_code = status.HTTP_202_ACCEPTED
    agent = outcome.agent
    return DeployResponse(
        id=agent.id,
        status=agent.status,
        container_id=agent.container_id,
        deployed_at=agent.deployed_at,
        status_message=agent.status_message,
        deployment_logs=outcome.logs,
        agent=agent_out(agent, context),
    )


@router.post("/{agent_id}/undeploy", response_model=UndeployResponse)
def undeploy_agent(agent_id: str, principal: CurrentPrincipal, context: Context) -> UndeployResponse:
    """Stop the agent's actor; the agent becomes `inactive` and can be deployed again."""
    agent = deployments.undeploy(context.db, context.actors.agents, principal, agent_id)
    context.actors.router.send(TasksRequeued())  # its unstarted tasks are queued again
    return UndeployResponse(id=agent.id, status=agent.status, undeployed_at=agent.undeployed_at)


@router.get("/{agent_id}/container", response_model=ContainerOut)
def get_container(agent_id: str, principal: CurrentPrincipal, context: Context) -> dict:
    """The agent's actor: Ray's state (node, pid, restarts), its CPU/memory use and a health ping."""
    return deployments.container(context.db, context.settings, context.actors.agents, principal, agent_id)


@router.post("/{agent_id}/container/restart", response_model=RestartResponse)
def restart_container(agent_id: str, principal: CurrentPrincipal, context: Context) -> dict:
    """Restart the actor's process; the new one reloads the agent from the database."""
    return deployments.restart(context.db, context.settings, context.actors.agents, principal, agent_id)


@router.get("/{agent_id}/container/logs", response_model=LogsResponse)
def container_logs(
    agent_id: str,
    principal: CurrentPrincipal,
    context: Context,
    since: Annotated[QueryTime | None, Query(description="ISO timestamp")] = None,
    until: Annotated[QueryTime | None, Query(description="ISO timestamp")] = None,
    tail: Annotated[int, Query(ge=0, le=10_000, description="last N lines")] = 100,
) -> dict:
    """The actor's own log lines, oldest first (its worker's stderr, read through Ray's state API)."""
    since, until = in_utc(since, until)
    entries = deployments.container_logs(
        context.db, context.actors.agents, principal, agent_id, since=since, until=until, tail=tail
    )
    return {"logs": entries}


@router.post("/{agent_id}/heartbeat", response_model=HeartbeatResponse)
def heartbeat(agent_id: str, principal: CurrentPrincipal, context: Context) -> HeartbeatResponse:
    """An external agent's worker, running outside the platform, reports that it is alive."""
    agent = deployments.record_heartbeat(context.db, context.settings, context.actors.agents, principal, agent_id)
    assert agent.last_heartbeat_at is not None
    return HeartbeatResponse(id=agent.id, online=True, last_heartbeat_at=agent.last_heartbeat_at)


@router.get("/{agent_id}/tasks", response_model=TaskList)
def agent_tasks(
    agent_id: str,
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
            description="comma-separated; `active` = assigned or in_progress",
        ),
    ] = None,
) -> dict:
    """The agent's tasks, oldest first: an external worker pulls `?status=assigned`."""
    wanted = task_status_filter(status_filter)
    with context.db.session() as session:
        page = tasks.list_agent_tasks(
            session, principal, agent_id, statuses=wanted, page=params.page, limit=params.limit
        )
        items = [TaskOut.model_validate(task) for task in page.items]
    return paginated(request, "tasks", items, page)


@router.get("/{agent_id}/metrics", response_model=AgentMetrics)
def agent_metrics(
    agent_id: str,
    principal: CurrentPrincipal,
    context: Context,
    start_date: Annotated[QueryTime | None, Query(description="ISO timestamp; default 30 days before end")] = None,
    end_date: Annotated[QueryTime | None, Query(description="ISO timestamp; default now")] = None,
) -> dict:
    """Task, performance and utilization metrics, computed from the agent's recorded tasks in the period
    (null where the platform records nothing to compute from)."""
    start_date, end_date = in_utc(start_date, end_date)
    start, end = tasks.default_period(start_date, end_date)
    if start >= end:
        raise ValidationFailed("Empty period", details=[FieldIssue("start_date", "must be before end_date")])
    with context.db.session() as session:
        return tasks.agent_metrics(session, principal, agent_id, start=start, end=end)
