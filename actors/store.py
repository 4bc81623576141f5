"""`Store`: the one database gateway of the platform's actors (docs/architecture.md "The cost model").

Agent actors (and later runs and approvals) do not open database pools of their own: they read and write
through this actor, whose pool is bounded by `ORCHESTRATOR_ACTOR_DATABASE_POOL_SIZE`, so that the number of
connections does not grow with the number of actors. It is a threaded actor; each method is one short
transaction in `services.deployments`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from actors.agent_handles import AgentActorsOnRay
from actors.router_client import RouterOnRay, RunPoolOnRay, wake_event_hub_on_commit
from core.crypto import SecretBox
from core.errors import ServiceUnavailable
from core.logging import configure_logging
from core.settings import Settings
from frameworks import AgentSpec
from persistence.db import Database
from services import approvals, deployments, executions, routing, tasks, workflows
from services.ports import AgentsChanged, TaskSubmitted

log = logging.getLogger("orchestrator.store")


class Store:
    def __init__(self, settings: Settings) -> None:
        configure_logging(settings.log_level)
        wake_event_hub_on_commit(settings)
        self._db = Database(
            settings.database_url,
            pool_size=settings.agents.actor_database_pool_size,
            max_overflow=0,
            sqlite_busy_timeout_ms=settings.database.sqlite_busy_timeout_ms,
            application_name="orchestrator:store",
        )
        self._settings = settings
        self._agents = AgentActorsOnRay(settings)
        self._router = RouterOnRay(settings)
        self._runs = RunPoolOnRay(settings)
        self._price = settings.workflows.llm_cost_per_1k_tokens  # of a framework agent's tokens
        platform = settings.workflows
        self._platform_llm = {  # a framework agent's provider when neither it nor its owner names one
            "base_url": platform.llm_base_url,
            "model": platform.llm_model,
            "api_key": platform.llm_api_key.get_secret_value() if platform.llm_api_key else None,
        }
        self._box = SecretBox.from_settings(settings)

    def activate_agent(self, agent_id: str, container_id: str) -> AgentSpec | None:
        with self._db.transaction() as session:
            spec = deployments.load_for_activation(
                session,
                agent_id,
                container_id,
                self._settings.agents.code_modules,
                self._settings.workflows.http_allowed,
            )
            if spec is None:
                return None
            llm = deployments.default_llm(session, agent_id, self._platform_llm, self._box)
        return dataclasses.replace(spec, default_llm=llm)

    def passivate_agent(self, agent_id: str, container_id: str) -> bool:
        with self._db.transaction() as session:
            return deployments.mark_passivated(session, agent_id, container_id)

    def start_task(self, task_id: str, agent_id: str, container_id: str | None = None) -> dict[str, Any] | None:
        """Take an assigned task (in_progress), if `container_id` is the agent's current actor. An agent with
        an active workflow runs it on the task: the run is started here, and its end completes the task
        (`execution_id` in the answer)."""
        with self._db.transaction() as session:
            task = deployments.start_task(session, task_id, agent_id, container_id)
            if task is not None and task["retaken"]:  # its run, if one was started, resumes by itself
                task["execution_id"] = executions.run_of_task(session, task_id)
                return task
            workflow = workflows.active_workflow(session, agent_id) if task is not None else None
            if workflow is None:
                return task
            run = executions.start_for_task(session, tasks.lock_task(session, task_id), workflow)
            request = executions.request_of(session, run.id)
            task["execution_id"] = run.id
        self._runs.submit(run.id, request)
        return task

    def finish_task(
        self,
        task_id: str,
        agent_id: str,
        result: dict[str, Any] | None,
        error: str | None,
        container_id: str | None = None,
    ) -> bool:
        try:
            finished = self._finish_retrying(task_id, agent_id, container_id, result, error)
        except ServiceUnavailable:
            raise  # the database stayed away: the agent's call fails, and the task is re-sent later
        except Exception as exc:  # the outcome could not be stored as given: record the task failed instead
            log.exception("task %s: storing its outcome failed", task_id)
            with self._db.transaction() as session:
                finished = deployments.finish_task(
                    session, task_id, agent_id, container_id, None, f"its outcome could not be stored: {exc}"
                )
        if finished:
            self._router.send(AgentsChanged())  # the agent has a free slot
        return finished

    def task_output(self, task_id: str, agent_id: str, pieces: list[dict[str, Any]]) -> bool:
        """Pieces of a running task's output: one `task.output` event."""
        with self._db.transaction() as session:
            return tasks.emit_output(session, task_id, agent_id, pieces)

    def hold_task_for_tool(
        self, task_id: str, agent_id: str, call: dict[str, Any], priority: str, ttl_s: float | None
    ) -> str | None:
        """A tool call of the task waits for a person: the task waits `awaiting_approval`; the approval's id."""
        with self._db.transaction() as session:
            approval = approvals.request_for_tool_call(
                session, task_id, agent_id, call, self._settings, priority=priority, ttl_s=ttl_s
            )
            held = approval.id if approval is not None else None
        if held is not None:
            self._router.send(AgentsChanged())  # the agent has a free slot
        return held

    def _finish_retrying(
        self,
        task_id: str,
        agent_id: str,
        container_id: str | None,
        result: dict[str, Any] | None,
        error: str | None,
        attempts: int = 4,
    ) -> bool:
        """The outcome written as given; while the database is away (connections cut, a failover) the same
        write again, as the pool replaces broken connections, rather than recording a good outcome failed."""
        for attempt in range(attempts - 1):
            try:
                with self._db.transaction() as session:
                    return deployments.finish_task(session, task_id, agent_id, container_id, result, error, self._price)
            except ServiceUnavailable:
                log.warning("task %s: the database is unavailable, storing its outcome again", task_id)
                time.sleep(0.5 * 2**attempt)
        with self._db.transaction() as session:  # the last try: ServiceUnavailable goes to the caller
            return deployments.finish_task(session, task_id, agent_id, container_id, result, error, self._price)

    def decide_approval(
        self,
        approval_id: str,
        decider_id: str,
        approve: bool,
        reason: str | None,
        decision_input: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An approval's decision; an approved task created for a given agent is assigned to it if it can
        take it now (else the router routes it)."""
        with self._db.transaction() as session:
            outcome = approvals.decide(
                session, approval_id, decider_id, approve, reason, self._settings, decision_input=decision_input
            )
            run_request = executions.request_of(session, outcome["execution_id"]) if outcome["execution_id"] else None
        if run_request is not None:  # a run waiting at an approval node resumes now
            self._runs.submit(outcome["execution_id"], run_request)
        routing.hand_over(self._agents, outcome.pop("assigned"))
        if outcome["task_id"]:
            self._router.send(TaskSubmitted(outcome["task_id"]))
        return outcome
