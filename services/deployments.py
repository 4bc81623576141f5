"""Deploying agents: the durable side of an agent's actor (docs/api.md "Agents").

The database is written first and the actor told second, so that a failed actor call leaves a record the
reconciler finishes from. Every status change goes through `set_status`, which applies
`schedulers.agent_lifecycle` to the locked row and writes `agent.status_changed` to the outbox.
The live side is the `AgentActors` port (services/ports.py), which `actors/` implements on Ray.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import isoformat_z, utcnow
from core.crypto import SecretBox
from core.errors import Conflict, DeploymentFailed, FieldIssue, NotFound, ValidationFailed
from core.settings import Settings
from frameworks import AgentSpec, adapter_for, check_code_paths
from frameworks.context import approval_policy
from persistence.db import Database
from persistence.models import Agent
from schedulers import admission
from schedulers.agent_lifecycle import DEPLOYED, AgentStatus, transition
from services import events, owner_settings, ownership, tasks
from services.agents import lock_agent
from services.ports import AgentActors
from services.principal import Principal

log = logging.getLogger("orchestrator.deployments")


@dataclass(frozen=True, slots=True)
class DeployOutcome:
    agent: Agent
    placed: bool
    logs: list[str]


def resources_of(agent: Agent, settings: Settings) -> dict[str, float]:
    return admission.ray_resources(agent.resource_limits or {}, default_cpu=settings.agents.agent_default_cpu)


def spec_of(agent: Agent, code_modules: tuple[str, ...] = (), http_allowed: tuple[str, ...] = ()) -> AgentSpec:
    return AgentSpec(
        id=agent.id,
        name=agent.name,
        framework=agent.framework,
        mode=agent.mode,
        version=agent.version,
        model=agent.model,
        provider=agent.provider,
        configuration=dict(agent.configuration or {}),
        code_modules=code_modules,
        http_allowed=http_allowed,
    )


def set_status(session: Session, agent: Agent, target: AgentStatus, message: str | None = None) -> None:
    """Apply one lifecycle transition to a row locked by `lock_agent`, with its event."""
    previous = agent.status
    agent.status = transition(previous, target).value
    agent.status_message = message
    events.emit(
        session,
        "agent.status_changed",
        {
            "agent_id": agent.id,
            "status": agent.status,
            "previous_status": previous,
            "container_id": agent.container_id,
            "message": message,
        },
        source="agents",
        owner=agent,
        subject_id=agent.id,
    )


# --- requests from the API ---------------------------------------------------------------------------


def deploy(db: Database, settings: Settings, agents: AgentActors, principal: Principal, agent_id: str) -> DeployOutcome:
    """Deploy: check framework and resources, record `deploying`, start the actor, wait a bounded time.

    Answers with the agent `active` once the actor is ready, or still `deploying` when the cluster has
    to free or add resources first (the actor reports itself ready through the store when placed).
    """
    # Checks first, outside the write transaction: they read the cluster (GCS calls), which must not
    # hold the agent's row lock or SQLite's writer turn.
    with db.session() as session:
        agent = ownership.get_writable(session, Agent, agent_id, principal)
        _check_deployable(agent, settings)
        request = resources_of(agent, settings)
    placement = agents.admit(request)
    with db.transaction() as session:
        agent = lock_agent(session, agent_id)
        if agent is None:
            raise NotFound("Agent not found")
        _check_deployable(agent, settings)  # again under the lock: a concurrent deploy or edit
        request = resources_of(agent, settings)
        waiting = None if placement is admission.Placement.now else f"waiting for {admission.describe(request)}"
        set_status(session, agent, AgentStatus.deploying, waiting)
        agent.passivated_at = None
        options = actor_options(agent, settings)
    logs = [f"Actor {agents.actor_name(agent_id)} requested with {admission.describe(request)}"]
    try:
        agents.activate(agent_id, options)
    except Exception as exc:  # Ray refused the actor: record why, the caller sees the agent in error
        record_failure(db, agent_id, f"the actor could not be created: {exc}")
        raise DeploymentFailed(f"The agent's actor could not be created: {exc}") from exc
    # Placement that needs other work to finish or the autoscaler to add a node takes minutes: answer now.
    wait_s = settings.agents.agent_deploy_wait_s if placement is admission.Placement.now else 0.5
    ready = agents.wait_ready(agent_id, timeout_s=wait_s)
    if ready.error is not None:
        record_failure(db, agent_id, ready.error)
        raise DeploymentFailed(f"The agent's actor failed to start: {ready.error}")
    with db.session() as session:
        agent = session.get(Agent, agent_id)
        assert agent is not None
    if ready.placed:
        logs += [f"Actor started on node {ready.node_id} (pid {ready.pid})", "Agent deployed and running"]
    else:
        logs.append(f"Actor waiting for placement: {agent.status_message or 'resources in use'}")
    return DeployOutcome(agent=agent, placed=ready.placed, logs=logs)


def _check_deployable(agent: Agent, settings: Settings) -> None:
    if agent.status in DEPLOYED:
        raise Conflict(f"Agent is already {agent.status}; undeploy it first to deploy it again")
    adapter_for(agent.framework)  # FRAMEWORK_UNAVAILABLE before anything changes
    try:
        check_code_paths(agent.configuration or {}, settings.agents.code_modules)
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        raise ValidationFailed(
            "The agent's configuration names code it may not run", details=[FieldIssue(field, message)]
        ) from exc
    try:
        approval_policy(agent.configuration or {})
    except ValueError as exc:
        issue = FieldIssue("configuration.tool_approval", str(exc))
        raise ValidationFailed("The agent's tool_approval is invalid", details=[issue]) from exc


def undeploy(db: Database, agents: AgentActors, principal: Principal, agent_id: str) -> Agent:
    with db.transaction() as session:
        agent = ownership.get_writable(session, Agent, agent_id, principal)
        agent = lock_agent(session, agent.id)
        assert agent is not None
        set_status(session, agent, AgentStatus.inactive)
        agent.undeployed_at = utcnow()
        agent.container_id = None
        agent.passivated_at = None
        tasks.release_agent_tasks(session, agent.id, "the agent was undeployed")
    # After the commit: an actor that comes up now finds the agent inactive and stops itself.
    agents.stop(agent_id)
    return agent


def delete(db: Database, agents: AgentActors, principal: Principal, agent_id: str) -> None:
    """Delete an agent (its unfinished tasks go back to the queue, or fail if started) and stop its actor."""
    with db.transaction() as session:
        agent = ownership.get_writable(session, Agent, agent_id, principal)
        was_deployed = agent.status in DEPLOYED
        tasks.release_agent_tasks(session, agent.id, "the agent was deleted")
        session.delete(agent)
    if was_deployed:
        agents.stop(agent_id)


def restart(
    db: Database, settings: Settings, agents: AgentActors, principal: Principal, agent_id: str
) -> dict[str, Any]:
    """Restart the agent's actor: Ray starts a new process, which reloads the agent from the database."""
    with db.session() as session:
        agent = ownership.get_writable(session, Agent, agent_id, principal)
        if agent.status != AgentStatus.active.value:
            raise Conflict(f"Only an active agent's container can be restarted (this one is {agent.status})")
        options = actor_options(agent, settings)
    restarted = agents.restart(agent_id, options)
    return {"container_id": restarted, "status": "restarting", "restarted_at": isoformat_z(utcnow())}


def container(
    db: Database, settings: Settings, agents: AgentActors, principal: Principal, agent_id: str
) -> dict[str, Any]:
    """The agent's actor as the API's "container" (`GET /agents/{id}/container`): Ray's view of it plus a
    health ping of the actor."""
    with db.session() as session:
        agent = ownership.get_visible(session, Agent, agent_id, principal)
    limits = agent.resource_limits or {}
    report: dict[str, Any] = {
        "container_id": agent.container_id,
        "actor_name": agents.actor_name(agent.id),
        "agent_status": agent.status,
        "resource_usage": {"cpu_percent": None, "memory_usage": None, "memory_limit": limits.get("memory")},
        "health_status": "none",
        "last_health_check": None,
    }
    if agent.status not in DEPLOYED:
        return {**report, "status": "stopped"}
    if agent.passivated_at is not None:
        # Idle: no process; the next task re-activates it. Not woken up just to be looked at.
        return {**report, "status": "passivated", "passivated_at": agent.passivated_at}
    live = agents.inspect(agent.id, ping_timeout_s=settings.health_check_timeout_s)
    usage = {**report["resource_usage"], **live.pop("resource_usage", {})}
    return {**report, **live, "resource_usage": usage}


def container_logs(
    db: Database,
    agents: AgentActors,
    principal: Principal,
    agent_id: str,
    *,
    since: datetime | None,
    until: datetime | None,
    tail: int,
) -> list[dict[str, Any]]:
    """The actor's log lines: for those who may change the agent (the lines carry task details)."""
    with db.session() as session:
        agent = ownership.get_writable(session, Agent, agent_id, principal)
    if not agent.container_id:
        return []
    return agents.logs(agent.container_id, since=since, until=until, tail=tail)


def record_heartbeat(
    db: Database, settings: Settings, agents: AgentActors, principal: Principal, agent_id: str
) -> Agent:
    """An external agent's worker says it is alive. Stored; a live mailbox actor is told, but a heartbeat
    neither wakes a passivated one nor keeps one awake (an idle worker costs no process). Offline workers
    are found from the stored time by the reconciler."""
    with db.transaction() as session:
        agent = ownership.get_writable(session, Agent, agent_id, principal)
        if agent.mode != "external":
            raise Conflict("Heartbeats are for external agents (mode 'external'); this agent is hosted")
        if agent.status != AgentStatus.active.value:
            raise Conflict(f"The agent is {agent.status}; deploy it before its worker reports in")
        came_online = not is_online(agent, settings)
        agent.last_heartbeat_at = utcnow()
        agent.offline_notified_at = None
        if came_online:
            _emit_online(session, agent, True)
    agents.heartbeat(agent_id, isoformat_z(agent.last_heartbeat_at))
    return agent


def is_online(agent: Agent, settings: Settings) -> bool | None:
    """External agents: a heartbeat within the timeout. Hosted agents: None (no remote worker)."""
    if agent.mode != "external":
        return None
    if agent.last_heartbeat_at is None or agent.status != AgentStatus.active.value:
        return False
    return utcnow() - agent.last_heartbeat_at < timedelta(seconds=settings.agents.agent_heartbeat_timeout_s)


# --- reports from the actors (through the store) ------------------------------------------------------


def load_for_activation(
    session: Session,
    agent_id: str,
    container_id: str,
    code_modules: tuple[str, ...],
    http_allowed: tuple[str, ...] = (),
) -> AgentSpec | None:
    """An actor starts (first deploy, restart, crash, re-activation): the agent as stored now, or None if
    it should not run (undeployed or deleted meanwhile). Marks a `deploying` agent `active`. A hosted
    agent's tasks still `in_progress` were running in the process that is gone: they fail, saying so."""
    agent = lock_agent(session, agent_id)
    if agent is None or agent.status not in DEPLOYED:
        return None
    if agent.mode == "hosted":
        tasks.fail_interrupted(session, agent.id, "interrupted: the agent's process stopped while running it")
    if agent.status == AgentStatus.deploying.value:
        agent.container_id = container_id
        set_status(session, agent, AgentStatus.active)
        agent.deployed_at = utcnow()
    agent.container_id = container_id
    agent.passivated_at = None
    return spec_of(agent, code_modules, http_allowed)


def default_llm(session: Session, agent_id: str, platform: dict[str, Any], box: SecretBox) -> dict[str, Any]:
    """The provider a framework agent uses when its configuration names none: each field from its owner's
    settings (`/settings`: a user's own, or the organization's), else from the platform's (`platform`)."""
    agent = session.get(Agent, agent_id)
    if agent is None:
        return {}
    user_id = agent.owner_id if agent.owner_type == owner_settings.USER else None
    owner = (agent.owner_type, agent.owner_id)
    return owner_settings.provider_for(session, box, user_id=user_id, owner=owner, platform=platform)


def mark_passivated(session: Session, agent_id: str, container_id: str) -> bool:
    """The idle actor is about to exit. False (stay) if it is not the agent's current incarnation, or if
    work is already on its way to it (a task assigned and not yet taken)."""
    agent = lock_agent(session, agent_id)
    if agent is None or agent.container_id != container_id:
        return False
    if agent.mode == "hosted" and tasks.has_assigned(session, agent.id):
        return False
    agent.passivated_at = utcnow()
    return True


def start_task(session: Session, task_id: str, agent_id: str, container_id: str | None) -> dict[str, Any] | None:
    """A hosted agent's actor takes an assigned task, if it is the agent's current incarnation. When a second
    cluster has activated the agent (a cluster swap, both clusters up for a while), the first cluster's actor
    still answers its router's dispatches; a task it started would be orphaned `in_progress` when its cluster
    goes, since only a new incarnation's activation fails such tasks. Refused, the task stays `assigned` and
    the current incarnation's reconciler sends it there. The current incarnation may take again a task it
    has `in_progress` (`tasks.start_for_agent`'s `retake`: it runs no such task, so its first call's answer was
    lost). `container_id` None: a caller of the previous release, unfenced as before."""
    if tasks.lock_task(session, task_id) is None:  # the task's row first, then the agent's: the order of every path
        return None
    if container_id is not None and not _is_incarnation(session, agent_id, container_id):
        return None
    return tasks.start_for_agent(session, task_id, agent_id, retake=container_id is not None)


def finish_task(
    session: Session,
    task_id: str,
    agent_id: str,
    container_id: str | None,
    result: dict[str, Any] | None,
    error: str | None,
    cost_per_1k_tokens: float = 0.0,
) -> bool:
    """A task's outcome from the actor that ran it, if that actor is still the agent's current incarnation: an
    actor superseded meanwhile (its process replaced, or another cluster took the agent over) had its task
    failed as interrupted, and the task may have been queued and started again since; its late outcome must
    not overwrite the new attempt's."""
    if tasks.lock_task(session, task_id) is None:
        return False
    if container_id is not None and not _is_incarnation(session, agent_id, container_id):
        return False
    return tasks.finish_for_agent(session, task_id, agent_id, result, error, cost_per_1k_tokens)


def _is_incarnation(session: Session, agent_id: str, container_id: str) -> bool:
    """Locked: an activation elsewhere waits for this transaction, and then sees (and fails) what it started."""
    agent = lock_agent(session, agent_id)
    return agent is not None and agent.container_id == container_id


def mark_stale_workers_offline(session: Session, settings: Settings) -> list[str]:
    """External agents whose worker stopped beating: `agent.status_changed` `{online: false}` once each."""
    cutoff = utcnow() - timedelta(seconds=settings.agents.agent_heartbeat_timeout_s)
    query = select(Agent).where(
        Agent.mode == "external",
        Agent.status == AgentStatus.active.value,
        Agent.last_heartbeat_at < cutoff,
        Agent.offline_notified_at.is_(None),
    )
    stale = list(session.scalars(query.with_for_update(skip_locked=True)))
    for agent in stale:
        agent.offline_notified_at = utcnow()
        _emit_online(session, agent, False)
    return [agent.id for agent in stale]


def _emit_online(session: Session, agent: Agent, online: bool) -> None:
    stamp = isoformat_z(agent.last_heartbeat_at) if agent.last_heartbeat_at else None
    events.emit(
        session,
        "agent.status_changed",
        {"agent_id": agent.id, "status": agent.status, "online": online, "last_heartbeat_at": stamp},
        source="agents",
        owner=agent,
        subject_id=agent.id,
    )


@dataclass(frozen=True, slots=True)
class WantedActor:
    agent_id: str
    passivated: bool
    options: dict[str, Any]


def deployed_among(session: Session, agent_ids: set[str]) -> set[str]:
    query = select(Agent.id).where(Agent.id.in_(agent_ids), Agent.status.in_(DEPLOYED))
    return set(session.scalars(query))


def agents_to_run(session: Session, settings: Settings) -> list[WantedActor]:
    """Every agent that may have an actor: `deploying` and `active` ones (passivated ones start on demand)."""
    rows = session.execute(select(Agent).where(Agent.status.in_(DEPLOYED))).scalars()
    return [WantedActor(a.id, a.passivated_at is not None, actor_options(a, settings)) for a in rows]


def actor_options(agent: Agent, settings: Settings) -> dict[str, Any]:
    return admission.agent_actor_options(resources_of(agent, settings), agent.max_concurrent_tasks)


def record_failure(db: Database, agent_id: str, message: str) -> None:
    log.warning("deploy of agent %s failed: %s", agent_id, message)
    with db.transaction() as session:
        agent = lock_agent(session, agent_id)
        if agent is not None and agent.status in DEPLOYED:
            set_status(session, agent, AgentStatus.error, message[:2000])
            agent.container_id = None
