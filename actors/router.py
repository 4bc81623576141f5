"""`TaskRouter`: one per cluster (named `router`, detached). Applies `schedulers.routing` to live agents.

It keeps the pending tasks in priority queues and the agents' free capacity in memory, both rebuilt from
the database when it starts, so a router restart loses nothing. A decision becomes durable only through
`services.routing.assign_routed` (row locks, re-checked), so no task is assigned twice. It routes when it
is sent messages (`deliver`: tasks arrive, agents change, rules change), in batches, and on a periodic tick
that also ages waiting tasks and re-reads what a lost message would have told it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from actors.agent_handles import AgentActorsOnRay
from actors.metrics import install_ray_metrics
from actors.router_client import wake_event_hub_on_commit
from core import metrics, telemetry_setup, tracing
from core.logging import configure_logging
from core.settings import Settings
from persistence.db import Database
from schedulers.routing import AgentSlot, RoutingPolicy, TaskQueues
from services import routing
from services.ports import AgentsChanged, RouterMessage, RulesChanged, TasksRequeued, TaskSubmitted

log = logging.getLogger("orchestrator.router")

RESYNC_TASKS_EVERY_S = 10.0
# How long the router decides with a user's organizations before reading them again (`assign_routed`
# re-checks every cross-owner decision against the stored memberships).
MEMBERSHIPS_MAX_AGE_S = 10.0

# What each message other than `TaskSubmitted` asks the router to re-read (methods of `TaskRouter`), in order.
_REREADS: dict[type, tuple[str, ...]] = {
    AgentsChanged: ("_sync_agents",),
    TasksRequeued: ("_sync_tasks", "_sync_agents"),
    RulesChanged: ("_load_rules",),
}
# Messages as processes of the previous release send them while a cluster is upgraded: `(method, args)`.
_LEGACY: dict[str, type] = {
    "submit": TaskSubmitted,
    "agents_changed": AgentsChanged,
    "resync": TasksRequeued,
    "rules_changed": RulesChanged,
}


class TaskRouter:
    def __init__(self, settings: Settings) -> None:
        configure_logging(settings.log_level)
        telemetry_setup.configure(settings, "router")
        install_ray_metrics()
        wake_event_hub_on_commit(settings)
        self._settings = settings
        # The agents' actors, which assigned hosted tasks are handed to (`_agents` is the routing view).
        self._agent_actors = AgentActorsOnRay(settings)
        self._db = Database(settings.database_url, pool_size=2, max_overflow=0, application_name="orchestrator:router")
        # Database times (epoch) onto this process's monotonic clock, which the policy's aging uses.
        self._clock_offset = time.time() - time.monotonic()
        self._queues = TaskQueues(RoutingPolicy(aging_step_s=settings.agents.routing_aging_step_s))
        self._agents: dict[str, AgentSlot] = {}
        self._lock = threading.RLock()
        self._routed = 0
        self._memberships = routing.Memberships(max_age_s=MEMBERSHIPS_MAX_AGE_S)
        self._last_task_sync = 0.0
        self._rebuild()
        threading.Thread(target=self._tick_loop, name="router-tick", daemon=True).start()

    # --- messages ------------------------------------------------------------------------------------

    def deliver(self, messages: list[tuple[Any, ...]]) -> int:
        """A batch of messages from one process's mailbox (`router_client.notify`), oldest first: each is
        `(message, trace)`, a `services.ports.RouterMessage` and the sender's `tracing.carrier()` (its work
        is a span of the sender's trace, with the sender's correlation id). Returns how many tasks were
        assigned.

        Each re-read is done once per batch, however many messages asked for it, and the batch is routed once:
        a flood of messages costs the router a call and a routing pass per batch, not per message. Every
        re-read follows the senders' commits, so doing it once, in the batch's order, sees what each asked for.
        A message that fails is logged and the rest of the batch still counts (the periodic re-read catches
        up with it); the batch is routed whatever happened.
        """
        done: set[str] = set()
        traces: dict[str, dict[str, str]] = {}  # a submitted task's sender, whose trace its assignment joins
        try:
            for item in messages:
                message, trace = _message(item)
                try:
                    if isinstance(message, TaskSubmitted):
                        if trace:
                            traces[message.task_id] = trace
                        with tracing.continued(trace, "router.submit", {"orchestrator.task_id": message.task_id}):
                            self._queue(message.task_id, message.task)
                    elif type(message) in _REREADS:
                        with tracing.continued(trace, f"router.{type(message).__name__}"):
                            for reread in _REREADS[type(message)]:
                                if reread not in done:
                                    done.add(reread)
                                    getattr(self, reread)()
                    else:
                        log.warning("router: unknown message %r dropped", message)
                except Exception:
                    log.exception("router: message %r failed", message)
        finally:
            assigned = self._route(traces)
        return assigned

    # The messages one by one, as processes of the previous release send them while a cluster is upgraded.
    def submit(self, task_id: str, new: Any = None, trace: dict[str, str] | None = None) -> int:
        return self.deliver([(TaskSubmitted(task_id, new), trace)])

    def agents_changed(self, trace: dict[str, str] | None = None) -> int:
        return self.deliver([(AgentsChanged(), trace)])

    def resync(self, trace: dict[str, str] | None = None) -> int:
        return self.deliver([(TasksRequeued(), trace)])

    def rules_changed(self, trace: dict[str, str] | None = None) -> int:
        return self.deliver([(RulesChanged(), trace)])

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

    def _queue(self, task_id: str, new: routing.NewTask | None) -> None:
        if new is not None:
            task = routing.queued(new, self._memberships, self._db, clock_offset=self._clock_offset)
        else:
            with self._db.session() as session:
                task = routing.queued_task(session, task_id, self._memberships, clock_offset=self._clock_offset)
        if task is not None:
            with self._lock:
                self._queues.push(task)

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

    def _route(self, traces: dict[str, dict[str, str]] | None = None) -> int:
        """Apply the policy's decisions; `traces`: the senders of tasks submitted in this batch, whose traces
        (and correlation ids: the `task.assigned` event's) their assignments join."""
        with self._lock:
            decisions = self._queues.assign(list(self._agents.values()), time.monotonic())
        assigned = stale = 0
        stale_agents = False
        for task, agent in decisions:
            trace = (traces or {}).get(task.task_id)
            with (
                tracing.continued(trace, "router.assign", {"orchestrator.task_id": task.task_id}),
                self._db.transaction() as session,
            ):
                outcome = routing.assign_routed(session, task.task_id, agent.agent_id, self._settings)
            if outcome is None:
                stale_agents = True
                stale += 1
                with self._db.session() as session:
                    still_pending = routing.queued_task(
                        session, task.task_id, self._memberships, clock_offset=self._clock_offset, reread=True
                    )
                if still_pending is not None:
                    with self._lock:
                        self._queues.push(still_pending)
                continue
            assigned += 1
            routing.hand_over(self._agent_actors, outcome)
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


def _message(item: tuple[Any, ...]) -> tuple[RouterMessage | None, dict[str, str] | None]:
    """`(message, trace)`, or a previous release's `(method, args, trace)` as the message it meant."""
    if len(item) == 3 and isinstance(item[0], str):
        method, args, trace = item
        kind = _LEGACY.get(method)
        return (kind(*args) if kind is not None else None), trace
    message, trace = item
    return message, trace
