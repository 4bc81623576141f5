"""One reconcile pass: what the database says should run, compared with what runs, and the differences
acted on through the ports (the reconcile loop of Ray Serve's controller; `actors/reconciler.py` runs it).

Each pass: every `deploying` agent and every `active` agent that was live (not passivated) has its actor
(after the whole cluster restarted, this redeploys them); an actor whose agent is no longer deployed is
stopped; an actor that fails to start puts its agent in `error`; hosted agents' assigned tasks that were
never started are sent to the actor again; approvals and SLAs that are due fire (an SLA breach moves the
task up a priority and the router re-reads its queues); runs that should be running go to the run pool.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.clock import utcnow
from core.settings import Settings
from persistence.db import Database
from services import approvals, deployments, executions, tasks
from services.ports import Actors, TasksRequeued

log = logging.getLogger("orchestrator.reconciler")

# An assigned task a hosted agent has not started after this long is sent to its actor again.
REDISPATCH_AFTER_S = 15.0


@dataclass
class Reconciliation:
    """The decisions of a pass, made against the ports; `now` and `monotonic` are the clocks (fakes in tests)."""

    db: Database
    settings: Settings
    actors: Actors
    now: Callable[[], datetime] = utcnow
    monotonic: Callable[[], float] = time.monotonic
    _last: dict[str, Any] = field(default_factory=dict, repr=False)

    def run_once(self) -> dict[str, Any]:
        settings, agents = self.settings, self.actors.agents
        # Live actors first, then the database: an actor created by a deploy between the two reads is then
        # in the database's answer too, and is not mistaken for an orphan.
        live = agents.live_agent_ids()
        with self.db.session() as session:
            wanted = deployments.agents_to_run(session, settings)
        starting = []
        for agent in wanted:
            if agent.agent_id in live or agent.passivated:
                continue
            try:
                agents.activate(agent.agent_id, agent.options)
                starting.append(agent.agent_id)
            except Exception:  # one agent must not stop the pass for the others
                log.exception("agent %s: could not start its actor", agent.agent_id)
        failed = self._await_started(starting)
        redispatched = self._redispatch({agent.agent_id: agent.options for agent in wanted})
        stopped = self._stop_orphans(live - {agent.agent_id for agent in wanted})
        with self.db.transaction() as session:
            offline = deployments.mark_stale_workers_offline(session, settings)
            expired = approvals.expire_due(session, settings)
            breached = tasks.breach_slas(session)
        if expired:
            log.info("%d approval(s) expired", len(expired))
        if breached:
            log.info("%d task(s) breached their SLA and moved up a priority", len(breached))
            self.actors.router.send(TasksRequeued())  # the router queues them at their new priority
        if offline:
            log.info("%d external worker(s) stopped sending heartbeats: %s", len(offline), offline)
        resumed = self._resume_runs()
        return {
            "started": sorted(set(starting) - set(failed)),
            "failed": failed,
            "stopped": stopped,
            "redispatched": redispatched,
            "offline": offline,
            "expired": expired,
            "sla_breached": breached,
            "runs_resumed": resumed,
        }

    def _resume_runs(self) -> list[str]:
        """Every run that should be running has an actor: runs nobody claimed, runs whose actor's lease ran
        out (a dead process, a cluster restart) and runs whose wait ended go to the run pool again."""
        with self.db.session() as session:
            due = executions.resumable(session, self.settings.workflows.run_lease_s)
        for run_id, request in due:
            self.actors.runs.submit(run_id, request)
        if due:
            log.info("%d run(s) handed to the run pool to start or resume", len(due))
        return [run_id for run_id, _ in due]

    def _stop_orphans(self, candidates: set[str]) -> list[str]:
        """Stop actors of agents no longer deployed, re-checking each right before (a deploy may have just
        committed)."""
        if not candidates:
            return []
        with self.db.session() as session:
            still_wanted = deployments.deployed_among(session, candidates)
        stopped = [agent_id for agent_id in sorted(candidates - still_wanted) if self.actors.agents.stop(agent_id)]
        if stopped:
            log.info("stopped %d actor(s) of agents no longer deployed: %s", len(stopped), stopped)
        return stopped

    def _redispatch(self, options: dict[str, dict[str, Any]]) -> int:
        """Hosted agents' tasks still `assigned` a while after assignment: the message to the actor was lost
        (Ray unreachable, the actor passivating); send it again. Taking a task is idempotent in the store."""
        cutoff = self.now() - timedelta(seconds=REDISPATCH_AFTER_S)
        with self.db.session() as session:
            owed = tasks.assigned_hosted_tasks(session, cutoff)
        sent = 0
        for task_id, agent_id in owed:
            if agent_id in options:
                self.actors.agents.dispatch(agent_id, options[agent_id], task_id)
                sent += 1
        if sent:
            log.info("re-sent %d assigned task(s) to their agents' actors", sent)
        return sent

    def _await_started(self, starting: list[str]) -> list[str]:
        """Wait (bounded) for the actors just started; an actor whose constructor failed puts its agent in
        `error`. One that is still waiting for resources is left to come up on its own, and one that found
        its agent undeployed meanwhile stopped itself as it should."""
        failed = []
        deadline = self.monotonic() + self.settings.agents.agent_deploy_wait_s
        for agent_id in starting:
            ready = self.actors.agents.wait_ready(agent_id, timeout_s=max(0.1, deadline - self.monotonic()))
            if ready.error is None or "NotDeployed" in ready.error:
                continue
            failed.append(agent_id)
            deployments.record_failure(self.db, agent_id, f"the actor failed to start: {ready.error}")
        if starting:
            log.info("started %d agent actor(s), %d failed", len(starting) - len(failed), len(failed))
        return failed
