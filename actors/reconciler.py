"""`Reconciler`: one per cluster; compares what the database says should run with what runs, repeatedly
(the reconcile loop of Ray Serve's controller, STYLE.md). It logs rather than dies on an error.

Each pass: every `deploying` agent and every `active` agent that was live (not passivated) has its actor
(after the whole cluster restarted, this redeploys them); an actor whose agent is no longer deployed is
stopped; an actor that fails to start puts its agent in `error`; hosted agents' assigned tasks that were
never started are sent to the actor again; approvals and SLAs that are due fire (an SLA breach moves the
task up a priority and the router re-reads its queues); expired credentials are purged hourly. The event
outbox is the `EventHub`'s (actors/event_hub.py); each pass makes sure its loops run.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from actors import agent_handles, router_client
from actors.metrics import install_ray_metrics, publish_platform_state
from actors.names import EVENT_HUB_NAME
from core.clock import utcnow
from core.logging import configure_logging
from core.settings import Settings
from persistence import execution_rollups
from persistence.db import Database
from services import approvals, deployments, executions, tasks
from services.housekeeping import purge_expired_credentials

log = logging.getLogger("orchestrator.reconciler")

PURGE_EVERY_S = 3600.0
# An assigned task a hosted agent has not started after this long is sent to its actor again.
REDISPATCH_AFTER_S = 15.0


class Reconciler:
    def __init__(self, settings: Settings) -> None:
        configure_logging(settings.log_level)
        install_ray_metrics()
        self._settings = settings
        # One connection (two at a peak): the reconciler reads in batches, it does not fan out.
        self._db = Database(
            settings.database_url, pool_size=1, max_overflow=1, application_name="orchestrator:reconciler"
        )
        self._last_purge = 0.0
        self._lock = threading.Lock()
        threading.Thread(target=self._loop, name="reconcile-loop", daemon=True).start()

    def reconcile_once(self) -> dict[str, Any]:
        """One pass; also callable on demand (tests, `orchestrator up`)."""
        with self._lock:
            return self._reconcile()

    def _loop(self) -> None:
        while True:
            try:
                router_client.tell(self._settings, EVENT_HUB_NAME, "start")  # a restarted hub resumes its loops
                self.reconcile_once()
            except Exception:
                log.exception("reconcile pass failed; retrying in %.0fs", self._settings.agents.reconcile_interval_s)
            time.sleep(self._settings.agents.reconcile_interval_s)

    def _reconcile(self) -> dict[str, Any]:
        settings = self._settings
        # Live actors first, then the database: an actor created by a deploy between the two reads is then
        # in the database's answer too, and is not mistaken for an orphan.
        live = agent_handles.live_agent_ids(settings)
        with self._db.session() as session:
            wanted = deployments.agents_to_run(session, settings)
        starting = {}
        for agent in wanted:
            if agent.agent_id in live or agent.passivated:
                continue
            try:
                starting[agent.agent_id] = agent_handles.activate(settings, agent.agent_id, agent.options)
            except Exception:  # one agent must not stop the pass for the others
                log.exception("agent %s: could not start its actor", agent.agent_id)
        failed = self._await_started(starting)
        redispatched = self._redispatch({agent.agent_id: agent.options for agent in wanted})
        stopped = self._stop_orphans(live - {agent.agent_id for agent in wanted})
        with self._db.transaction() as session:
            offline = deployments.mark_stale_workers_offline(session, settings)
            expired = approvals.expire_due(session, settings)
            breached = tasks.breach_slas(session)
        if expired:
            log.info("%d approval(s) expired", len(expired))
        if breached:
            log.info("%d task(s) breached their SLA and moved up a priority", len(breached))
            router_client.notify(settings, "resync")  # the router queues them at their new priority
        if offline:
            log.info("%d external worker(s) stopped sending heartbeats: %s", len(offline), offline)
        resumed = self._resume_runs()
        folded = execution_rollups.fold_all(self._db)  # the dashboard reads unfolded deltas too; this keeps them few
        publish_platform_state(self._db)  # Ray gauges: runs by status, approvals pending
        if time.monotonic() - self._last_purge > PURGE_EVERY_S:
            purge_expired_credentials(self._db)
            self._last_purge = time.monotonic()
        return {"started": sorted(set(starting) - set(failed)), "failed": failed, "stopped": stopped,
                "redispatched": redispatched, "offline": offline, "expired": expired,
                "sla_breached": breached, "runs_resumed": resumed, "rollup_deltas_folded": folded}  # fmt: skip

    def _resume_runs(self) -> list[str]:
        """Every run that should be running has an actor: runs nobody claimed, runs whose actor's lease ran
        out (a dead process, a cluster restart) and runs whose wait ended go to the run pool again."""
        with self._db.session() as session:
            due = executions.resumable(session, self._settings.workflows.run_lease_s)
        for run_id, request in due:
            router_client.submit_run(self._settings, run_id, request)
        if due:
            log.info("%d run(s) handed to the run pool to start or resume", len(due))
        return [run_id for run_id, _ in due]

    def _stop_orphans(self, candidates: set[str]) -> list[str]:
        """Stop actors of agents no longer deployed, re-checking each right before (a deploy may have just
        committed)."""
        if not candidates:
            return []
        with self._db.session() as session:
            still_wanted = deployments.deployed_among(session, candidates)
        stopped = [agent_id for agent_id in sorted(candidates - still_wanted)
                   if agent_handles.stop(self._settings, agent_id)]  # fmt: skip
        if stopped:
            log.info("stopped %d actor(s) of agents no longer deployed: %s", len(stopped), stopped)
        return stopped

    def _redispatch(self, options: dict[str, dict[str, Any]]) -> int:
        """Hosted agents' tasks still `assigned` a while after assignment: the message to the actor was lost
        (Ray unreachable, the actor passivating); send it again. Taking a task is idempotent in the store."""
        cutoff = utcnow() - timedelta(seconds=REDISPATCH_AFTER_S)
        with self._db.session() as session:
            owed = tasks.assigned_hosted_tasks(session, cutoff)
        sent = 0
        for task_id, agent_id in owed:
            if agent_id in options:
                agent_handles.dispatch(self._settings, agent_id, options[agent_id], "run_task", task_id)
                sent += 1
        if sent:
            log.info("re-sent %d assigned task(s) to their agents' actors", sent)
        return sent

    def _await_started(self, starting: dict[str, Any]) -> list[str]:
        """Wait (bounded) for the actors just started; an actor whose constructor failed puts its agent in
        `error`. One that is still waiting for resources is left to come up on its own."""
        failed = []
        deadline = time.monotonic() + self._settings.agents.agent_deploy_wait_s
        for agent_id, handle in starting.items():
            try:
                ray.get(handle.ready.remote(), timeout=max(0.1, deadline - time.monotonic()))
            except GetTimeoutError:
                continue
            except RayActorError as exc:
                reason = agent_handles.creation_error(exc)
                if "NotDeployed" in reason:
                    continue
                failed.append(agent_id)
                deployments.record_failure(self._db, agent_id, f"the actor failed to start: {reason}")
        if starting:
            log.info("started %d agent actor(s), %d failed", len(starting) - len(failed), len(failed))
        return failed
