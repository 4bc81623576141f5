"""`TaskRouter`: one per cluster (named `router`, detached). Applies `schedulers.routing` to live agents.

It keeps the pending tasks in priority queues and the agents' free capacity in memory, both rebuilt from
the database when it starts, so a router restart loses nothing. A decision becomes durable only through
`services.routing.assign_routed` (row locks, re-checked), so no task is assigned twice. It routes when a
task arrives (`submit`), when agents change (`agents_changed`: deployed, enabled, capacity freed) and on a
periodic tick that also ages waiting tasks and re-reads what a lost notification would have told it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from actors import agent_handles
from cluster import metrics, tracing
from core.logging import configure_logging
from core.settings import Settings
from persistence.db import Database
from schedulers.routing import AgentSlot, RoutingPolicy, TaskQueues
from services import routing

log = logging.getLogger("orchestrator.router")

RESYNC_TASKS_EVERY_S = 10.0


class TaskRouter:
    def __init__(self, settings: Settings) -> None:
        configure_logging(settings.log_level)
        tracing.configure(settings, "router")
        self._settings = settings
        self._db = Database(settings.database_url, pool_size=2, max_overflow=0, application_name="orchestrator:router")
        # Database times (epoch) onto this process's monotonic clock, which the policy's aging uses.
        self._clock_offset = time.time() - time.monotonic()
        self._queues = TaskQueues(RoutingPolicy(aging_step_s=settings.agents.routing_aging_step_s))
        self._agents: dict[str, AgentSlot] = {}
        self._lock = threading.RLock()
        self._routed = 0
        self._last_task_sync = 0.0
        self._rebuild()
        threading.Thread(target=self._tick_loop, name="router-tick", daemon=True).start()

    # --- messages ------------------------------------------------------------------------------------

    # Messages take `trace` (`tracing.carrier()` of the sender): their work is a span of the sender's trace.

    def submit(self, task_id: str, new: routing.NewTask | None = None, trace: dict[str, str] | None = None) -> int:
        """A new pending task: queue it and route. Returns how many tasks were assigned. `new`: the task as
        its creator sent it (otherwise it is read)."""
        with tracing.continued(trace, "router.submit", {"orchestrator.task_id": task_id}):
            if new is not None:
                with self._db.connect() as connection:
                    task = routing.queued_new_task(connection, new, clock_offset=self._clock_offset)
            else:
                with self._db.session() as session:
                    task = routing.queued_task(session, task_id, clock_offset=self._clock_offset)
            if task is not None:
                with self._lock:
                    self._queues.push(task)
            return self._route()

    def agents_changed(self, trace: dict[str, str] | None = None) -> int:
        """An agent was deployed, enabled or finished a task: re-read capacities and route."""
        with tracing.continued(trace, "router.agents_changed"):
            self._sync_agents()
            return self._route()

    def resync(self, trace: dict[str, str] | None = None) -> int:
        """Tasks went back to the queue (an agent undeployed or deleted): re-read everything and route."""
        with tracing.continued(trace, "router.resync"):
            self._sync_tasks()
            self._sync_agents()
            return self._route()

    def rules_changed(self, trace: dict[str, str] | None = None) -> int:
        """`PUT /routing/rules` stored new rules: use them from now on, and route what they now allow."""
        with tracing.continued(trace, "router.rules_changed"):
            self._load_rules()
            return self._route()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "queued": len(self._queues),
                "by_priority": self._queues.depth(),
                "agents": len(self._agents),
                "free_slots": sum(agent.free for agent in self._agents.values()),
                "routed": self._routed,
            }

    # --- internals -----------------------------------------------------------------------------------

    def _load_rules(self) -> None:
        with self._db.session() as session:
            loaded = routing.rules(session)
        with self._lock:
            self._queues.policy.rules = loaded

    def _rebuild(self) -> None:
        self._load_rules()
        with self._db.session() as session:
            pending = routing.pending_tasks(session, clock_offset=self._clock_offset)
        with self._lock:
            for task in pending:
                self._queues.push(task)
        self._sync_agents()
        self._last_task_sync = time.monotonic()
        log.info("router started: %d pending task(s), %d agent(s)", len(pending), len(self._agents))

    def _sync_agents(self) -> None:
        with self._db.session() as session:
            slots = routing.agent_slots(session)
        with self._lock:
            previous = self._agents
            self._agents = {slot.agent_id: slot for slot in slots}
            for agent_id, slot in self._agents.items():
                if agent_id in previous:  # keep the tie-breaker history
                    slot.last_assigned_at = previous[agent_id].last_assigned_at

    def _sync_tasks(self) -> None:
        with self._db.session() as session:
            pending = routing.pending_tasks(session, clock_offset=self._clock_offset)
        with self._lock:
            known = {task.task_id for task in pending}
            for task in pending:
                self._queues.push(task)  # no-op for queued ones
            for task_id in [task_id for task_id in self._queues.task_ids() if task_id not in known]:
                self._queues.remove(task_id)  # assigned directly, cancelled or deleted meanwhile
        self._last_task_sync = time.monotonic()

    def _route(self) -> int:
        with self._lock:
            decisions = self._queues.assign(list(self._agents.values()), time.monotonic())
        assigned = stale = 0
        stale_agents = False
        for task, agent in decisions:
            with self._db.transaction() as session:
                outcome = routing.assign_routed(session, task.task_id, agent.agent_id, self._settings)
            if outcome is None:
                stale_agents = True
                stale += 1
                with self._db.session() as session:
                    still_pending = routing.queued_task(session, task.task_id, clock_offset=self._clock_offset)
                if still_pending is not None:
                    with self._lock:
                        self._queues.push(still_pending)
                continue
            assigned += 1
            if outcome.hosted and outcome.options is not None:
                try:
                    agent_handles.dispatch(self._settings, outcome.agent_id, outcome.options, "run_task", task.task_id)
                except Exception:  # stored as assigned: the reconciler re-sends it
                    log.exception("dispatch of task %s to agent %s failed", task.task_id, outcome.agent_id)
        self._routed += assigned
        if stale_agents:
            self._sync_agents()
        with self._lock:
            depth = self._queues.depth()
        metrics.set_queue_depth(depth)
        metrics.count_tasks_routed({"assigned": assigned, "stale": stale})
        return assigned

    def _tick_loop(self) -> None:
        while True:
            time.sleep(self._settings.agents.router_tick_s)
            try:
                self._sync_agents()
                if time.monotonic() - self._last_task_sync > RESYNC_TASKS_EVERY_S:
                    self._sync_tasks()
                self._route()
            except Exception:
                log.exception("router tick failed")
