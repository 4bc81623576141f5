"""Workflows: an agent's graphs, validated on save, versioned on every update.

A workflow belongs to its agent's tenant. Creating or changing one needs write access to the agent;
reading needs sight of it. Every save of the graph writes a `workflow_versions` row, so each version a
run started with stays readable (`GET /workflows/{id}/versions`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import FieldIssue, ValidationFailed, refuse_read_only
from persistence.models import Agent, Workflow, WorkflowVersion
from persistence.repositories.pages import Page, fetch_page
from runtime.graph import validate
from services import ownership
from services.principal import Principal

EDITABLE = frozenset({"name", "description", "workflow_data", "workflow_type", "framework", "is_active"})


def check_graph(data: Any) -> None:
    problems = validate(data)
    if problems:
        raise ValidationFailed("Invalid workflow", details=[FieldIssue(field, message) for field, message in problems])


def next_version(version: str) -> str:
    """1.0.0 → 1.1.0: each update is a minor version."""
    try:
        major, minor, *_ = (int(part) for part in version.split("."))
    except ValueError:
        return "1.1.0"
    return f"{major}.{minor + 1}.0"


def create(session: Session, principal: Principal, agent_id: str, data: dict[str, Any]) -> Workflow:
    agent = ownership.get_writable(session, Agent, agent_id, principal)
    check_graph(data["workflow_data"])
    workflow = Workflow(
        agent_id=agent.id,
        owner_type=agent.owner_type,
        owner_id=agent.owner_id,
        framework=data.get("framework") or agent.framework,
        created_by=principal.user_id,
        **{k: v for k, v in data.items() if k != "framework"},
    )
    session.add(workflow)
    session.flush()
    _keep_version(session, workflow, principal)
    return workflow


def update(session: Session, principal: Principal, workflow_id: str, changes: dict[str, Any]) -> Workflow:
    workflow = ownership.get_writable(session, Workflow, workflow_id, principal)
    workflow = session.get(Workflow, workflow.id, with_for_update=True, populate_existing=True)
    assert workflow is not None
    refuse_read_only(changes, EDITABLE)
    if "workflow_data" in changes:
        check_graph(changes["workflow_data"])
    for name, value in changes.items():
        setattr(workflow, name, value)
    if {"workflow_data", "name"} & set(changes):
        workflow.version = next_version(workflow.version)
        session.flush()
        _keep_version(session, workflow, principal)
    session.flush()
    return workflow


def delete(session: Session, principal: Principal, workflow_id: str) -> None:
    """Delete the workflow and its versions; its executions stay, with the graph they ran."""
    session.delete(ownership.get_writable(session, Workflow, workflow_id, principal))


def get(session: Session, principal: Principal, workflow_id: str) -> Workflow:
    return ownership.get_visible(session, Workflow, workflow_id, principal)


def list_for_agent(session: Session, principal: Principal, agent_id: str, *, page: int, limit: int) -> Page[Workflow]:
    agent = ownership.get_visible(session, Agent, agent_id, principal)
    query = select(Workflow).where(Workflow.agent_id == agent.id, ownership.visible_to(Workflow, principal))
    return fetch_page(session, query.order_by(Workflow.created_at.desc(), Workflow.id.desc()), page=page, limit=limit)


def versions(session: Session, principal: Principal, workflow_id: str) -> list[WorkflowVersion]:
    workflow = get(session, principal, workflow_id)
    query = select(WorkflowVersion).where(WorkflowVersion.workflow_id == workflow.id)
    return list(session.scalars(query.order_by(WorkflowVersion.created_at.desc(), WorkflowVersion.id.desc())))


def active_workflow(session: Session, agent_id: str) -> Workflow | None:
    """The agent's active workflow: the most recently updated one that is active."""
    query = (
        select(Workflow)
        .where(Workflow.agent_id == agent_id, Workflow.is_active.is_(True))
        .order_by(Workflow.updated_at.desc(), Workflow.id.desc())
        .limit(1)
    )
    return session.scalar(query)


def active_for_agent(session: Session, principal: Principal, agent_id: str) -> Workflow:
    """`POST /executions` runs the agent's active workflow."""
    agent = ownership.get_visible(session, Agent, agent_id, principal)
    workflow = active_workflow(session, agent.id)
    if workflow is None:
        raise ValidationFailed(
            "The agent has no active workflow",
            details=[FieldIssue("agent_id", "create a workflow for this agent first")],
        )
    return workflow


def _keep_version(session: Session, workflow: Workflow, principal: Principal) -> None:
    session.add(
        WorkflowVersion(
            workflow_id=workflow.id,
            version=workflow.version,
            name=workflow.name,
            workflow_data=workflow.workflow_data,
            created_by=principal.user_id,
        )
    )
